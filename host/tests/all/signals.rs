//! Every real payload in tests/fixtures/aws-events has its expected outcome, and
//! no input, however broken, panics the normalizer.

use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};
use healer::signals::{NormalizeOptions, Normalized, Signal, SignalError, normalize};
use healer::{IncidentKind, ResourceKind};
use proptest::prelude::*;

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0)
        .single()
        .expect("valid")
}

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/aws-events")
        .join(format!("{name}.json"))
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

#[track_caller]
fn incident(name: &str, kind: IncidentKind, rkind: ResourceKind, id: &str) -> healer::Incident {
    let n = one(name);
    let inc = n
        .incident()
        .unwrap_or_else(|| panic!("{name}: expected incident, got {n:?}"))
        .clone();
    assert_eq!(inc.kind, kind, "{name}");
    assert_eq!(inc.resource.kind, rkind, "{name}");
    assert_eq!(inc.resource.id, id, "{name}");
    inc
}

#[track_caller]
fn ignored(name: &str, contains: &str) {
    for n in run(name) {
        let reason = n
            .ignored()
            .unwrap_or_else(|| panic!("{name}: expected ignored, got {n:?}"));
        assert!(
            reason.contains(contains),
            "{name}: {reason:?} lacks {contains:?}"
        );
    }
}

const SVC: &str = "arn:aws:ecs:us-west-2:111122223333:service/default/servicetest";

#[test]
fn ecs_fixtures() {
    ignored("ecs/container-instance-state-change", "container instance");
    let r = one("ecs/deployment-completed");
    assert_eq!(r.recovery().map(|r| r.resource.id.as_str()), Some(SVC));
    let d = incident(
        "ecs/deployment-failed-circuit-breaker",
        IncidentKind::DeploymentFailed,
        ResourceKind::EcsService,
        SVC,
    );
    assert!(d.reason.contains("circuit breaker"));
    ignored("ecs/deployment-in-progress", "in progress");
    ignored("ecs/deployment-rollback-in-progress", "rollback=true");
    ignored(
        "ecs/service-action-capacity-provider-steady-state",
        "CAPACITY_PROVIDER_STEADY_STATE",
    );
    let cpu = incident(
        "ecs/service-action-placement-failure-cpu",
        IncidentKind::ServiceImpaired,
        ResourceKind::EcsService,
        SVC,
    );
    let spot = incident(
        "ecs/service-action-placement-failure-fargate-spot",
        IncidentKind::ServiceImpaired,
        ResourceKind::EcsService,
        SVC,
    );
    assert!(cpu.reason.contains("RESOURCE:CPU"));
    assert_ne!(cpu.dedupe_key, spot.dedupe_key, "two keys");
    let steady = one("ecs/service-action-steady-state");
    assert_eq!(steady.recovery().map(|r| r.resource.id.as_str()), Some(SVC));
    incident(
        "ecs/service-action-task-start-impaired",
        IncidentKind::ServiceImpaired,
        ResourceKind::EcsService,
        SVC,
    );
    ignored("ecs/task-running-fargate", "not stopped");
    ignored("ecs/task-running-with-stopped-container", "not stopped");
    ignored("ecs/task-stopped-scaling-activity-ec2", "Scaling activity");
    ignored(
        "ecs/task-stopped-scaling-activity-fargate",
        "Scaling activity",
    );
    ignored("ecs/task-stopped-user-initiated-ec2", "user");
}

#[test]
fn ecs_task_fixtures() {
    let spot = incident(
        "ecs/task-spot-termination-notice-snippet",
        IncidentKind::SpotInterruption,
        ResourceKind::EcsTask,
        "arn:aws:ecs:us-east-1:111122223333:task/b99d40b3-5176-4f71-9a52-9dbd6fEXAMPLE",
    );
    assert_eq!(spot.group, None);
    assert_eq!(spot.detected_at, received(), "no time in the snippet");

    let elb = incident(
        "ecs/task-stopped-elb-health-checks-failed-fargate",
        IncidentKind::TaskHealthCheckFailed,
        ResourceKind::EcsTask,
        "arn:aws:ecs:ap-northeast-2:653734769926:task/sin-web_cluster-dev/7e12d648155541fbb8a922c39b586f82",
    );
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

    let crashed = incident(
        "ecs/task-stopped-essential-container-exited-fargate",
        IncidentKind::TaskCrashed,
        ResourceKind::EcsTask,
        "arn:aws:ecs:eu-central-1:111111111111:task/test/a6eaf0150a4248dAA1bcbd688121014e",
    );
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
    let via_sns = one("sns/lambda-record-eventbridge-ecs-task-stopped");
    let via_sns = via_sns.incident().expect("incident");
    assert_eq!(via_sns.dedupe_key, crashed.dedupe_key);
    assert_eq!(via_sns.id, crashed.id);
}

#[test]
fn alarm_fixtures() {
    let cw = "arn:aws:cloudwatch:";
    incident(
        "cloudwatch/eventbridge-alarm-anomaly-detection",
        IncidentKind::Alarm,
        ResourceKind::Alarm,
        &format!("{cw}us-east-1:123456789012:alarm:EC2 CPU Utilization Anomaly"),
    );
    ignored(
        "cloudwatch/eventbridge-alarm-composite-with-suppressor",
        "suppressed",
    );
    ignored(
        "cloudwatch/eventbridge-alarm-configuration-change-update",
        "configuration change",
    );
    ignored(
        "cloudwatch/eventbridge-alarm-contributor-state-change-current-docs",
        "muted",
    );
    ignored(
        "cloudwatch/eventbridge-alarm-single-metric-muted-current-docs",
        "muted",
    );
    incident(
        "cloudwatch/eventbridge-alarm-metric-math",
        IncidentKind::Alarm,
        ResourceKind::Alarm,
        &format!("{cw}us-east-1:123456789012:alarm:TotalNetworkTrafficTooHigh"),
    );
    incident(
        "cloudwatch/eventbridge-alarm-single-metric-ec2-cpu",
        IncidentKind::Alarm,
        ResourceKind::Alarm,
        &format!("{cw}us-east-1:123456789012:alarm:ServerCpuTooHigh"),
    );
    incident(
        "cloudwatch/lambda-action-alarm-composite",
        IncidentKind::Alarm,
        ResourceKind::Alarm,
        &format!("{cw}us-east-1:111122223333:alarm:SuppressionDemo.Main"),
    );
    let malformed = incident(
        "cloudwatch/lambda-action-alarm-metric-malformed-timestamps",
        IncidentKind::Alarm,
        ResourceKind::Alarm,
        &format!("{cw}us-east-1:444455556666:alarm:lambda-demo-metric-alarm"),
    );
    assert_eq!(
        malformed
            .detected_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "2023-08-04T12:36:15.490Z"
    );
    incident(
        "cloudwatch/lambda-action-alarm-metric-math-lambda",
        IncidentKind::Alarm,
        ResourceKind::Alarm,
        &format!("{cw}eu-west-1:912397435824:alarm:test_alarm"),
    );
    incident(
        "cloudwatch/sns-message-body-rds-cpu-alarm",
        IncidentKind::Alarm,
        ResourceKind::Alarm,
        &format!("{cw}ap-northeast-2:xxxxxxxxxxx:alarm:sin-alarm-rds-dev"),
    );

    let math = incident(
        "sns/lambda-record-cloudwatch-alarm-metric-math",
        IncidentKind::Alarm,
        ResourceKind::Alarm,
        &format!("{cw}REGION:ACCOUNT_NUMBER:alarm:EXAMPLE"),
    );
    let single = incident(
        "sns/lambda-record-cloudwatch-alarm-single-metric",
        IncidentKind::Alarm,
        ResourceKind::Alarm,
        &format!("{cw}REGION:ACCOUNT_NUMBER:alarm:EXAMPLE"),
    );
    assert_eq!(math.resource.region, None, "REGION is a placeholder");
    assert_eq!(math.dedupe_key, single.dedupe_key, "one key");
}

#[test]
fn envelope_fixtures() {
    ignored("sns/http-notification", "non-JSON");
    ignored(
        "sns/lambda-record-plain-message-with-attributes",
        "non-JSON",
    );
    for name in [
        "sns/http-subscription-confirmation",
        "sns/http-unsubscribe-confirmation",
    ] {
        match one(name).signal {
            Signal::Subscription(s) => {
                assert_eq!(s.topic_arn, "arn:aws:sns:us-west-2:123456789012:MyTopic");
                assert!(s.subscribe_url.is_some());
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    ignored("sqs/lambda-record-dlq-redrive", "non-JSON");
    ignored(
        "sqs/lambda-record-sns-envelope-in-body",
        "unrecognized shape",
    );
    ignored(
        "sqs/receive-message-eventbridge-event-body",
        "unsupported event",
    );
    assert_eq!(
        one("sqs/receive-message-eventbridge-event-body").path,
        "Messages[0].Body>"
    );
    assert_eq!(
        one("sqs/lambda-record-sns-envelope-in-body").path,
        "Records[0].body>Message>"
    );
}

#[test]
fn ec2_asg_health_fixtures() {
    ignored("ec2/instance-state-change-pending", "context");
    ignored("ec2/instance-state-change-shutting-down", "context");
    ignored("ec2/rebalance-recommendation", "advisory");
    let p = incident(
        "ec2/spot-interruption-warning-docs-placeholder",
        IncidentKind::SpotInterruption,
        ResourceKind::Ec2Instance,
        "i-1234567890abcdef0",
    );
    assert_eq!(p.resource.region.as_deref(), Some("us-east-2"));
    assert_eq!(p.detected_at, received(), "placeholder time");
    let t = incident(
        "ec2/spot-interruption-warning-terminate",
        IncidentKind::SpotInterruption,
        ResourceKind::Ec2Instance,
        "i-0b662ef9931388ba0",
    );
    assert_eq!(t.resource.region.as_deref(), Some("us-east-1"));
    assert_eq!(t.detected_at, received());
    let retiring = incident(
        "health/ec2-dedicated-host-network-maintenance-scheduled",
        IncidentKind::InstanceRetiring,
        ResourceKind::Ec2Instance,
        "i-12345678",
    );
    assert!(retiring.detail.contains_key("scheduled_for"));
    let issue = incident(
        "health/ec2-instance-store-drive-degraded-issue",
        IncidentKind::InstanceImpaired,
        ResourceKind::Ec2Instance,
        "i-abcd1111",
    );
    assert_eq!(issue.resource.region.as_deref(), Some("us-west-2"));
    for name in [
        "autoscaling/launch-unsuccessful",
        "autoscaling/terminate-unsuccessful",
    ] {
        let i = incident(
            name,
            IncidentKind::ServiceImpaired,
            ResourceKind::AutoscalingGroup,
            "my-auto-scaling-group",
        );
        assert_eq!(
            i.detail.get("EC2InstanceId").map(String::as_str),
            Some("i-1234567890abcdef0")
        );
    }
    for name in [
        "autoscaling/instance-refresh-failed-docs-placeholder",
        "autoscaling/launch-lifecycle-action",
        "autoscaling/terminate-lifecycle-action-kops",
        "autoscaling/terminate-successful",
    ] {
        ignored(name, "not a failure");
    }
}

#[test]
fn elbv2_fixtures() {
    let healthy = run("elbv2/describe-target-health-all-healthy");
    let ids: Vec<_> = healthy
        .iter()
        .filter_map(|n| n.recovery())
        .map(|r| r.resource.id.as_str())
        .collect();
    assert_eq!(ids, ["i-ceddcd4d", "i-0f76fade"]);
    let single = one("elbv2/describe-target-health-single-target-healthy");
    assert_eq!(
        single.recovery().map(|r| r.resource.id.as_str()),
        Some("i-0f76fade")
    );
    let bad = incident(
        "elbv2/describe-target-health-unhealthy-timeout",
        IncidentKind::TargetUnhealthy,
        ResourceKind::Target,
        "i-0f76fade",
    );
    assert_eq!(bad.detail.get("port").map(String::as_str), Some("80"));
    ignored(
        "elbv2/describe-target-health-initial-registration-in-progress",
        "transient",
    );
    ignored(
        "elbv2/describe-target-health-lambda-health-check-disabled",
        "unavailable",
    );
    ignored("elbv2/describe-target-health-unused-not-in-use", "unused");

    // With the poller's target group the incident is grouped and located.
    let mut opts = NormalizeOptions::new(received());
    opts.target_group =
        Some("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/abc".into());
    let bytes = std::fs::read(fixture_path(
        "elbv2/describe-target-health-unhealthy-timeout",
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
fn every_fixture_yields_signals_and_redelivery_gives_the_same_ids() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/aws-events");
    let mut count = 0;
    for dir in std::fs::read_dir(&root).expect("fixtures") {
        let dir = dir.expect("entry").path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).expect("dir") {
            let path = f.expect("entry").path();
            let bytes = std::fs::read(&path).expect("read");
            let a = normalize(&bytes, &NormalizeOptions::new(received())).expect("json");
            let later = NormalizeOptions::new(received() + chrono::Duration::hours(1));
            let b = normalize(&bytes, &later).expect("json");
            assert!(!a.is_empty(), "{}", path.display());
            let ids = |v: &[Normalized]| {
                v.iter()
                    .filter_map(|n| n.incident().map(|i| i.dedupe_key.clone()))
                    .collect::<Vec<_>>()
            };
            // Keys never depend on the receive time, except for fixtures that have no time at all.
            if !path.to_string_lossy().contains("elbv2") && !path.to_string_lossy().contains("spot")
            {
                assert_eq!(ids(&a), ids(&b), "{}", path.display());
            }
            count += 1;
        }
    }
    assert!(count >= 58, "only {count} fixtures");
}

/// Issue 11, item 13: a payload of any size became as many signals, each a
/// store write and a decision.
#[test]
fn a_batch_over_the_signal_cap_keeps_the_cap_and_reports_the_rest() {
    let event = std::fs::read_to_string(fixture_path(
        "ecs/task-stopped-essential-container-exited-fargate",
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
            .arg(fixture_path("elbv2/describe-target-health-all-healthy"))
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
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/aws-events");
    let mut all = Vec::new();
    for dir in std::fs::read_dir(&root).expect("fixtures").flatten() {
        if dir.path().is_dir() {
            for f in std::fs::read_dir(dir.path()).expect("dir").flatten() {
                all.push(std::fs::read(f.path()).expect("read"));
            }
        }
    }
    all.sort();
    all
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
