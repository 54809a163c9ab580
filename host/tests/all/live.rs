//! The seeds' scenarios end to end: `healer run --live` (and `healer heal
//! --live`) against moto through the real SDK clients. moto emits no events
//! of its own, so each test plays AWS's part and puts on the ingestion queue
//! the alarm notification AWS would send (the SNS envelope of a real alarm
//! payload, from the fixtures, pointed at the test's resources); the team's
//! inbox is an SQS queue subscribed to the notify topic.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2 as ec2;
use healer_test_artifacts as artifacts;

use crate::actions_ecs_ec2::{Original, instance, original, state};

/// The SNS envelope of a CloudWatch alarm notification (the shape SQS
/// receives from an SNS subscription), from the real fixture, for `metric`
/// of `namespace` with one dimension, in `new_state`.
fn alarm_notification(
    namespace: &str,
    metric: &str,
    dimension: (&str, &str),
    new_state: &str,
) -> String {
    let fixture = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../tests/fixtures/aws-events/sns/lambda-record-cloudwatch-alarm-single-metric.json",
    ))
    .expect("fixture");
    let v: serde_json::Value = serde_json::from_str(&fixture).expect("fixture JSON");
    let mut envelope = v["Records"][0]["Sns"].clone();
    let mut alarm: serde_json::Value =
        serde_json::from_str(envelope["Message"].as_str().expect("message")).expect("alarm JSON");
    let now = chrono::Utc::now();
    let name = format!("{metric}-{}", dimension.1);
    alarm["AlarmName"] = name.clone().into();
    alarm["AlarmArn"] = format!("arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}").into();
    alarm["Region"] = "US East (N. Virginia)".into();
    alarm["NewStateValue"] = new_state.into();
    alarm["OldStateValue"] = if new_state == "OK" { "ALARM" } else { "OK" }.into();
    alarm["StateChangeTime"] = now.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string().into();
    alarm["Trigger"]["MetricName"] = metric.into();
    alarm["Trigger"]["Namespace"] = namespace.into();
    alarm["Trigger"]["Dimensions"] =
        serde_json::json!([{ "value": dimension.1, "name": dimension.0 }]);
    envelope["Message"] = alarm.to_string().into();
    envelope["Subject"] = format!("{new_state}: \"{name}\" in US East (N. Virginia)").into();
    envelope["TopicArn"] = "arn:aws:sns:us-east-1:123456789012:alarms".into();
    envelope["Timestamp"] = now.to_rfc3339().into();
    envelope.to_string()
}

/// The team's channel and inbox (SNS envelopes, as an email or chat
/// integration would receive them): (topic ARN, inbox queue URL).
async fn inbox(shared: &aws_config::SdkConfig) -> (String, String) {
    crate::support::inbox(shared, "healer-notify", false).await
}

/// The SNS messages the inbox received so far (their `Message` text).
async fn received(sqs: &aws_sdk_sqs::Client, queue: &str) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let batch = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive_message");
        if batch.messages().is_empty() {
            return out;
        }
        for m in batch.messages() {
            let body: serde_json::Value =
                serde_json::from_str(m.body().unwrap_or_default()).expect("SNS envelope");
            out.push(body["Message"].as_str().unwrap_or_default().to_owned());
            sqs.delete_message()
                .queue_url(queue)
                .set_receipt_handle(m.receipt_handle().map(str::to_owned))
                .send()
                .await
                .expect("delete_message");
        }
    }
}

/// A policy directory holding the example components named.
fn policies(dir: &Path, components: &[(&str, &str)]) -> PathBuf {
    let p = dir.join("policies");
    std::fs::create_dir_all(&p).expect("mkdir");
    for (name, path) in components {
        std::fs::copy(path, p.join(name)).expect("copy");
    }
    p
}

/// `healer` with the local AWS's environment.
fn healer(endpoint: &str, data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_healer"));
    c.env("HEALER_DATA_DIR", data)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("HEALER_LOG", "healer=info")
        // moto's status checks are ok at once; nothing to wait for.
        .env("HEALER_VERIFY_SETTLE_SECS", "0");
    c
}

/// `healer run --live` on the queue, notifying `topic`, sweeping often.
fn run_live(endpoint: &str, data: &Path, policies: &Path, queue: &str, topic: &str) -> Child {
    run_live_with(endpoint, data, policies, queue, topic, &[])
}

fn run_live_with(
    endpoint: &str,
    data: &Path,
    policies: &Path,
    queue: &str,
    topic: &str,
    env: &[(&str, &str)],
) -> Child {
    let port = crate::support::free_port();
    healer(endpoint, data)
        .args(["run", "--no-cache", "--live", "--aws-facts"])
        .env("HEALER_POLICIES", policies)
        .env("HEALER_SQS_QUEUE_URL", queue)
        .env("HEALER_LISTEN", format!("127.0.0.1:{port}"))
        .env("HEALER_NOTIFY_DEFAULT", topic)
        .env("HEALER_DRIVE_INTERVAL_MS", "200")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("healer run starts")
}

/// The one incident the store holds, through `healer incidents list`.
fn incidents(endpoint: &str, data: &Path) -> Vec<serde_json::Value> {
    let out = healer(endpoint, data)
        .args(["incidents", "list", "--json"])
        .output()
        .expect("runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// Waits until `done` holds for the store's incidents; on timeout, kills
/// the service and fails with its log.
async fn wait_for(
    child: Child,
    endpoint: &str,
    data: &Path,
    what: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> (Child, Vec<serde_json::Value>) {
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let list = incidents(endpoint, data);
        if done(&list) {
            return (child, list);
        }
        if Instant::now() > deadline || child.try_wait().expect("wait").is_some() {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{what}: {list:#?}\n--- healer run:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A policy context with `strategy = replace`: the EC2 seed replaces at once
/// (the example policy's default ladder reboots an instance-check failure
/// first, which on moto, whose status checks are always ok, heals at once).
fn replace_at_once(dir: &Path) -> String {
    let path = dir.join("context.json");
    std::fs::write(&path, r#"{"config": {"strategy": "replace"}}"#).expect("write");
    path.display().to_string()
}

/// The instances healer launched for `old` (by the replaced-instance tag).
async fn twins_of(c: &ec2::Client, old: &str) -> Vec<ec2::types::Instance> {
    c.describe_instances()
        .filters(
            ec2::types::Filter::builder()
                .name("tag:ReplacedInstance")
                .values(old)
                .build(),
        )
        .send()
        .await
        .expect("describe_instances")
        .reservations()
        .iter()
        .flat_map(|r| r.instances().to_vec())
        .collect()
}

/// The instance the Elastic IP `allocation` is on.
async fn eip_owner(c: &ec2::Client, allocation: &str) -> Option<String> {
    c.describe_addresses()
        .allocation_ids(allocation)
        .send()
        .await
        .expect("describe_addresses")
        .addresses()
        .first()
        .and_then(|a| a.instance_id())
        .map(str::to_owned)
}

fn tags(i: &ec2::types::Instance) -> std::collections::BTreeMap<String, String> {
    i.tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_owned(),
                t.value().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn send(sqs: &aws_sdk_sqs::Client, queue: &str, body: &str) {
    sqs.send_message()
        .queue_url(queue)
        .message_body(body)
        .send()
        .await
        .expect("send_message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_seed_a_status_check_alarm_replaces_the_instance_once_and_heals() {
    let Some(moto) =
        crate::moto::start("ec2_seed_a_status_check_alarm_replaces_the_instance_once_and_heals")
    else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let c = ec2::Client::new(&shared);
    let sqs = aws_sdk_sqs::Client::new(&shared);
    let o: Original = original(&c).await;
    let ip = c
        .describe_addresses()
        .allocation_ids(&o.allocation)
        .send()
        .await
        .expect("describe_addresses")
        .addresses()[0]
        .public_ip()
        .expect("ip")
        .to_owned();
    let (topic, inbox_queue) = inbox(&shared).await;
    let events = crate::support::queue(&sqs, "healer-events").await;
    let alarm = alarm_notification(
        "AWS/EC2",
        "StatusCheckFailed",
        ("InstanceId", &o.id),
        "ALARM",
    );
    // AWS delivers at least once: the same notification twice.
    send(&sqs, &events, &alarm).await;
    send(&sqs, &events, &alarm).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let p = policies(dir.path(), &[("ec2.wasm", artifacts::EC2_REPLACE)]);
    let context = replace_at_once(dir.path());
    let child = run_live_with(
        &moto.endpoint,
        &data,
        &p,
        &events,
        &topic,
        &[("HEALER_CONTEXT", &context)],
    );
    let (child, list) = wait_for(child, &moto.endpoint, &data, "the incident heals", |l| {
        l.len() == 1 && l[0]["state"] == "healed"
    })
    .await;
    let record = &list[0];

    // Exactly one twin, a copy of the original plus the healer tags.
    let twins = twins_of(&c, &o.id).await;
    assert_eq!(twins.len(), 1, "{twins:?}");
    let twin = &twins[0];
    let new_id = twin.instance_id().expect("id").to_owned();
    assert_eq!(twin.image_id(), Some(o.image.as_str()));
    assert_eq!(twin.subnet_id(), Some(o.subnet.as_str()));
    assert_eq!(twin.key_name(), Some("ops"));
    assert_eq!(twin.instance_type().map(|t| t.as_str()), Some("t3.micro"));
    assert!(
        twin.security_groups()
            .iter()
            .any(|g| g.group_id() == Some(o.group.as_str())),
        "{twin:?}"
    );
    let t = tags(twin);
    assert_eq!(t.get("SelfHeal").map(String::as_str), Some("true"));
    assert_eq!(t.get("team").map(String::as_str), Some("web"));
    assert_eq!(t.get("SelfHealed").map(String::as_str), Some("true"));
    assert_eq!(t.get("ReplacedInstance"), Some(&o.id));
    assert_eq!(
        t.get("HealerIncident")
            .and_then(|v| record["incident"]["id"].as_str().map(|id| v == id)),
        Some(true)
    );
    assert!(t.contains_key("HealedAt"), "{t:?}");
    // The Elastic IP moved; the original is terminated, last.
    assert_eq!(eip_owner(&c, &o.allocation).await, Some(new_id.clone()));
    assert_eq!(state(&instance(&c, &o.id).await), "terminated");
    // Healed by the poll (the twin runs with its checks ok), MTTR recorded.
    assert!(record["mttr-ms"].as_i64().is_some(), "{record:#}");
    let steps = record["steps"].as_array().expect("steps");
    assert_eq!(steps[0]["result"], "succeeded", "{record:#}");
    assert_eq!(steps[0]["created"][0], new_id.as_str());
    assert!(!steps[0]["request-ids"].as_array().expect("ids").is_empty());
    // One summary in the team's inbox, naming both ids and the IP.
    let messages = received(&sqs, &inbox_queue).await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    for needle in [o.id.as_str(), new_id.as_str(), ip.as_str()] {
        assert!(messages[0].contains(needle), "{needle} in {}", messages[0]);
    }
    // The OK notification afterwards changes nothing: already healed.
    let ok = alarm_notification("AWS/EC2", "StatusCheckFailed", ("InstanceId", &o.id), "OK");
    send(&sqs, &events, &ok).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(twins_of(&c, &o.id).await.len(), 1);
    stop(child);
    let show = healer(&moto.endpoint, &data)
        .args([
            "incidents",
            "show",
            record["incident"]["id"].as_str().expect("id"),
        ])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains("healed"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_seed_an_instance_without_the_opt_in_tag_is_not_replaced() {
    let Some(moto) =
        crate::moto::start("ec2_seed_an_instance_without_the_opt_in_tag_is_not_replaced")
    else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let c = ec2::Client::new(&shared);
    let o = original(&c).await;
    c.delete_tags()
        .resources(&o.id)
        .tags(crate::actions_ecs_ec2::tag("SelfHeal", "true"))
        .send()
        .await
        .expect("delete_tags");
    let (topic, _) = inbox(&shared).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let p = policies(dir.path(), &[("ec2.wasm", artifacts::EC2_REPLACE)]);
    let file = dir.path().join("alarm.json");
    let alarm = alarm_notification(
        "AWS/EC2",
        "StatusCheckFailed",
        ("InstanceId", &o.id),
        "ALARM",
    );
    std::fs::write(&file, alarm).expect("write");
    let out = healer(&moto.endpoint, &data)
        .args(["heal", "--no-cache", "--live", "--aws-facts"])
        .arg(&file)
        .env("HEALER_POLICIES", &p)
        .env("HEALER_NOTIFY_DEFAULT", &topic)
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("not tagged SelfHeal=true"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(twins_of(&c, &o.id).await.is_empty());
    assert_eq!(state(&instance(&c, &o.id).await), "running");
}

/// A real ECS event from the fixtures, pointed at the test's resources
/// (region and account as moto has them).
fn ecs_event(fixture: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/aws-events/ecs")
            .join(fixture),
    )
    .expect("fixture");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("fixture JSON");
    v["region"] = "us-east-1".into();
    v["account"] = "123456789012".into();
    v["time"] = chrono::Utc::now().to_rfc3339().into();
    edit(&mut v);
    v.to_string()
}

/// `healer heal --live FILE` against moto: (success, stdout).
fn heal_live(
    endpoint: &str,
    data: &Path,
    policies: &Path,
    topic: &str,
    event: &str,
) -> (bool, String) {
    let file = data.with_extension("event.json");
    std::fs::write(&file, event).expect("write");
    let out = healer(endpoint, data)
        .args(["heal", "--no-cache", "--live", "--aws-facts"])
        .arg(&file)
        .env("HEALER_POLICIES", policies)
        .env("HEALER_NOTIFY_DEFAULT", topic)
        .env("HEALER_DRIVE_INTERVAL_MS", "200")
        .output()
        .expect("runs");
    let text = format!(
        "{}\n--- stderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_seed_a_failed_deployment_rolls_back_and_task_crashes_are_verified_or_rerun() {
    let Some(moto) = crate::moto::start(
        "ecs_seed_a_failed_deployment_rolls_back_and_task_crashes_are_verified_or_rerun",
    ) else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let world = crate::actions_ecs_ec2::ecs_world(&moto, &shared).await;
    // moto counts a service's tasks as running once its desired count is set.
    world
        .ecs
        .update_service()
        .cluster("prod")
        .service("api")
        .desired_count(2)
        .send()
        .await
        .expect("update_service");
    let (topic, _) = inbox(&shared).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let p = policies(dir.path(), &[("ecs.wasm", artifacts::ECS_TASK_RESTART)]);
    let service_arn = "arn:aws:ecs:us-east-1:123456789012:service/prod/api";

    // A failed deployment of revision 3 → back on revision 1 (2 is inactive).
    let failed = ecs_event("deployment-failed-circuit-breaker.json", |v| {
        v["resources"] = serde_json::json!([service_arn]);
    });
    let data = dir.path().join("rollback");
    let (ok, out) = heal_live(&moto.endpoint, &data, &p, &topic, &failed);
    assert!(ok, "{out}");
    assert!(out.contains("rollback-deployment: succeeded"), "{out}");
    assert!(out.contains("healed"), "{out}");
    assert_eq!(
        world.service().await.task_definition(),
        Some(world.revisions[0].as_str()),
        "{out}"
    );

    // A crashed task of the service: ECS replaces it; nothing is called
    // that changes anything, and the incident heals at the desired count.
    let task = world.run(Some("service:api")).await;
    world.stop(&task).await;
    let crashed = |task: &str, group: &str, definition: &str| {
        ecs_event(
            "task-stopped-essential-container-exited-fargate.json",
            |v| {
                v["resources"] = serde_json::json!([task]);
                v["detail"]["taskArn"] = task.into();
                v["detail"]["clusterArn"] =
                    "arn:aws:ecs:us-east-1:123456789012:cluster/prod".into();
                v["detail"]["group"] = group.into();
                v["detail"]["taskDefinitionArn"] = definition.into();
            },
        )
    };
    let recording = crate::actions_ecs_ec2::start_recording(&moto.endpoint).await;
    let data = dir.path().join("service-task");
    let (ok, out) = heal_live(
        &moto.endpoint,
        &data,
        &p,
        &topic,
        &crashed(&task, "service:api", &world.revisions[0]),
    );
    let ops = crate::actions_ecs_ec2::recorded_operations(&moto.endpoint);
    drop(recording);
    assert!(ok, "{out}");
    assert!(out.contains("healed"), "{out}");
    for op in ["StopTask", "RunTask", "UpdateService"] {
        assert_eq!(
            crate::actions_ecs_ec2::count(&ops, op),
            0,
            "{op} in {ops:?}\n{out}"
        );
    }

    // A crashed standalone task: run again once, same definition.
    let (batch, lone) = world.run_standalone().await;
    world.stop(&lone).await;
    let recording = crate::actions_ecs_ec2::start_recording(&moto.endpoint).await;
    let data = dir.path().join("standalone");
    let (ok, out) = heal_live(
        &moto.endpoint,
        &data,
        &p,
        &topic,
        &crashed(&lone, "family:batch", &batch),
    );
    let ops = crate::actions_ecs_ec2::recorded_operations(&moto.endpoint);
    drop(recording);
    assert!(ok, "{out}");
    assert_eq!(
        crate::actions_ecs_ec2::count(&ops, "RunTask"),
        1,
        "{ops:?}\n{out}"
    );
    assert!(out.contains("restart-task: succeeded"), "{out}");
    assert!(out.contains("healed"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serverless_seed_an_errors_alarm_resets_the_failure_rate_and_ok_heals() {
    let Some(moto) =
        crate::moto::start("serverless_seed_an_errors_alarm_resets_the_failure_rate_and_ok_heals")
    else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let lambda = crate::actions_lambda_sns::create_function(
        &moto,
        "fragile",
        &[("FAILURE_RATE", "1"), ("GREETING", "hello")],
    )
    .await;
    let sqs = aws_sdk_sqs::Client::new(&shared);
    let (topic, inbox_queue) = inbox(&shared).await;
    let events = crate::support::queue(&sqs, "healer-events").await;
    let alarm = alarm_notification("AWS/Lambda", "Errors", ("FunctionName", "fragile"), "ALARM");
    send(&sqs, &events, &alarm).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let p = policies(
        dir.path(),
        &[("lambda.wasm", artifacts::LAMBDA_FAILURE_RATE)],
    );
    let child = run_live(&moto.endpoint, &data, &p, &events, &topic);
    let (child, _) = wait_for(child, &moto.endpoint, &data, "the fix is applied", |l| {
        l.len() == 1 && l[0]["state"] == "verifying"
    })
    .await;
    let (vars, _) = crate::actions_lambda_sns::environment(&lambda, "fragile").await;
    assert_eq!(vars.get("FAILURE_RATE").map(String::as_str), Some("0"));
    assert_eq!(vars.get("GREETING").map(String::as_str), Some("hello"));
    // The alarm's OK is the proof.
    let ok = alarm_notification("AWS/Lambda", "Errors", ("FunctionName", "fragile"), "OK");
    send(&sqs, &events, &ok).await;
    let (child, list) = wait_for(child, &moto.endpoint, &data, "the OK heals it", |l| {
        l.len() == 1 && l[0]["state"] == "healed"
    })
    .await;
    stop(child);
    assert!(list[0]["mttr-ms"].as_i64().is_some(), "{:#}", list[0]);
    let messages = received(&sqs, &inbox_queue).await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert!(messages[0].contains("FAILURE_RATE"), "{}", messages[0]);
    // `healer revert` restores the recorded previous value, the rest kept.
    let id = list[0]["incident"]["id"].as_str().expect("id");
    let out = healer(&moto.endpoint, &data)
        .args(["revert", id])
        .output()
        .expect("runs");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("would restore"),
        "{out:?}"
    );
    let (vars, _) = crate::actions_lambda_sns::environment(&lambda, "fragile").await;
    assert_eq!(
        vars.get("FAILURE_RATE").map(String::as_str),
        Some("0"),
        "a dry run changes nothing"
    );
    let out = healer(&moto.endpoint, &data)
        .args(["revert", "--live", id])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    let (vars, _) = crate::actions_lambda_sns::environment(&lambda, "fragile").await;
    assert_eq!(vars.get("FAILURE_RATE").map(String::as_str), Some("1"));
    assert_eq!(vars.get("GREETING").map(String::as_str), Some("hello"));
}

/// A host killed with SIGKILL right after it launched the twin (its
/// `AssociateAddress` held unanswered by the test's proxy), then restarted:
/// the restarted host takes the incident up when the dead one's lease
/// expires, finds the twin by its tags and finishes: exactly one twin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_after_the_launch_and_restarted_completes_with_exactly_one_twin() {
    let Some(moto) = crate::moto::start(
        "a_host_killed_after_the_launch_and_restarted_completes_with_exactly_one_twin",
    ) else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let c = ec2::Client::new(&shared);
    let sqs = aws_sdk_sqs::Client::new(&shared);
    let o = original(&c).await;
    let (topic, _) = inbox(&shared).await;
    let events = crate::support::queue(&sqs, "healer-events").await;
    let proxy = crate::throttle::proxy(
        moto.endpoint.clone(),
        crate::throttle::Fault {
            operation: "AssociateAddress",
            times: usize::MAX,
            status: 0,
            code: "",
            seen: std::sync::Arc::default(),
        },
    )
    .await;
    let alarm = alarm_notification(
        "AWS/EC2",
        "StatusCheckFailed",
        ("InstanceId", &o.id),
        "ALARM",
    );
    send(&sqs, &events, &alarm).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let p = policies(dir.path(), &[("ec2.wasm", artifacts::EC2_REPLACE)]);
    let context = replace_at_once(dir.path());
    let lease = [("HEALER_LEASE_SECS", "3"), ("HEALER_CONTEXT", &context)];
    let mut first = run_live_with(&proxy, &data, &p, &events, &topic, &lease);
    let deadline = Instant::now() + Duration::from_secs(60);
    while twins_of(&c, &o.id).await.is_empty() {
        assert!(Instant::now() < deadline, "no twin launched");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.kill().expect("SIGKILL");
    let _ = first.wait();
    assert_eq!(
        state(&instance(&c, &o.id).await),
        "running",
        "killed before the terminate"
    );

    let second = run_live_with(&moto.endpoint, &data, &p, &events, &topic, &lease);
    let (second, list) = wait_for(
        second,
        &moto.endpoint,
        &data,
        "the restarted host completes",
        |l| l.len() == 1 && l[0]["state"] == "healed",
    )
    .await;
    stop(second);
    let twins = twins_of(&c, &o.id).await;
    assert_eq!(twins.len(), 1, "exactly one twin: {twins:?}\n{list:#?}");
    let twin = twins[0].instance_id().expect("id");
    assert_eq!(state(&instance(&c, &o.id).await), "terminated");
    assert_eq!(eip_owner(&c, &o.allocation).await.as_deref(), Some(twin));
}

/// A twin that cannot launch (its security group is gone, so RunInstances
/// fails): the original is untouched, the incident escalates with the
/// reason, and the team is told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_seed_a_twin_that_cannot_launch_escalates_and_leaves_the_original() {
    let Some(moto) =
        crate::moto::start("ec2_seed_a_twin_that_cannot_launch_escalates_and_leaves_the_original")
    else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let c = ec2::Client::new(&shared);
    let sqs = aws_sdk_sqs::Client::new(&shared);
    let o = original(&c).await;
    c.delete_security_group()
        .group_id(&o.group)
        .send()
        .await
        .expect("delete_security_group");
    let (topic, inbox_queue) = inbox(&shared).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let p = policies(dir.path(), &[("ec2.wasm", artifacts::EC2_REPLACE)]);
    let context = replace_at_once(dir.path());
    let alarm = alarm_notification(
        "AWS/EC2",
        "StatusCheckFailed",
        ("InstanceId", &o.id),
        "ALARM",
    );
    let file = dir.path().join("alarm.json");
    std::fs::write(&file, alarm).expect("write");
    let out = healer(&moto.endpoint, &data)
        .args(["heal", "--no-cache", "--live", "--aws-facts"])
        .arg(&file)
        .env("HEALER_POLICIES", &p)
        .env("HEALER_CONTEXT", &context)
        .env("HEALER_NOTIFY_DEFAULT", &topic)
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "an escalation exits 1: {text}");
    assert!(text.contains("replace-instance: failed"), "{text}");
    assert!(text.contains("escalated"), "{text}");
    assert_eq!(state(&instance(&c, &o.id).await), "running");
    assert!(twins_of(&c, &o.id).await.is_empty());
    assert_eq!(eip_owner(&c, &o.allocation).await, Some(o.id.clone()));
    let messages = received(&sqs, &inbox_queue).await;
    assert_eq!(
        messages.len(),
        1,
        "one escalation, no replacement notice: {messages:#?}"
    );
    assert!(messages[0].contains("RunInstances"), "{}", messages[0]);
}

/// The regression guard in live mode: a pushed version that fails its first
/// decisions is rolled back on its own and the team is told on the
/// default channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_regression_guard_rolls_back_and_tells_the_team() {
    const TOKEN: &str = "guard-live-token-0123456789";
    let Some(moto) = crate::moto::start("the_regression_guard_rolls_back_and_tells_the_team")
    else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let (topic, team) = inbox(&shared).await;
    let sqs = aws_sdk_sqs::Client::new(&shared);
    let queue = crate::support::queue(&sqs, "guard-events").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    std::fs::copy(artifacts::SWAP_V1, policies.join("swap.wasm")).expect("copy");
    let listen = format!("127.0.0.1:{}", crate::support::free_port());
    let url = format!("http://{listen}");
    let mut child = run_live_with(
        &moto.endpoint,
        &dir.path().join("data"),
        &policies,
        &queue,
        &topic,
        &[
            ("HEALER_LISTEN", &listen),
            ("HEALER_ADMIN_TOKEN", TOKEN),
            ("HEALER_REGRESSION_GUARD_DECISIONS", "3"),
            ("HEALER_REGRESSION_GUARD_MARGIN", "0.5"),
        ],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while crate::support::health(&listen).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "healer run never answered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let auth = format!("Bearer {TOKEN}");
    let post = |name: String| {
        let (status, text) = crate::support::http(
            &url,
            "POST",
            "/events",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            &crate::support::alarm_event(&name, "fail-in-2"),
        );
        assert_eq!(status, 202, "{text}");
    };
    for i in 0..3 {
        post(format!("guard-live-v1-{i}"));
    }
    let pushed = Command::new(env!("CARGO_BIN_EXE_healer"))
        .args([
            "policy",
            "push",
            artifacts::SWAP_V2,
            "--server",
            &url,
            "--token",
            TOKEN,
        ])
        .output()
        .expect("runs");
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    for i in 0..3 {
        post(format!("guard-live-v2-{i}"));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = Vec::new();
    let told = loop {
        seen.extend(received(&sqs, &team).await);
        if let Some(m) = seen
            .iter()
            .find(|m| m.contains("regression-guard: swap-test@2 failed 3 of its first 3"))
        {
            break m.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the team was never told: {seen:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(told.contains("rolled back"), "{told}");
    let health = crate::support::health(&listen).expect("health");
    assert!(
        health["policies"].to_string().contains("swap-test@1"),
        "{health}"
    );
    let _ = child.kill();
    let _ = child.wait();
}
