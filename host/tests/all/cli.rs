//! The `healer policy` commands, run as a user would.

use std::path::Path;
use std::process::{Command, Output};

use healer_test_artifacts as artifacts;

fn healer(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_healer"))
        .args(args)
        .env("HEALER_CACHE_DIR", cache)
        .output()
        .expect("runs healer")
}

const INCIDENT: &str = r#"{"kind":"function-errors","source":"cloudwatch-alarm",
  "resource":{"kind":"lambda-function","id":"fragile-fn"},"reason":"Errors > 1",
  "detected-at":"2024-05-01T10:00:00Z"}"#;

#[test]
fn eval_prints_one_json_object_and_fills_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inc = dir.path().join("incident.json");
    std::fs::write(&inc, INCIDENT).expect("write");
    let cache = dir.path().join("cache");
    let args = [
        "policy",
        "eval",
        "--policy",
        artifacts::LAMBDA_FAILURE_RATE,
        "--incident",
        inc.to_str().expect("utf-8"),
        "--now",
        "2024-05-01T10:01:00Z",
    ];
    let out = healer(&args, &cache);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(stdout.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(v["policy"]["name"], "lambda-failure-rate");
    assert_eq!(v["policy"]["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(
        v["decision"]["steps"][0]["action"],
        "update-function-config"
    );
    assert!(v["fuel-used"].as_u64().is_some_and(|f| f > 0));
    assert!(v["duration-us"].as_u64().is_some());
    let cached: Vec<_> = std::fs::read_dir(&cache).expect("cache dir").collect();
    assert_eq!(cached.len(), 1, "one precompiled artifact");

    // Second run uses the cache and gives the same decision.
    let again = healer(&args, &cache);
    let v2: serde_json::Value = serde_json::from_slice(&again.stdout).expect("JSON");
    assert_eq!(v["decision"], v2["decision"]);
}

#[test]
fn eval_reads_the_incident_from_stdin() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_healer"))
        .args([
            "policy",
            "eval",
            "--no-cache",
            "--policy",
            artifacts::LAMBDA_FAILURE_RATE,
            "--incident",
            "-",
        ])
        .env("HEALER_CACHE_DIR", dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(INCIDENT.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILURE_RATE"));
}

fn assert_one_line_error(out: &Output, needle: &str) {
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("thread 'main' panicked"), "{stderr}");
    let errors: Vec<_> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains(needle),
        "expected {needle:?} in {stderr}"
    );
}

#[test]
fn eval_failures_are_one_clear_line_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let inc = dir.path().join("incident.json");
    let hostile = |reason: &str| {
        std::fs::write(
            &inc,
            format!(r#"{{"kind":"alarm","reason":"{reason}","resource":{{"kind":"alarm","id":"a"}},"detected-at":"2024-05-01T10:00:00Z"}}"#),
        )
        .expect("write");
        healer(
            &[
                "policy",
                "eval",
                "--policy",
                artifacts::HOSTILE,
                "--incident",
                inc.to_str().expect("utf-8"),
            ],
            &cache,
        )
    };
    assert_one_line_error(&hostile("panic"), "policy trapped");
    assert_one_line_error(&hostile("loop"), "ran out of fuel");
    assert_one_line_error(&hostile("alloc"), "memory limit");
    assert_one_line_error(&hostile("huge"), "sandbox limit `max-output-bytes`");
    assert_one_line_error(&hostile("sleep"), "deadline of 100 ms");
    let trap = hostile("panic");
    let v: serde_json::Value =
        serde_json::from_slice(&trap.stdout).expect("outcome JSON still printed");
    assert_eq!(v["error"]["kind"], "trap");

    let inc_path = inc.to_str().expect("utf-8");
    let other = healer(
        &[
            "policy",
            "eval",
            "--policy",
            artifacts::OTHER_WORLD,
            "--incident",
            inc_path,
        ],
        &cache,
    );
    assert_one_line_error(&other, "does not implement healer:policy/healing-policy");
    let not_wasm = healer(
        &[
            "policy",
            "eval",
            "--policy",
            inc_path,
            "--incident",
            inc_path,
        ],
        &cache,
    );
    assert_one_line_error(&not_wasm, "not a valid policy component");
    let missing = healer(
        &[
            "policy",
            "eval",
            "--policy",
            "/nonexistent.wasm",
            "--incident",
            inc_path,
        ],
        &cache,
    );
    assert_one_line_error(&missing, "cannot read /nonexistent.wasm");
    std::fs::write(&inc, "{not json").expect("write");
    let bad_incident = healer(
        &[
            "policy",
            "eval",
            "--policy",
            artifacts::HOSTILE,
            "--incident",
            inc_path,
        ],
        &cache,
    );
    assert_one_line_error(&bad_incident, "invalid incident JSON");
    // The cause is said once, not once by the message and again as its source.
    let stderr = String::from_utf8_lossy(&bad_incident.stderr);
    assert_eq!(
        stderr.matches("key must be a string").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn list_shows_every_policy_in_a_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    for p in [
        artifacts::ECS_TASK_RESTART,
        artifacts::EC2_REPLACE,
        artifacts::LAMBDA_FAILURE_RATE,
    ] {
        let name = Path::new(p).file_name().expect("file name");
        std::fs::copy(p, dir.path().join(name)).expect("copy");
    }
    let out = healer(
        &["policy", "list", dir.path().to_str().expect("utf-8")],
        &dir.path().join("cache"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).expect("utf-8");
    for name in ["ecs-task-restart", "ec2-replace", "lambda-failure-rate"] {
        assert!(table.contains(name), "{table}");
    }
    let json = healer(
        &[
            "policy",
            "list",
            "--json",
            dir.path().to_str().expect("utf-8"),
        ],
        &dir.path().join("cache"),
    );
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(v["policies"].as_array().map(Vec::len), Some(3));
}

#[test]
fn normalize_prints_one_line_per_signal_and_continues_past_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"Records\": [").expect("write");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/aws-events");
    let crashed = fixtures.join("ecs/task-stopped-essential-container-exited-fargate.json");
    let healthy = fixtures.join("elbv2/describe-target-health-all-healthy.json");
    let out = Command::new(env!("CARGO_BIN_EXE_healer"))
        .args(["normalize", "--received-at", "2024-06-01T12:00:00Z"])
        .arg(&crashed)
        .arg(&bad)
        .arg(&healthy)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1), "an input errored");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert_eq!(lines[0]["incident"]["kind"], "task-crashed");
    assert_eq!(lines[1]["error"]["input"], bad.display().to_string());
    assert!(
        lines[1]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not JSON"))
    );
    assert_eq!(lines[2]["recovery"]["resource"]["id"], "i-ceddcd4d");
    assert_eq!(lines[3]["recovery"]["resource"]["id"], "i-0f76fade");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{stderr}"
    );

    // All good → exit 0; stdin works.
    let ok = Command::new(env!("CARGO_BIN_EXE_healer"))
        .args(["normalize", "-"])
        .stdin(std::fs::File::open(&crashed).expect("open"))
        .output()
        .expect("runs");
    assert!(ok.status.success());
}

#[test]
fn decide_turns_raw_events_into_plans_and_records_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    std::fs::copy(artifacts::ECS_TASK_RESTART, policies.join("ecs.wasm")).expect("copy");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/aws-events");
    let data = dir.path().join("data");
    let decide = || {
        Command::new(env!("CARGO_BIN_EXE_healer"))
            .args(["decide", "--no-cache", "--policies"])
            .arg(&policies)
            .arg(fixtures.join("ecs/deployment-failed-circuit-breaker.json"))
            .arg(fixtures.join("sns/lambda-record-eventbridge-ecs-task-stopped.json"))
            .arg(fixtures.join("ecs/deployment-completed.json"))
            .env("HEALER_DATA_DIR", &data)
            .env("HEALER_STORE", "sqlite")
            .output()
            .expect("runs")
    };
    let out = decide();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["signal"]["incident"]["kind"], "deployment-failed");
    assert_eq!(
        lines[0]["plan"]["decisions"]["active"][0]["decision"]["steps"][0]["action"],
        "rollback-deployment"
    );
    // Governor: the service rollback is approved (dry run).
    assert_eq!(
        lines[0]["plan"]["judgement"]["verdicts"][0]["verdict"],
        "approved"
    );
    assert_eq!(lines[0]["plan"]["judgement"]["dry-run"], true);
    assert_eq!(lines[0]["recorded"]["new"]["state"], "decided");
    assert_eq!(lines[0]["dry-run"], true);
    assert_eq!(
        lines[1]["recorded"]["new"]["provenance"]["policy"]["name"],
        "ecs-task-restart"
    );
    // A stopped task of a service: ECS replaces it, so the plan has no step,
    // only a verify spec (polled in live mode).
    assert_eq!(
        lines[1]["plan"]["decisions"]["active"][0]["decision"]["steps"],
        serde_json::json!([])
    );
    assert_eq!(
        lines[1]["plan"]["decisions"]["active"][0]["decision"]["verify"]["method"],
        "poll"
    );
    assert_eq!(lines[1]["recorded"]["new"]["state"], "decided");
    // SERVICE_DEPLOYMENT_COMPLETED (same sample time as the failure) heals it.
    let healed = &lines[2]["recorded"]["healed"];
    assert_eq!(healed.as_array().map(Vec::len), Some(1), "{healed}");
    assert_eq!(healed[0]["state"], "healed");
    assert_eq!(healed[0]["verdicts"][0]["verdict"], "approved");
    assert!(healed[0]["mttr-ms"].as_i64().is_some());

    // A later event about the same task (a higher version) is the same incident.
    let mut later: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixtures.join("ecs/task-stopped-essential-container-exited-fargate.json"))
            .expect("read"),
    )
    .expect("JSON");
    later["detail"]["version"] = serde_json::json!(9);
    let later_path = dir.path().join("later.json");
    std::fs::write(&later_path, later.to_string()).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_healer"))
        .args(["decide", "--no-cache", "--policies"])
        .arg(&policies)
        .arg(&later_path)
        .env("HEALER_DATA_DIR", &data)
        .output()
        .expect("runs");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(v["recorded"]["duplicate"].is_object(), "{v}");

    // Redelivery: the same events again are duplicates, not decided twice.
    let again = decide();
    let lines: Vec<serde_json::Value> = String::from_utf8(again.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert!(lines[0]["recorded"]["duplicate"].is_object());
    assert!(lines[0]["plan"].is_null());
    let list = Command::new(env!("CARGO_BIN_EXE_healer"))
        .args(["incidents", "list", "--json"])
        .env("HEALER_DATA_DIR", &data)
        .output()
        .expect("runs");
    assert_eq!(String::from_utf8_lossy(&list.stdout).lines().count(), 2);
}

/// Fills a store with two incidents (one healed after 90 s, one open) through
/// the library, for the CLI to read.
async fn seed(store: &dyn healer::store::Store) -> String {
    use healer::store::LifecycleState;
    let healed = healer::Incident::from_json(INCIDENT.as_bytes()).expect("incident");
    let open = healer::Incident::from_json(
        br#"{"kind":"task-crashed","resource":{"kind":"ecs-task","id":"arn:aws:ecs:r:1:task/c/t"},"detected-at":"2024-05-01T11:00:00Z"}"#,
    )
    .expect("incident");
    store.init().await.expect("init");
    store.create_incident(&healed).await.expect("create");
    store.create_incident(&open).await.expect("create");
    let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().expect("time");
    store
        .transition(
            &healed.id,
            LifecycleState::Healed,
            at("2024-05-01T10:01:30Z"),
            None,
        )
        .await
        .expect("healed");
    healed.id.to_string()
}

fn incidents_cli(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_healer"))
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("runs healer")
}

fn check_incident_commands(envs: &[(&str, &str)], healed_id: &str) {
    let init = incidents_cli(&["store", "init"], envs);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let list = incidents_cli(&["incidents", "list"], envs);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let table = String::from_utf8_lossy(&list.stdout);
    assert_eq!(table.lines().count(), 3, "header + 2 rows: {table}");
    assert!(table.contains("90.0s"), "{table}");
    let open = incidents_cli(&["incidents", "list", "--open", "--json"], envs);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&open.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["state"], "detected");
    let kind = incidents_cli(
        &["incidents", "list", "--kind", "function-errors", "--json"],
        envs,
    );
    assert_eq!(String::from_utf8_lossy(&kind.stdout).lines().count(), 1);
    let bad_kind = incidents_cli(&["incidents", "list", "--kind", "nope"], envs);
    assert!(!bad_kind.status.success());
    let show = incidents_cli(&["incidents", "show", healed_id], envs);
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).expect("JSON");
    assert_eq!(v["mttr-ms"], 90_000);
    let missing = incidents_cli(&["incidents", "show", "inc-nope"], envs);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
    let stats = incidents_cli(&["incidents", "stats", "--json"], envs);
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("JSON");
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .any(|r| r["key"] == "function-errors" && r["mttr-p50-ms"] == 90_000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_commands_read_the_sqlite_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = healer::store::SqliteStore::open(&dir.path().join("healer.db"))
        .await
        .expect("open");
    let id = seed(&store).await;
    let data_dir = dir.path().to_str().expect("utf-8").to_owned();
    tokio::task::spawn_blocking(move || {
        let envs = [
            ("HEALER_STORE", "sqlite"),
            ("HEALER_DATA_DIR", data_dir.as_str()),
        ];
        check_incident_commands(&envs, &id);
    })
    .await
    .expect("checks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_commands_read_dynamodb_through_the_standard_aws_environment() {
    let Some(moto) = crate::moto::start("incidents_commands_read_dynamodb") else {
        return;
    };
    let client = crate::moto::dynamodb(&moto).await;
    let store =
        healer::store::DynamoStore::new(client, healer::store::DynamoTables::with_prefix("cli"));
    let id = seed(&store).await;
    let endpoint = moto.endpoint.clone();
    tokio::task::spawn_blocking(move || {
        let envs = [
            ("HEALER_STORE", "dynamodb"),
            ("HEALER_TABLE_PREFIX", "cli"),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ];
        check_incident_commands(&envs, &id);
    })
    .await
    .expect("checks");
}

#[test]
fn plan_explains_every_verdict_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    std::fs::copy(artifacts::EC2_REPLACE, policies.join("ec2.wasm")).expect("copy");
    let facts = dir.path().join("facts.json");
    std::fs::write(&facts, r#"{"i-abcd1111": {"tags": {"SelfHeal": "true"}}}"#).expect("write");
    let data = dir.path().join("data");
    let event = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/aws-events/health/ec2-instance-store-drive-degraded-issue.json");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_healer"))
            .args(["plan", "--no-cache", "--policies"])
            .arg(&policies)
            .args(extra)
            .arg(&event)
            .env("HEALER_DATA_DIR", &data)
            .output()
            .expect("runs")
    };
    let out = run(&["--facts", facts.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let verdicts = &v["plan"]["judgement"]["verdicts"];
    assert_eq!(verdicts[0]["action"], "replace-instance");
    assert_eq!(verdicts[0]["verdict"], "approved");
    assert_eq!(verdicts[1]["action"], "notify");
    assert!(v["recorded"].is_null(), "plan writes nothing");

    // The store's kill switch reaches the plan.
    let ks = Command::new(env!("CARGO_BIN_EXE_healer"))
        .args(["store", "kill-switch", "on"])
        .env("HEALER_DATA_DIR", &data)
        .output()
        .expect("runs");
    assert!(
        ks.status.success(),
        "{}",
        String::from_utf8_lossy(&ks.stderr)
    );
    let out = run(&["--facts", facts.to_str().expect("utf-8"), "--text"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("replace-instance denied by kill-switch"),
        "{text}"
    );

    // Without facts the opt-in tag is unknown: the policy itself only notifies.
    let out = run(&["--text"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[notify]"), "{text}");
    let list = Command::new(env!("CARGO_BIN_EXE_healer"))
        .args(["incidents", "list", "--json"])
        .env("HEALER_DATA_DIR", &data)
        .output()
        .expect("runs");
    assert_eq!(String::from_utf8_lossy(&list.stdout).lines().count(), 0);
}

/// Issue 11: the hostile set through `healer decide` (a tokio runtime is
/// current there): each signal gets its named error, nothing panics the host
/// or holds it past the deadline, and the last, calm incident is decided.
#[test]
fn decide_survives_the_hostile_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    std::fs::copy(artifacts::HOSTILE, policies.join("hostile.wasm")).expect("copy");
    let reasons = [
        "panic",
        "sleep",
        "poll",
        "handles",
        "stderr-flood",
        "alias",
        "calm",
    ];
    let mut inputs = Vec::new();
    for (i, reason) in reasons.iter().enumerate() {
        let path = dir.path().join(format!("{i}-{reason}.json"));
        std::fs::write(
            &path,
            format!(
                r#"{{"kind":"alarm","source":"test","reason":"{reason}",
                    "resource":{{"kind":"alarm","id":"arn:aws:cloudwatch:us-east-1:1:alarm:{reason}"}},
                    "detected-at":"2024-05-01T10:00:00Z"}}"#
            ),
        )
        .expect("write");
        inputs.push(path);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_healer"))
        .args(["decide", "--no-cache", "--no-record", "--policies"])
        .arg(&policies)
        .args(&inputs)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(lines.len(), reasons.len(), "{stderr}");
    let kind = |i: usize| lines[i]["plan"]["decisions"]["active"][0]["error"]["kind"].clone();
    assert_eq!(kind(0), "trap");
    assert_eq!(kind(1), "timeout");
    assert_eq!(kind(2), "timeout");
    assert_eq!(kind(3), "sandbox-limit");
    assert_eq!(kind(4), "sandbox-limit");
    assert_eq!(kind(5), "sandbox-limit");
    assert_eq!(
        lines[6]["plan"]["decisions"]["active"][0]["decision"]["summary"],
        "fine: calm"
    );
}

/// `healer plan` of one incident JSON with operator facts, a policy and,
/// optionally, a context and a proposed decision (`--propose`); returns the
/// JSON line and the `--text` line.
fn plan_one(
    policy: &str,
    incident: &str,
    facts: &str,
    context: Option<&str>,
    propose: Option<&str>,
) -> (serde_json::Value, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    std::fs::copy(policy, policies.join("policy.wasm")).expect("copy");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let mut args = vec![
        "plan".into(),
        "--no-cache".into(),
        "--policies".into(),
        policies.into_os_string(),
        "--facts".into(),
        write("facts.json", facts).into_os_string(),
    ];
    if let Some(c) = context {
        args.extend([
            "--context".into(),
            write("context.json", c).into_os_string(),
        ]);
    }
    if let Some(d) = propose {
        args.extend([
            "--propose".into(),
            write("propose.json", d).into_os_string(),
        ]);
    }
    args.push(write("incident.json", incident).into_os_string());
    let run = |text: bool| {
        let out = Command::new(env!("CARGO_BIN_EXE_healer"))
            .args(&args)
            .args(text.then_some("--text"))
            .env("HEALER_DATA_DIR", dir.path().join("data"))
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let json = serde_json::from_str(&run(false)).expect("JSON");
    (json, run(true))
}

/// The first step's verdict is a denial by `rule` whose reason names `needle`,
/// and the text line says so.
fn assert_denied(plan: &(serde_json::Value, String), action: &str, rule: &str, needle: &str) {
    let (v, text) = plan;
    let verdict = &v["plan"]["judgement"]["verdicts"][0];
    assert_eq!(verdict["action"], action, "{v}");
    assert_eq!(verdict["verdict"], "denied", "{v}");
    assert_eq!(verdict["rule"], rule, "{v}");
    let reason = verdict["reason"].as_str().expect("a reason");
    assert!(reason.contains(needle), "{needle:?} in {reason:?}");
    assert!(
        text.contains(&format!("{action} denied by {rule} (")),
        "{text}"
    );
}

const INSTANCE_IN_ASG: &str = r#"{"kind":"instance-impaired","source":"cloudwatch-alarm",
  "resource":{"kind":"ec2-instance","id":"i-1","region":"eu-west-1"},
  "group":{"kind":"autoscaling-group","id":"web"},
  "reason":"StatusCheckFailed","detected-at":"2024-05-01T10:00:00Z"}"#;

const TASK_IN_PROD_API: &str = r#"{"kind":"task-crashed","source":"aws.ecs",
  "resource":{"kind":"ecs-task","id":"arn:aws:ecs:eu-west-1:111111111111:task/prod/0123456789abcdef0123456789abcdef"},
  "group":{"kind":"ecs-service","id":"arn:aws:ecs:eu-west-1:111111111111:service/prod/api"},
  "reason":"Essential container in task exited","detected-at":"2024-05-01T10:00:00Z"}"#;

const PROD_API_FACTS: &str = r#"{"arn:aws:ecs:eu-west-1:111111111111:service/prod/api": {
  "group-size": 4, "tags": {},
  "service": {"task-definition": "arn:aws:ecs:eu-west-1:111111111111:task-definition/api:7", "desired-count": 4}}}"#;

/// Issue 11, item 4.
#[test]
fn plan_denies_confused_deputy_replace_of_an_untagged_sibling() {
    let facts = r#"{"i-1": {"tags": {"SelfHeal": "true"}},
      "i-2": {"tags": {}},
      "web": {"group-size": 6, "group-members": ["i-1", "i-2"], "tags": {"SelfHeal": "true"}}}"#;
    let propose = r#"{"summary": "replace the neighbour",
      "steps": [{"action": "replace-instance", "instance_id": "i-2", "move_elastic_ip": true, "reason": "confused"}]}"#;
    let plan = plan_one(
        artifacts::EC2_REPLACE,
        INSTANCE_IN_ASG,
        facts,
        None,
        Some(propose),
    );
    assert_denied(
        &plan,
        "replace-instance",
        "opt-in",
        "instance i-2 is not tagged SelfHeal=true",
    );
    assert_eq!(
        plan.0["plan"]["facts"]["i-2"]["tags"],
        serde_json::json!({})
    );
}

/// Issue 11, item 5.
#[test]
fn plan_denies_a_redeploy_of_the_same_name_in_a_foreign_cluster() {
    let propose = r#"{"summary": "redeploy",
      "steps": [{"action": "force-new-deployment", "cluster": "staging", "service": "api", "reason": "wrong cluster"}]}"#;
    let plan = plan_one(
        artifacts::ECS_TASK_RESTART,
        TASK_IN_PROD_API,
        PROD_API_FACTS,
        None,
        Some(propose),
    );
    assert_denied(&plan, "force-new-deployment", "target-guard", "staging/api");
}

/// Issue 11, item 6.
#[test]
fn plan_denies_a_rollback_to_an_arbitrary_task_definition() {
    let failed = r#"{"kind":"deployment-failed","source":"aws.ecs",
      "resource":{"kind":"ecs-service","id":"arn:aws:ecs:eu-west-1:111111111111:service/prod/api"},
      "reason":"circuit breaker","detected-at":"2024-05-01T10:00:00Z"}"#;
    let propose = r#"{"summary": "roll back",
      "steps": [{"action": "rollback-deployment", "cluster": "prod", "service": "api",
                 "task_definition": "arn:aws:ecs:eu-west-1:111111111111:task-definition/miner:1", "reason": "x"}]}"#;
    let plan = plan_one(
        artifacts::ECS_TASK_RESTART,
        failed,
        PROD_API_FACTS,
        None,
        Some(propose),
    );
    assert_denied(
        &plan,
        "rollback-deployment",
        "parameters",
        "not in the service's own task-definition family api",
    );
    // The policy's own rollback (to the previous revision) is approved.
    let (own, _) = plan_one(
        artifacts::ECS_TASK_RESTART,
        failed,
        PROD_API_FACTS,
        None,
        None,
    );
    assert_eq!(
        own["plan"]["judgement"]["verdicts"][0]["verdict"], "approved",
        "{own}"
    );
}

/// Issue 11, item 6: the real lambda-failure-rate policy, configured to set
/// another variable, proposes it; the governor denies it.
#[test]
fn plan_denies_env_exfiltration_through_the_function_config() {
    let function = r#"{"kind":"function-errors","source":"cloudwatch-alarm",
      "resource":{"kind":"lambda-function","id":"fragile-fn","region":"eu-west-1"},
      "reason":"Errors > 1","detected-at":"2024-05-01T10:00:00Z"}"#;
    let context =
        r#"{"config": {"variable": "AWS_LAMBDA_EXEC_WRAPPER", "value": "/tmp/exfiltrate"}}"#;
    let plan = plan_one(
        artifacts::LAMBDA_FAILURE_RATE,
        function,
        r#"{"fragile-fn": {"tags": {}}}"#,
        Some(context),
        None,
    );
    assert_denied(
        &plan,
        "update-function-config",
        "parameters",
        "AWS_LAMBDA_EXEC_WRAPPER",
    );
    // The default variable is on the allow-list.
    let (ok, _) = plan_one(
        artifacts::LAMBDA_FAILURE_RATE,
        function,
        r#"{"fragile-fn": {"tags": {}}}"#,
        None,
        None,
    );
    assert_eq!(
        ok["plan"]["judgement"]["verdicts"][0]["verdict"], "approved",
        "{ok}"
    );
}

/// Issue 11, item 6.
#[test]
fn plan_denies_scaling_a_service_to_zero() {
    let propose = r#"{"summary": "scale down",
      "steps": [{"action": "scale-service", "cluster": "prod", "service": "api", "desired_count": 0, "reason": "x"}]}"#;
    let plan = plan_one(
        artifacts::ECS_TASK_RESTART,
        TASK_IN_PROD_API,
        PROD_API_FACTS,
        None,
        Some(propose),
    );
    assert_denied(
        &plan,
        "scale-service",
        "parameters",
        "desired count 0 is outside 1..=8",
    );
}

/// Issue 11: `HEALER_POLICY_PRIORITY` orders the policies that handle one
/// kind; every outcome is printed, the first plan with steps acts.
#[test]
fn policy_priority_orders_routing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    std::fs::copy(artifacts::HOSTILE, policies.join("a-hostile.wasm")).expect("copy");
    std::fs::copy(artifacts::SWAP_V1, policies.join("b-swap.wasm")).expect("copy");
    let inc = dir.path().join("calm.json");
    std::fs::write(
        &inc,
        r#"{"kind":"alarm","source":"test","reason":"calm",
            "resource":{"kind":"alarm","id":"arn:aws:cloudwatch:us-east-1:1:alarm:calm"},
            "detected-at":"2024-05-01T10:00:00Z"}"#,
    )
    .expect("write");
    let run = |priority: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_healer"));
        cmd.args(["decide", "--no-cache", "--no-record", "--policies"])
            .arg(&policies)
            .arg(&inc);
        if let Some(p) = priority {
            cmd.env("HEALER_POLICY_PRIORITY", p);
        }
        let out = cmd.output().expect("runs");
        let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
        line["plan"]["decisions"]["active"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|o| o["policy"]["name"].as_str().unwrap_or("").to_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    assert_eq!(run(None), ["hostile", "swap-test"]);
    assert_eq!(run(Some("swap-test, hostile")), ["swap-test", "hostile"]);
}
