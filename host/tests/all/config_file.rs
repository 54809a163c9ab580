//! The config file and the embedded default: `healer config example` parses
//! with `healer config check`; a bad key names its line; `healer run --config`
//! takes its address from the file unless the environment says otherwise;
//! `healer plan` needs no `--policies` (the example policies are built in).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::free_port;

fn healer() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_healer"));
    c.env_remove("HEALER_CONFIG")
        .env_remove("HEALER_POLICIES")
        .env_remove("HEALER_LISTEN");
    c
}

#[test]
fn the_example_checks_and_a_bad_key_names_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = healer().args(["config", "example"]).output().expect("runs");
    assert!(out.status.success());
    let example = dir.path().join("healer.toml");
    std::fs::write(&example, &out.stdout).expect("write");
    let out = healer()
        .args(["config", "check"])
        .arg(&example)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vars = String::from_utf8_lossy(&out.stdout);
    assert!(vars.contains("HEALER_LISTEN=127.0.0.1:8080"), "{vars}");
    assert!(vars.contains("HEALER_GOVERNOR_JSON="), "{vars}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[store]\nbackend = \"sqlite\"\ntable-prefx = \"x\"\n").expect("write");
    let out = healer()
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3") && err.contains("table-prefx"),
        "{err}"
    );
    // The same file refuses to start any command.
    let out = healer()
        .arg("--config")
        .arg(&bad)
        .args(["run"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
}

/// The address `healer run` says it listens on.
fn listens_on(config: &Path, env_listen: Option<&str>) -> String {
    let dir = config.parent().expect("dir");
    let mut cmd = healer();
    cmd.arg("--config")
        .arg(config)
        .arg("run")
        .env("HEALER_DATA_DIR", dir.join("data"))
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("HEALER_SQS_QUEUE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(l) = env_listen {
        cmd.env("HEALER_LISTEN", l);
    }
    let child = cmd.spawn().expect("healer run starts");
    crate::support::first_stderr_line(
        child,
        |line| line.contains("listening on") || line.starts_with("error"),
        Duration::from_secs(120),
    )
    .expect("healer run says where it listens")
}

#[test]
fn run_takes_the_file_and_the_environment_overrides_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (from_file, from_env) = (free_port(), free_port());
    let config = dir.path().join("healer.toml");
    std::fs::write(
        &config,
        format!(
            "[service]\nlisten = \"127.0.0.1:{from_file}\"\n[governor]\ncooldown-minutes = 5\n"
        ),
    )
    .expect("write");
    let line = listens_on(&config, None);
    assert!(line.contains(&format!("127.0.0.1:{from_file}")), "{line}");
    assert!(line.contains("dry run"), "{line}");
    let line = listens_on(&config, Some(&format!("127.0.0.1:{from_env}")));
    assert!(line.contains(&format!("127.0.0.1:{from_env}")), "{line}");
}

#[test]
fn plan_needs_no_policy_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let crashed = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../tests/fixtures/aws-events/ecs/task-stopped-essential-container-exited-fargate.json",
    );
    let out = healer()
        .args(["plan", "--no-cache"])
        .arg(&crashed)
        .env("HEALER_DATA_DIR", dir.path())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ecs-task-restart"), "{stdout}");
}
