//! `healer run` against moto: it long-polls a real SQS queue through the SDK,
//! records what the messages carry, deletes only what it recorded, leaves an
//! unreadable message for the dead-letter queue, serves `/health` (read here
//! through `healer health`, the container's probe), and stops cleanly on SIGTERM.
//! Also: one payload's signals are capped, and the service listens on loopback
//! unless told otherwise.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use healer::pipeline::Pipeline;
use healer::policy::{PolicyContext, PolicyRegistry, PolicyRole};
use healer::safety::{Governor, GovernorConfig, StaticFacts};
use healer::signals::NormalizeOptions;
use healer::sources::{Handled, handle};
use healer::store::{ListFilter, SqliteStore, Store as _};
use healer_test_artifacts as artifacts;

use crate::support::health;

fn fixture(rel: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/aws-events")
            .join(rel),
    )
    .expect("fixture")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_consumes_sqs_records_and_stops_on_sigterm() {
    let Some(moto) = crate::moto::start("run_consumes_sqs_records_and_stops_on_sigterm") else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let sqs = aws_sdk_sqs::Client::new(&shared);
    let queue = crate::support::queue(&sqs, "healer-events").await;
    for body in [
        fixture("ecs/task-stopped-essential-container-exited-fargate.json"),
        fixture("ecs/task-running-fargate.json"),
        "{not json".to_owned(),
    ] {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(body)
            .send()
            .await
            .expect("send_message");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    std::fs::copy(artifacts::ECS_TASK_RESTART, policies.join("ecs.wasm")).expect("copy");
    let data = dir.path().join("data");
    let port = crate::support::free_port();
    let mut child = crate::support::spawn_run(
        &policies,
        &queue,
        &format!("127.0.0.1:{port}"),
        &data,
        &moto.endpoint,
    );

    // Two messages recorded and acked, the unreadable one left on the queue.
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        // A wildcard listen address is probed on loopback.
        if let Some(v) = health(&format!("0.0.0.0:{port}"))
            && v["processed"] == 2
            && v["rejected"].as_u64() >= Some(1)
        {
            break v;
        }
        if Instant::now() > deadline || child.try_wait().expect("wait").is_some() {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "healer run did not process the queue: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(report["status"], "ok");
    assert!(report["last-poll"].is_string(), "{report}");
    assert_eq!(report["dry-run"], true);
    assert_eq!(report["policies"][0], "ecs-task-restart@1.2.0", "{report}");
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("attributes");
    let count = |name: QueueAttributeName| {
        attrs
            .attributes()
            .and_then(|a| a.get(&name))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        "1",
        "only the unreadable message is still on the queue"
    );

    // SIGTERM: a clean exit.
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "healer run ignored SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "exit status {status:?}");
    assert!(
        health(&format!("127.0.0.1:{port}")).is_none(),
        "nothing listens after the stop"
    );

    // The stopped task is recorded as an incident, decided in dry run.
    let list = Command::new(env!("CARGO_BIN_EXE_healer"))
        .args(["incidents", "list", "--json"])
        .env("HEALER_DATA_DIR", &data)
        .output()
        .expect("runs");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["incident"]["resource"]["kind"], "ecs-task");
}

#[test]
fn run_refuses_live_mode_without_live_or_a_default_channel_and_an_empty_policy_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let governor = dir.path().join("governor.json");
    std::fs::write(&governor, r#"{"dry-run": false}"#).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_healer"))
        .args(["run", "--listen", "127.0.0.1:0", "--policies"])
        .arg(dir.path())
        .env("HEALER_GOVERNOR", &governor)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("live mode"));
    let out = Command::new(env!("CARGO_BIN_EXE_healer"))
        .args(["run", "--listen", "127.0.0.1:0", "--policies"])
        .arg(dir.path())
        .env("HEALER_GOVERNOR_JSON", r#"{"dry-run": false}"#)
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&out.stderr).contains("live mode"));
    let out = Command::new(env!("CARGO_BIN_EXE_healer"))
        .args(["run", "--listen", "127.0.0.1:0", "--policies"])
        .arg(dir.path())
        .env("HEALER_GOVERNOR_JSON", r#"{"no-such-limit": 1}"#)
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid HEALER_GOVERNOR_JSON"));
    // --live without a default notification channel: an escalation must reach someone.
    std::fs::copy(artifacts::ECS_TASK_RESTART, dir.path().join("ecs.wasm")).expect("copy");
    let out = Command::new(env!("CARGO_BIN_EXE_healer"))
        .args([
            "run",
            "--no-cache",
            "--live",
            "--listen",
            "127.0.0.1:0",
            "--policies",
        ])
        .arg(dir.path())
        .env("HEALER_GOVERNOR", &governor)
        .env("AWS_REGION", "us-east-1")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--notify-default"), "{err}");
    std::fs::remove_file(dir.path().join("ecs.wasm")).expect("rm");
    std::fs::remove_file(&governor).expect("rm");
    let out = Command::new(env!("CARGO_BIN_EXE_healer"))
        .args(["run", "--listen", "127.0.0.1:0", "--policies"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no policy loaded"));
}

/// Issue 11, item 13: one payload became as many incidents as it held, and the
/// log line listed every ignore reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_over_the_signal_cap_records_the_cap_and_reports_the_rest_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("healer.db"))
        .await
        .expect("open");
    let registry = PolicyRegistry::new(crate::support::engine());
    registry
        .swap(
            &artifacts::bytes(artifacts::ECS_TASK_RESTART),
            PolicyRole::Active,
        )
        .expect("policy");
    let governor = Governor::new(GovernorConfig::default());
    let facts = StaticFacts(BTreeMap::new());
    let pipeline = Pipeline {
        store: &store,
        registry: &registry,
        governor: &governor,
        facts: &facts,
    };
    // Five ignored records (four distinct reasons), then twenty crashed tasks.
    let event = fixture("ecs/task-stopped-essential-container-exited-fargate.json");
    let mut bodies: Vec<String> = [
        "plain",
        "plain again",
        r#"{"foo":1}"#,
        r#"{"bar":1}"#,
        r#"{"baz":1}"#,
    ]
    .map(str::to_owned)
    .to_vec();
    bodies.extend(
        (0..20).map(|i| event.replace("a6eaf0150a4248dAA1bcbd688121014e", &format!("{i:032x}"))),
    );
    let records: Vec<_> = bodies
        .iter()
        .map(|b| serde_json::json!({"eventSource": "aws:sqs", "body": b}))
        .collect();
    let payload = serde_json::to_vec(&serde_json::json!({ "Records": records })).expect("json");
    let mut opts = NormalizeOptions::new(crate::support::now());
    opts.max_signals = 10;

    let expected = |incidents| Handled::Done {
        incidents,
        healed: 0,
        ignored: 5,
        reasons: vec![
            "non-JSON message".to_owned(),
            "unrecognized shape: keys foo".to_owned(),
            "unrecognized shape: keys bar".to_owned(),
        ],
        truncated: 15,
        acting: Vec::new(),
    };
    let context = PolicyContext::default();
    assert_eq!(
        handle(&pipeline, &payload, &context, &opts).await,
        expected(5)
    );
    let page = store
        .list(&ListFilter::default(), None, 100)
        .await
        .expect("list");
    assert_eq!(page.items.len(), 5, "only the kept signals are recorded");
    // A redelivery is cut at the same place: nothing new, the same report.
    assert_eq!(
        handle(&pipeline, &payload, &context, &opts).await,
        expected(0)
    );
}

/// Issue 11, item 15: `healer run` listened on every interface unless told
/// otherwise; now only a container (which sets HEALER_LISTEN) does.
#[test]
fn run_listens_on_loopback_by_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    std::fs::copy(artifacts::ECS_TASK_RESTART, policies.join("ecs.wasm")).expect("copy");
    let child = Command::new(env!("CARGO_BIN_EXE_healer"))
        .args(["run", "--no-cache", "--policies"])
        .arg(&policies)
        .env_remove("HEALER_LISTEN")
        .env_remove("HEALER_SQS_QUEUE_URL")
        .env("HEALER_DATA_DIR", dir.path().join("data"))
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("healer run starts");
    let line = crate::support::first_stderr_line(
        child,
        |line| line.contains("listening on") || line.contains("cannot listen on"),
        Duration::from_secs(60),
    );
    // Bound, or refused because the port is taken: either way, loopback.
    let line = line.expect("healer run says where it listens");
    assert!(line.contains("127.0.0.1:8080"), "{line}");
}
