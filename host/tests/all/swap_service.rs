//! Hot swap across real `healer run` processes: two replicas on one SQLite
//! file converge on a version pushed to one of them with `healer policy push
//! --server`; a broken push leaves the old version serving; a restarted
//! replica comes back with the pushed version, not its directory's; a file
//! dropped into the policy directory is swapped in.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use healer_test_artifacts as artifacts;

use crate::support::free_port;

const TOKEN: &str = "swap-service-token-0123456789";

struct Replica {
    child: Child,
    url: String,
    listen: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A replica; pushed components live in the store (the default), so the
/// replicas share nothing but the SQLite file.
fn start(policies: &Path, data: &Path) -> Replica {
    start_on(policies, data, None)
}

/// A replica on SQLite in `data`, or on the DynamoDB tables of the AWS at
/// `dynamodb` (moto).
fn start_on(policies: &Path, data: &Path, dynamodb: Option<&str>) -> Replica {
    start_with(policies, data, dynamodb, &[])
}

/// The same, with more environment.
fn start_with(
    policies: &Path,
    data: &Path,
    dynamodb: Option<&str>,
    env: &[(&str, &str)],
) -> Replica {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_healer"));
    cmd.envs(env.iter().copied());
    if let Some(endpoint) = dynamodb {
        cmd.env("HEALER_STORE", "dynamodb")
            .env("HEALER_TABLE_PREFIX", "swaps")
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing");
    } else {
        cmd.env_remove("HEALER_STORE");
    }
    let child = cmd
        .args(["run", "--no-cache", "--policies"])
        .arg(policies)
        .env_remove("HEALER_SQS_QUEUE_URL")
        .env("HEALER_LISTEN", &listen)
        .env("HEALER_DATA_DIR", data)
        .env_remove("HEALER_POLICY_BLOBS")
        .env("HEALER_ADMIN_TOKEN", TOKEN)
        .env("HEALER_FOLLOW_INTERVAL_MS", "200")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("healer run starts");
    let r = Replica {
        child,
        url: format!("http://{listen}"),
        listen,
    };
    wait_for(&r, |_| true, "answers /health");
    r
}

fn healer(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_healer"))
        .args(args)
        .env("HEALER_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("runs")
}

/// The versions of `swap-test` active on a replica, from its `/health`.
fn active(r: &Replica) -> Vec<String> {
    crate::support::health(&r.listen)
        .and_then(|h| {
            h["policies"].as_array().map(|ps| {
                ps.iter()
                    .filter_map(|p| p.as_str())
                    .filter(|p| p.starts_with("swap-test@"))
                    .map(str::to_owned)
                    .collect()
            })
        })
        .unwrap_or_default()
}

fn wait_for(r: &Replica, ok: impl Fn(&[String]) -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if crate::support::health(&r.listen).is_some() && ok(&active(r)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never {what}: {:?}",
            r.url,
            active(r)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn replicas_converge_on_a_push_and_a_restart_keeps_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (pa, pb) = (dir.path().join("a"), dir.path().join("b"));
    for p in [&pa, &pb] {
        std::fs::create_dir(p).expect("mkdir");
        std::fs::copy(artifacts::SWAP_V1, p.join("swap.wasm")).expect("copy");
    }
    let a = start(&pa, &data);
    let b = start(&pb, &data);
    assert_eq!(active(&a), ["swap-test@1"]);
    assert_eq!(active(&b), ["swap-test@1"]);

    // Push v2 to a; b follows.
    let out = healer(&["policy", "push", artifacts::SWAP_V2, "--server", &a.url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("active swap-test@2") && said.contains("swap "),
        "{said}"
    );
    assert_eq!(active(&a), ["swap-test@2"]);
    wait_for(&b, |v| v == ["swap-test@2"], "followed the push");

    // A broken push is refused with the reason; v2 keeps serving.
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not a component").expect("write");
    let out = healer(&[
        "policy",
        "push",
        junk.to_str().expect("utf-8"),
        "--server",
        &b.url,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("422") && err.contains("invalid-policy"),
        "{err}"
    );
    // And a wrong token is refused before anything is read.
    let out = Command::new(env!("CARGO_BIN_EXE_healer"))
        .args([
            "policy",
            "list",
            "--server",
            &a.url,
            "--token",
            "wrong-token-0123456789",
        ])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    let out = healer(&["policy", "list", "--server", &b.url]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("swap-test ") && l.contains(" active ")),
        "{listed}"
    );

    // b restarts with v1 still in its directory: it comes back with v2.
    drop(b);
    let b = start(&pb, &data);
    wait_for(&b, |v| v == ["swap-test@2"], "kept the pushed version");

    // Rollback through b reaches a.
    let out = healer(&["policy", "rollback", "swap-test", "--server", &b.url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(&a, |v| v == ["swap-test@1"], "followed the rollback");

    // A file dropped into a's directory is swapped in everywhere.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::copy(artifacts::SWAP_V2, pa.join("swap.wasm")).expect("copy");
    wait_for(&a, |v| v == ["swap-test@2"], "swapped the changed file in");
    wait_for(&b, |v| v == ["swap-test@2"], "followed the file swap");
}

#[test]
fn replicas_on_dynamodb_converge_on_a_push() {
    let Some(moto) = crate::moto::start("replicas_on_dynamodb_converge_on_a_push") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let init = Command::new(env!("CARGO_BIN_EXE_healer"))
        .args([
            "store",
            "init",
            "--store",
            "dynamodb",
            "--table-prefix",
            "swaps",
        ])
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .expect("runs");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let (pa, pb) = (dir.path().join("a"), dir.path().join("b"));
    for p in [&pa, &pb] {
        std::fs::create_dir(p).expect("mkdir");
        std::fs::copy(artifacts::SWAP_V1, p.join("swap.wasm")).expect("copy");
    }
    let a = start_on(&pa, &dir.path().join("da"), Some(&moto.endpoint));
    let b = start_on(&pb, &dir.path().join("db"), Some(&moto.endpoint));
    assert_eq!(active(&a), ["swap-test@1"]);
    // Pushed to a; b, which shares only the DynamoDB tables, loads it from them.
    let out = healer(&["policy", "push", artifacts::SWAP_V2, "--server", &a.url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        &b,
        |v| v == ["swap-test@2"],
        "followed the push through DynamoDB",
    );
    drop(b);
    let b = start_on(&pb, &dir.path().join("db"), Some(&moto.endpoint));
    wait_for(&b, |v| v == ["swap-test@2"], "kept the pushed version");
}

/// The regression guard: a pushed version that fails its first decisions
/// is rolled back on its own, with the reason recorded and counted.
#[test]
fn the_regression_guard_rolls_back_a_version_that_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (policies, data) = (dir.path().join("p"), dir.path().join("data"));
    std::fs::create_dir(&policies).expect("mkdir");
    std::fs::copy(artifacts::SWAP_V1, policies.join("swap.wasm")).expect("copy");
    let r = start_with(
        &policies,
        &data,
        None,
        &[
            ("HEALER_REGRESSION_GUARD_DECISIONS", "5"),
            ("HEALER_REGRESSION_GUARD_MARGIN", "0.5"),
        ],
    );
    let post = |name: &str, reason: &str| {
        let auth = format!("Bearer {TOKEN}");
        let (status, text) = crate::support::http(
            &r.url,
            "POST",
            "/events",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            &crate::support::alarm_event(name, reason),
        );
        assert_eq!(status, 202, "{text}");
    };
    // Version 1 decides well; version 2 fails what it is given.
    for i in 0..5 {
        post(&format!("guard-v1-{i}"), "fail-in-2");
    }
    let out = healer(&["policy", "push", artifacts::SWAP_V2, "--server", &r.url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(active(&r), ["swap-test@2"]);
    for i in 0..5 {
        post(&format!("guard-v2-{i}"), "fail-in-2");
    }
    wait_for(
        &r,
        |v| v == ["swap-test@1"],
        "rolled back the failing version",
    );
    let out = healer(&["policy", "list", "--server", &r.url, "--json"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("regression-guard: swap-test@2 failed 5 of its first 5"),
        "{listed}"
    );
    let (_, metrics) = crate::support::http(&r.url, "GET", "/metrics", &[], "");
    assert!(
        metrics.contains("healer_policy_auto_rollbacks_total{policy=\"swap-test\"} 1"),
        "{metrics}"
    );
}

/// Two replicas on one store judge the same failing version: it is rolled
/// back once. Its activation history is `[1, 2, 1, 2]`, so a second
/// rollback would put version 2 back (and the counters would sum to 2).
#[test]
fn two_replicas_roll_a_failing_version_back_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let guard = [
        ("HEALER_REGRESSION_GUARD_DECISIONS", "3"),
        ("HEALER_REGRESSION_GUARD_MARGIN", "0.5"),
    ];
    let mut replicas = Vec::new();
    for name in ["a", "b"] {
        let p = dir.path().join(name);
        std::fs::create_dir(&p).expect("mkdir");
        std::fs::copy(artifacts::SWAP_V1, p.join("swap.wasm")).expect("copy");
        replicas.push(start_with(&p, &data, None, &guard));
    }
    let (a, b) = (&replicas[0], &replicas[1]);
    for v in [artifacts::SWAP_V2, artifacts::SWAP_V1, artifacts::SWAP_V2] {
        let out = healer(&["policy", "push", v, "--server", &a.url]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_for(b, |v| v == ["swap-test@2"], "followed the pushes");
    let auth = format!("Bearer {TOKEN}");
    for i in 0..3 {
        let (status, text) = crate::support::http(
            &a.url,
            "POST",
            "/events",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            &crate::support::alarm_event(&format!("race-{i}"), "fail-in-2"),
        );
        assert_eq!(status, 202, "{text}");
    }
    for r in [a, b] {
        wait_for(r, |v| v == ["swap-test@1"], "rolled back");
    }
    // Both replicas have judged by now (they look every second); neither
    // rolls back further.
    std::thread::sleep(Duration::from_secs(3));
    let rollbacks: u64 = [a, b]
        .iter()
        .map(|r| {
            let (_, metrics) = crate::support::http(&r.url, "GET", "/metrics", &[], "");
            metrics
                .lines()
                .find(|l| l.starts_with("healer_policy_auto_rollbacks_total{policy=\"swap-test\"}"))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(rollbacks, 1);
    for r in [a, b] {
        assert_eq!(active(r), ["swap-test@1"]);
    }
}

/// `GET /policies` of a replica, as JSON.
fn listing(r: &Replica) -> serde_json::Value {
    let auth = format!("Bearer {TOKEN}");
    let (status, body) =
        crate::support::http(&r.url, "GET", "/policies", &[("Authorization", &auth)], "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

/// The limits the active `swap-test` version runs under on a replica.
fn swap_limits(r: &Replica) -> serde_json::Value {
    listing(r)["policies"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "swap-test"))
        .and_then(|p| p["versions"].as_array())
        .and_then(|vs| vs.iter().find(|v| v["role"] == "active"))
        .map(|v| v["limits"].clone())
        .unwrap_or_default()
}

#[test]
fn limits_set_through_the_api_reach_every_replica_and_bad_ones_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (pa, pb) = (dir.path().join("a"), dir.path().join("b"));
    for p in [&pa, &pb] {
        std::fs::create_dir(p).expect("mkdir");
        std::fs::copy(artifacts::SWAP_V1, p.join("swap.wasm")).expect("copy");
    }
    let a = start(&pa, &data);
    let b = start(&pb, &data);
    assert_eq!(swap_limits(&a)["fuel"], 50_000_000);
    assert_eq!(
        listing(&a)["policies"][0]["versions"][0]["toolchain"],
        "rust"
    );

    let auth = format!("Bearer {TOKEN}");
    let put = |body: &str, auth: &str| {
        crate::support::http(
            &a.url,
            "PUT",
            "/policies/swap-test/limits",
            &[
                ("Authorization", auth),
                ("Content-Type", "application/json"),
            ],
            body,
        )
    };
    let (status, body) = put(r#"{"fuel": 7000000, "memory-bytes": 33554432}"#, &auth);
    assert_eq!(status, 200, "{body}");
    assert_eq!(swap_limits(&a)["fuel"], 7_000_000);
    let deadline = Instant::now() + Duration::from_secs(30);
    while swap_limits(&b)["memory-bytes"] != 33_554_432 {
        assert!(Instant::now() < deadline, "b never followed the limits");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Above the ceiling or below what the component needs (422, the limit
    // named), an unknown key, or no token.
    let (status, body) = put(r#"{"memory-bytes": 17179869184}"#, &auth);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("memory-bytes"), "{body}");
    let (status, body) = put(r#"{"core-instances": 1}"#, &auth);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("core-instances"), "{body}");
    let (status, body) = put(r#"{"heap": 1}"#, &auth);
    assert!(status == 400 || status == 422, "{status} {body}");
    assert!(body.contains("heap"), "{body}");
    let (status, _) = put(r#"{"fuel": 1}"#, "Bearer wrong-token-0123456789");
    assert_eq!(status, 401);
    assert_eq!(swap_limits(&a)["fuel"], 7_000_000, "unchanged");

    // `{}` clears them.
    let (status, body) = put("{}", &auth);
    assert_eq!(status, 200, "{body}");
    assert_eq!(swap_limits(&a)["fuel"], 50_000_000);
}
