//! Every real payload in tests/fixtures/aws-events has its expected outcome in
//! one table, [`FIXTURES`], which covers the directory exactly; and no input,
//! however broken, panics the normalizer.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use healer::signals::{NormalizeOptions, Normalized, Signal, SignalError, normalize};
use healer::{IncidentKind, ResourceKind};
use proptest::prelude::*;

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0)
        .single()
        .expect("valid")
}

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/aws-events")
}

fn fixture_path(name: &str) -> PathBuf {
    fixtures_dir().join(name)
}

fn run(name: &str) -> Vec<Normalized> {
    let bytes = std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    normalize(&bytes, &NormalizeOptions::new(received())).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn one(name: &str) -> Normalized {
    let mut out = run(name);
    assert_eq!(out.len(), 1, "{name}: {out:#?}");
    out.remove(0)
}

/// The incident of a one-signal fixture (its kind and resource are checked by
/// the table; the tests below check the rest).
#[track_caller]
fn incident(name: &str) -> healer::Incident {
    let n = one(name);
    n.incident()
        .unwrap_or_else(|| panic!("{name}: expected incident, got {n:?}"))
        .clone()
}

/// One expected signal.
#[derive(Debug)]
enum Expect {
    /// An incident of this kind on this resource.
    Incident(IncidentKind, ResourceKind, &'static str),
    /// A recovery of this resource.
    Recovery(ResourceKind, &'static str),
    /// Ignored, with a reason containing this.
    Ignored(&'static str),
    /// An SNS subscription message of this type.
    Subscription(&'static str),
}

use Expect::{Ignored, Incident, Recovery, Subscription};
use IncidentKind as K;
use ResourceKind as R;

const SVC: &str = "arn:aws:ecs:us-west-2:111122223333:service/default/servicetest";
const CRASHED_TASK: &str =
    "arn:aws:ecs:eu-central-1:111111111111:task/test/a6eaf0150a4248dAA1bcbd688121014e";

/// Files in the fixtures directory that are not fixtures.
const NOT_FIXTURES: &[&str] = &["PROVENANCE.md"];

/// Every fixture, by path under tests/fixtures/aws-events, and the signals it
/// yields, in order. The one table of outcomes: a new fixture needs a row
/// (`the_fixture_table_covers_the_directory_exactly`).
#[rustfmt::skip]
const FIXTURES: &[(&str, &[Expect])] = &[
    ("autoscaling/instance-refresh-failed-docs-placeholder.json", &[Ignored("\"EC2 Auto Scaling Instance Refresh Failed\" is not a failure")]),
    ("autoscaling/launch-lifecycle-action.json", &[Ignored("\"EC2 Instance-launch Lifecycle Action\" is not a failure")]),
    ("autoscaling/launch-unsuccessful.json", &[Incident(K::ServiceImpaired, R::AutoscalingGroup, "my-auto-scaling-group")]),
    ("autoscaling/terminate-lifecycle-action-kops.json", &[Ignored("\"EC2 Instance-terminate Lifecycle Action\" is not a failure")]),
    ("autoscaling/terminate-successful.json", &[Ignored("\"EC2 Instance Terminate Successful\" is not a failure")]),
    ("autoscaling/terminate-unsuccessful.json", &[Incident(K::ServiceImpaired, R::AutoscalingGroup, "my-auto-scaling-group")]),

    ("cloudwatch/eventbridge-alarm-anomaly-detection.json", &[Incident(K::Alarm, R::Alarm, "arn:aws:cloudwatch:us-east-1:123456789012:alarm:EC2 CPU Utilization Anomaly")]),
    ("cloudwatch/eventbridge-alarm-composite-with-suppressor.json", &[Ignored("suppressed by WaitPeriod")]),
    ("cloudwatch/eventbridge-alarm-configuration-change-update.json", &[Ignored("alarm configuration change")]),
    ("cloudwatch/eventbridge-alarm-contributor-state-change-current-docs.json", &[Ignored("DynamoDBInsightsAlarm is muted")]),
    ("cloudwatch/eventbridge-alarm-metric-math.json", &[Incident(K::Alarm, R::Alarm, "arn:aws:cloudwatch:us-east-1:123456789012:alarm:TotalNetworkTrafficTooHigh")]),
    ("cloudwatch/eventbridge-alarm-single-metric-ec2-cpu.json", &[Incident(K::Alarm, R::Alarm, "arn:aws:cloudwatch:us-east-1:123456789012:alarm:ServerCpuTooHigh")]),
    ("cloudwatch/eventbridge-alarm-single-metric-muted-current-docs.json", &[Ignored("ServerCpuTooHigh is muted")]),
    ("cloudwatch/lambda-action-alarm-composite.json", &[Incident(K::Alarm, R::Alarm, "arn:aws:cloudwatch:us-east-1:111122223333:alarm:SuppressionDemo.Main")]),
    ("cloudwatch/lambda-action-alarm-metric-malformed-timestamps.json", &[Incident(K::Alarm, R::Alarm, "arn:aws:cloudwatch:us-east-1:444455556666:alarm:lambda-demo-metric-alarm")]),
    ("cloudwatch/lambda-action-alarm-metric-math-lambda.json", &[Incident(K::Alarm, R::Alarm, "arn:aws:cloudwatch:eu-west-1:912397435824:alarm:test_alarm")]),
    ("cloudwatch/sns-message-body-rds-cpu-alarm.json", &[Incident(K::Alarm, R::Alarm, "arn:aws:cloudwatch:ap-northeast-2:xxxxxxxxxxx:alarm:sin-alarm-rds-dev")]),

    ("ec2/instance-state-change-pending.json", &[Ignored("instance state pending is context")]),
    ("ec2/instance-state-change-shutting-down.json", &[Ignored("instance state shutting-down is context")]),
    ("ec2/rebalance-recommendation.json", &[Ignored("rebalance recommendation is advisory")]),
    ("ec2/spot-interruption-warning-docs-placeholder.json", &[Incident(K::SpotInterruption, R::Ec2Instance, "i-1234567890abcdef0")]),
    ("ec2/spot-interruption-warning-terminate.json", &[Incident(K::SpotInterruption, R::Ec2Instance, "i-0b662ef9931388ba0")]),

    ("ecs/container-instance-state-change.json", &[Ignored("container instance state change is context")]),
    ("ecs/deployment-completed.json", &[Recovery(R::EcsService, SVC)]),
    ("ecs/deployment-failed-circuit-breaker.json", &[Incident(K::DeploymentFailed, R::EcsService, SVC)]),
    ("ecs/deployment-in-progress.json", &[Ignored("deployment in progress")]),
    ("ecs/deployment-rollback-in-progress.json", &[Ignored("deployment in progress (rollback=true)")]),
    ("ecs/service-action-capacity-provider-steady-state.json", &[Ignored("CAPACITY_PROVIDER_STEADY_STATE is not a failure")]),
    ("ecs/service-action-placement-failure-cpu.json", &[Incident(K::ServiceImpaired, R::EcsService, SVC)]),
    ("ecs/service-action-placement-failure-fargate-spot.json", &[Incident(K::ServiceImpaired, R::EcsService, SVC)]),
    ("ecs/service-action-steady-state.json", &[Recovery(R::EcsService, SVC)]),
    ("ecs/service-action-task-start-impaired.json", &[Incident(K::ServiceImpaired, R::EcsService, SVC)]),
    ("ecs/task-running-fargate.json", &[Ignored("task is RUNNING (desired RUNNING): not stopped")]),
    ("ecs/task-running-with-stopped-container.json", &[Ignored("task is RUNNING (desired RUNNING): not stopped")]),
    ("ecs/task-spot-termination-notice-snippet.json", &[Incident(K::SpotInterruption, R::EcsTask, "arn:aws:ecs:us-east-1:111122223333:task/b99d40b3-5176-4f71-9a52-9dbd6fEXAMPLE")]),
    ("ecs/task-stopped-elb-health-checks-failed-fargate.json", &[Incident(K::TaskHealthCheckFailed, R::EcsTask, "arn:aws:ecs:ap-northeast-2:653734769926:task/sin-web_cluster-dev/7e12d648155541fbb8a922c39b586f82")]),
    ("ecs/task-stopped-essential-container-exited-fargate.json", &[Incident(K::TaskCrashed, R::EcsTask, CRASHED_TASK)]),
    ("ecs/task-stopped-scaling-activity-ec2.json", &[Ignored("benign stop: Scaling activity initiated by")]),
    ("ecs/task-stopped-scaling-activity-fargate.json", &[Ignored("benign stop: Scaling activity initiated by")]),
    ("ecs/task-stopped-user-initiated-ec2.json", &[Ignored("stopped by a user")]),

    ("ec2/describe-instance-status-ok.json", &[Recovery(R::Ec2Instance, "i-5203422c")]),
    ("ec2/describe-instance-status-impaired.json", &[Incident(K::InstanceImpaired, R::Ec2Instance, "i-5203422c"), Ignored("status checks system \"initializing\", instance \"initializing\"")]),
    ("elbv2/describe-target-health-all-healthy.json", &[Recovery(R::Target, "i-ceddcd4d"), Recovery(R::Target, "i-0f76fade")]),
    ("elbv2/describe-target-health-initial-registration-in-progress.json", &[Ignored("transient: Elb.RegistrationInProgress")]),
    ("elbv2/describe-target-health-lambda-health-check-disabled.json", &[Ignored("target unavailable: Target.HealthCheckDisabled")]),
    ("elbv2/describe-target-health-single-target-healthy.json", &[Recovery(R::Target, "i-0f76fade")]),
    ("elbv2/describe-target-health-unhealthy-timeout.json", &[Incident(K::TargetUnhealthy, R::Target, "i-0f76fade")]),
    ("elbv2/describe-target-health-unused-not-in-use.json", &[Ignored("target unused: Target.NotInUse")]),
    ("elbv2/describe-target-health-unused-invalid-state-stopped.json", &[Incident(K::TargetUnhealthy, R::Target, "i-0f76fade")]),

    ("health/ec2-dedicated-host-network-maintenance-scheduled.json", &[Incident(K::InstanceRetiring, R::Ec2Instance, "i-12345678")]),
    ("health/ec2-instance-store-drive-degraded-issue.json", &[Incident(K::InstanceImpaired, R::Ec2Instance, "i-abcd1111")]),

    ("sns/http-notification.json", &[Ignored("non-JSON message")]),
    ("sns/http-subscription-confirmation.json", &[Subscription("SubscriptionConfirmation")]),
    ("sns/http-unsubscribe-confirmation.json", &[Subscription("UnsubscribeConfirmation")]),
    ("sns/lambda-record-cloudwatch-alarm-metric-math.json", &[Incident(K::Alarm, R::Alarm, "arn:aws:cloudwatch:REGION:ACCOUNT_NUMBER:alarm:EXAMPLE")]),
    ("sns/lambda-record-cloudwatch-alarm-single-metric.json", &[Incident(K::Alarm, R::Alarm, "arn:aws:cloudwatch:REGION:ACCOUNT_NUMBER:alarm:EXAMPLE")]),
    ("sns/lambda-record-eventbridge-ecs-task-stopped.json", &[Incident(K::TaskCrashed, R::EcsTask, CRASHED_TASK)]),
    ("sns/lambda-record-plain-message-with-attributes.json", &[Ignored("non-JSON message")]),

    ("sqs/lambda-record-dlq-redrive.json", &[Ignored("non-JSON message")]),
    ("sqs/lambda-record-sns-envelope-in-body.json", &[Ignored("unrecognized shape: keys message, username")]),
    ("sqs/receive-message-eventbridge-event-body.json", &[Ignored("unsupported event demo.sqs \"transaction\"")]),
];

/// Every file below `dir`, relative to `root`, `/`-separated.
fn files_below(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files_below(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).expect("below root");
            let parts: Vec<_> = rel.iter().map(|p| p.to_string_lossy()).collect();
            out.insert(parts.join("/"));
        }
    }
}

/// Issue 11, item 16: a fixture without an expected outcome was never checked,
/// and a stale expectation kept passing after its file was gone.
#[test]
fn the_fixture_table_covers_the_directory_exactly() {
    let root = fixtures_dir();
    let mut on_disk = BTreeSet::new();
    files_below(&root, &root, &mut on_disk);
    for name in NOT_FIXTURES {
        assert!(
            on_disk.remove(*name),
            "{name} is listed as not a fixture but is gone"
        );
    }
    let mut in_table = BTreeSet::new();
    for (name, _) in FIXTURES {
        assert!(
            in_table.insert(name.to_string()),
            "{name} has two rows in FIXTURES"
        );
    }
    let missing: Vec<_> = on_disk.difference(&in_table).collect();
    let stale: Vec<_> = in_table.difference(&on_disk).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "FIXTURES must cover tests/fixtures/aws-events exactly.\n  files with no row: {missing:?}\n  rows with no file: {stale:?}"
    );
}

fn meets(expect: &Expect, got: &Normalized) -> bool {
    match (expect, &got.signal) {
        (Incident(kind, rkind, id), Signal::Incident(i)) => {
            i.kind == *kind && i.resource.kind == *rkind && i.resource.id == *id
        }
        (Recovery(rkind, id), Signal::Recovery(r)) => {
            r.resource.kind == *rkind && r.resource.id == *id
        }
        (Ignored(part), Signal::Ignored { reason }) => reason.contains(part),
        (Subscription(kind), Signal::Subscription(s)) => s.kind == *kind,
        _ => false,
    }
}

#[test]
fn every_fixture_normalizes_to_its_expected_outcome() {
    let mut wrong = Vec::new();
    for (name, expected) in FIXTURES {
        let got = run(name);
        let same =
            got.len() == expected.len() && expected.iter().zip(&got).all(|(e, g)| meets(e, g));
        if !same {
            wrong.push(format!("{name}:\n  expected {expected:?}\n  got {got:#?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn ecs_fixture_details() {
    let cpu = incident("ecs/service-action-placement-failure-cpu.json");
    let spot = incident("ecs/service-action-placement-failure-fargate-spot.json");
    assert!(cpu.reason.contains("RESOURCE:CPU"));
    assert_ne!(cpu.dedupe_key, spot.dedupe_key, "two keys");
    let d = incident("ecs/deployment-failed-circuit-breaker.json");
    assert!(d.reason.contains("circuit breaker"));
}

#[test]
fn ecs_task_fixture_details() {
    let spot = incident("ecs/task-spot-termination-notice-snippet.json");
    assert_eq!(spot.group, None);
    assert_eq!(spot.detected_at, received(), "no time in the snippet");

    let elb = incident("ecs/task-stopped-elb-health-checks-failed-fargate.json");
    assert_eq!(
        elb.group.as_ref().map(|g| g.id.as_str()),
        Some(
            "arn:aws:ecs:ap-northeast-2:653734769926:service/sin-web_cluster-dev/sin-web_service-dev"
        )
    );
    assert_eq!(
        elb.detail.get("health_check").map(String::as_str),
        Some("elb")
    );
    assert_eq!(
        elb.detail.get("target_group").map(String::as_str),
        Some(
            "arn:aws:elasticloadbalancing:ap-northeast-2:653734769926:targetgroup/sin-web-target-dev/ccb1c7ee670051a0"
        )
    );

    let crashed = incident("ecs/task-stopped-essential-container-exited-fargate.json");
    assert_eq!(
        crashed.group.as_ref().map(|g| g.id.as_str()),
        Some("arn:aws:ecs:eu-central-1:111111111111:service/test/example-api-v1")
    );
    assert_eq!(
        crashed.detail.get("culprit").map(String::as_str),
        Some("app")
    );
    assert_eq!(
        crashed.detail.get("exit-code").map(String::as_str),
        Some("2")
    );
    assert!(crashed.reason.contains("app exit 2"), "{}", crashed.reason);

    // The same event through SNS → Lambda has the same key, hence the same id.
    let via_sns = incident("sns/lambda-record-eventbridge-ecs-task-stopped.json");
    assert_eq!(via_sns.dedupe_key, crashed.dedupe_key);
    assert_eq!(via_sns.id, crashed.id);
}

#[test]
fn alarm_fixture_details() {
    let malformed = incident("cloudwatch/lambda-action-alarm-metric-malformed-timestamps.json");
    assert_eq!(
        malformed
            .detected_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "2023-08-04T12:36:15.490Z"
    );
    let math = incident("sns/lambda-record-cloudwatch-alarm-metric-math.json");
    let single = incident("sns/lambda-record-cloudwatch-alarm-single-metric.json");
    assert_eq!(math.resource.region, None, "REGION is a placeholder");
    assert_eq!(math.dedupe_key, single.dedupe_key, "one key");
}

#[test]
fn envelope_fixture_details() {
    for name in [
        "sns/http-subscription-confirmation.json",
        "sns/http-unsubscribe-confirmation.json",
    ] {
        match one(name).signal {
            Signal::Subscription(s) => {
                assert_eq!(s.topic_arn, "arn:aws:sns:us-west-2:123456789012:MyTopic");
                assert!(s.subscribe_url.is_some());
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(
        one("sqs/receive-message-eventbridge-event-body.json").path,
        "Messages[0].Body>"
    );
    assert_eq!(
        one("sqs/lambda-record-sns-envelope-in-body.json").path,
        "Records[0].body>Message>"
    );
}

#[test]
fn ec2_asg_health_fixture_details() {
    let p = incident("ec2/spot-interruption-warning-docs-placeholder.json");
    assert_eq!(p.resource.region.as_deref(), Some("us-east-2"));
    assert_eq!(p.detected_at, received(), "placeholder time");
    let t = incident("ec2/spot-interruption-warning-terminate.json");
    assert_eq!(t.resource.region.as_deref(), Some("us-east-1"));
    assert_eq!(t.detected_at, received());
    let retiring = incident("health/ec2-dedicated-host-network-maintenance-scheduled.json");
    assert!(retiring.detail.contains_key("scheduled_for"));
    let issue = incident("health/ec2-instance-store-drive-degraded-issue.json");
    assert_eq!(issue.resource.region.as_deref(), Some("us-west-2"));
    for name in [
        "autoscaling/launch-unsuccessful.json",
        "autoscaling/terminate-unsuccessful.json",
    ] {
        assert_eq!(
            incident(name)
                .detail
                .get("EC2InstanceId")
                .map(String::as_str),
            Some("i-1234567890abcdef0"),
            "{name}"
        );
    }
}

#[test]
fn elbv2_fixture_details() {
    let bad = incident("elbv2/describe-target-health-unhealthy-timeout.json");
    assert_eq!(bad.detail.get("port").map(String::as_str), Some("80"));

    // With the poller's target group the incident is grouped and located.
    let mut opts = NormalizeOptions::new(received());
    opts.target_group =
        Some("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/abc".into());
    let bytes = std::fs::read(fixture_path(
        "elbv2/describe-target-health-unhealthy-timeout.json",
    ))
    .expect("read");
    let out = normalize(&bytes, &opts).expect("normalizes");
    let inc = out[0].incident().expect("incident");
    assert_eq!(
        inc.group.as_ref().map(|g| g.kind),
        Some(ResourceKind::TargetGroup)
    );
    assert_eq!(inc.resource.region.as_deref(), Some("us-east-1"));
}

#[test]
fn redelivery_gives_every_fixture_the_same_ids() {
    for (name, _) in FIXTURES {
        let bytes = std::fs::read(fixture_path(name)).expect("read");
        let a = normalize(&bytes, &NormalizeOptions::new(received())).expect("json");
        let later = NormalizeOptions::new(received() + chrono::Duration::hours(1));
        let b = normalize(&bytes, &later).expect("json");
        let ids = |v: &[Normalized]| {
            v.iter()
                .filter_map(|n| n.incident().map(|i| i.dedupe_key.clone()))
                .collect::<Vec<_>>()
        };
        // Keys never depend on the receive time, except for fixtures that have no time at all.
        if !name.contains("elbv2") && !name.contains("spot") {
            assert_eq!(ids(&a), ids(&b), "{name}");
        }
    }
}

/// Issue 11, item 13: a payload of any size became as many signals, each a
/// store write and a decision.
#[test]
fn a_batch_over_the_signal_cap_keeps_the_cap_and_reports_the_rest() {
    let event = std::fs::read_to_string(fixture_path(
        "ecs/task-stopped-essential-container-exited-fargate.json",
    ))
    .expect("read");
    let records: Vec<_> = (0..130)
        .map(|i| {
            let body = event.replace("a6eaf0150a4248dAA1bcbd688121014e", &format!("{i:032x}"));
            serde_json::json!({"eventSource": "aws:sqs", "body": body})
        })
        .collect();
    let payload = serde_json::to_vec(&serde_json::json!({ "Records": records })).expect("json");
    let out = normalize(&payload, &NormalizeOptions::new(received())).expect("json");
    assert_eq!(out.len(), 101, "100 kept, one marker");
    assert!(out[..100].iter().all(|n| n.incident().is_some()));
    assert_eq!(
        out[100].signal,
        Signal::Truncated {
            dropped: 30,
            limit: 100
        }
    );
    let json = serde_json::to_value(&out[100]).expect("serializes");
    assert_eq!(
        json,
        serde_json::json!({"truncated": {"dropped": 30, "limit": 100}, "path": "Records[100].body>"})
    );
}

#[test]
fn healer_normalize_reports_the_signals_past_the_cap() {
    let normalize_with = |cap: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_healer"))
            .args(["normalize", "--max-signals-per-payload", cap])
            .arg(fixture_path(
                "elbv2/describe-target-health-all-healthy.json",
            ))
            .output()
            .expect("runs")
    };
    let out = normalize_with("1");
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].get("recovery").is_some());
    assert_eq!(
        lines[1]["truncated"],
        serde_json::json!({"dropped": 1, "limit": 1})
    );
    let zero = normalize_with("0");
    assert!(!zero.status.success());
    assert!(String::from_utf8_lossy(&zero.stderr).contains("at least 1"));
}

#[test]
fn whole_input_errors_are_clear() {
    let opts = NormalizeOptions::new(received());
    assert!(matches!(
        normalize(b"{\"truncated\": ", &opts),
        Err(SignalError::NotJson(_))
    ));
    assert!(matches!(
        normalize(b"\xff\xfe", &opts),
        Err(SignalError::NotJson(_))
    ));
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let err = normalize(deep.as_bytes(), &opts).expect_err("too deep");
    assert!(err.to_string().contains("recursion limit"), "{err}");
    let mut small = opts.clone();
    small.max_input_bytes = 10;
    assert!(matches!(
        normalize(b"{\"a\": \"0123456789\"}", &small),
        Err(SignalError::Oversized { .. })
    ));
}

#[test]
fn nested_envelopes_are_bounded() {
    let opts = NormalizeOptions::new(received());
    // An SNS notification inside an SNS notification, six levels deep.
    let mut payload = serde_json::json!({"hello": "world"});
    for _ in 0..6 {
        payload = serde_json::json!({"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": payload.to_string()});
    }
    let out = normalize(payload.to_string().as_bytes(), &opts).expect("json");
    assert!(
        out[0].ignored().is_some_and(|r| r.contains("too deep")),
        "{out:?}"
    );
    // A huge string inside a body is ignored, not decoded.
    let huge = serde_json::json!({"Records": [{"eventSource": "aws:sqs", "body": format!("{{\"x\":\"{}\"}}", "a".repeat(2 << 20))}]});
    let out = normalize(huge.to_string().as_bytes(), &opts).expect("json");
    assert!(
        out[0].ignored().is_some_and(|r| r.contains("oversized")),
        "{out:?}"
    );
    // Key casing drifts between Lambda and the API.
    let lambda_style = serde_json::json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Type": "Notification", "TopicArn": "t", "Message": "plain"}}]});
    let out = normalize(lambda_style.to_string().as_bytes(), &opts).expect("json");
    assert!(out[0].ignored().is_some_and(|r| r.contains("non-JSON")));
    // An empty batch is explained.
    let out = normalize(b"{\"Records\": []}", &opts).expect("json");
    assert_eq!(out[0].ignored(), Some("empty batch"));
}

fn fixture_bytes() -> Vec<Vec<u8>> {
    FIXTURES
        .iter()
        .map(|(name, _)| std::fs::read(fixture_path(name)).expect("read"))
        .collect()
}

/// Cases per property; `HEALER_FUZZ_CASES` raises it for a long fuzzing run.
fn cases() -> u32 {
    std::env::var("HEALER_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256)
}

/// Replaces a random JSON value inside a fixture with a hostile one.
fn mutate(v: &mut serde_json::Value, pick: &mut u64, replacement: &serde_json::Value) -> bool {
    use serde_json::Value;
    *pick = pick
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    if pick.is_multiple_of(7) {
        *v = replacement.clone();
        return true;
    }
    match v {
        Value::Object(m) => {
            let n = m.len().max(1);
            let key = m.keys().nth((*pick as usize) % n).cloned();
            match key {
                Some(k) if pick.is_multiple_of(5) => {
                    m.remove(&k);
                    true
                }
                Some(k) => m
                    .get_mut(&k)
                    .is_some_and(|child| mutate(child, pick, replacement)),
                None => false,
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let i = (*pick as usize) % a.len();
            mutate(&mut a[i], pick, replacement)
        }
        _ => {
            *v = replacement.clone();
            true
        }
    }
}

fn hostile_value() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
        ".{0,40}".prop_map(serde_json::Value::from),
        (1usize..200_000).prop_map(|n| serde_json::Value::from("x".repeat(n))),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
        Just(
            serde_json::json!({"Type": "Notification", "TopicArn": "t", "Message": "{\"Records\":[{\"body\":\"{}\"}]}"})
        ),
        Just(serde_json::Value::from("2023-08-04T12: 36: 15.490+0000")),
        Just(serde_json::Value::from("arn:aws:ecs::::")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = normalize(&bytes, &NormalizeOptions::new(received()));
    }

    #[test]
    fn truncated_fixtures_never_panic(idx in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>()) {
        let all = fixture_bytes();
        let bytes = &all[idx.index(all.len())];
        let n = cut.index(bytes.len() + 1);
        match normalize(&bytes[..n], &NormalizeOptions::new(received())) {
            Ok(signals) => prop_assert!(!signals.is_empty()),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn mutated_fixtures_always_yield_signals(
        idx in any::<prop::sample::Index>(),
        seed in any::<u64>(),
        rounds in 1usize..6,
        replacement in hostile_value(),
    ) {
        let all = fixture_bytes();
        let mut v: serde_json::Value = serde_json::from_slice(&all[idx.index(all.len())]).expect("fixture is JSON");
        let mut pick = seed;
        for _ in 0..rounds {
            mutate(&mut v, &mut pick, &replacement);
        }
        let bytes = serde_json::to_vec(&v).expect("serializes");
        let out = normalize(&bytes, &NormalizeOptions::new(received()));
        let signals = out.expect("valid JSON never errors");
        prop_assert!(!signals.is_empty());
        for s in signals {
            // Every output is explainable and serializable.
            let json = serde_json::to_string(&s).expect("serializes");
            prop_assert!(json.contains("\"path\""));
        }
    }
}

/// Issue 11 item 10: a task stops once. A later event about the same task ARN
/// (a higher `version`, a later time) is the same incident id, so the store's
/// conditional create dedupes it across replicas.
#[test]
fn a_task_stops_once_one_incident_id_per_task_arn() {
    let path = fixture_path("ecs/task-stopped-essential-container-exited-fargate.json");
    let first: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("JSON");
    let mut later = first.clone();
    let version = first["detail"]["version"].as_i64().unwrap_or(1);
    later["detail"]["version"] = (version + 1).into();
    later["id"] = "another-event-id".into();
    let ids = |v: &serde_json::Value| {
        normalize(v.to_string().as_bytes(), &NormalizeOptions::new(received()))
            .expect("json")
            .iter()
            .filter_map(|n| n.incident().map(|i| i.id.clone()))
            .collect::<Vec<_>>()
    };
    let (a, b) = (ids(&first), ids(&later));
    assert_eq!(a.len(), 1);
    assert_eq!(a, b, "one task, one incident");
}
