//! Starts a real `moto_server` (the AWS API emulator) on 127.0.0.1 and a free
//! port for a test, and stops it when dropped. A missing moto_server fails the
//! test, on a laptop as under CI: a green run means the AWS tests ran. Only an
//! explicit `HEALER_SKIP_MOTO=1` skips them, outside CI, with a line per
//! skipped test written past the test harness's output capture.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> Option<String> {
    if let Ok(path) = std::env::var("MOTO_SERVER") {
        return Some(path);
    }
    let on_path = Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    on_path.then(|| "moto_server".to_owned())
}

/// What the environment says about running the moto tests.
#[derive(Debug, Clone, Default)]
struct MotoEnv {
    /// `CI=true`.
    ci: bool,
    /// `HEALER_SKIP_MOTO=1`.
    skip: bool,
}

impl MotoEnv {
    fn from_process() -> Self {
        MotoEnv {
            ci: std::env::var("CI").as_deref() == Ok("true"),
            skip: std::env::var("HEALER_SKIP_MOTO").as_deref() == Ok("1"),
        }
    }
}

/// Starts moto for `test`. Panics (fails the test) when moto_server is not
/// installed; returns `None` only under `HEALER_SKIP_MOTO=1`, after saying so.
pub fn start(test: &str) -> Option<Moto> {
    start_mode(test, Mode::Threaded)
}

/// Starts moto answering one request at a time, for tests of DynamoDB
/// conditional writes raced by two writers.
///
/// DynamoDB evaluates a condition expression and writes the item atomically;
/// moto's threaded server checks, then writes, in Python, so two racing
/// `attribute_not_exists` puts can both succeed there and a correct store
/// fails the test now and then. Serialized, moto has the atomicity DynamoDB
/// guarantees. Only for tests that make no long poll (a long poll would hold
/// every other request).
pub fn start_serial(test: &str) -> Option<Moto> {
    start_mode(test, Mode::Serial)
}

/// How moto's HTTP server handles requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `moto_server`: a thread per request.
    Threaded,
    /// The same application, one request at a time (HTTP/1.0, no keep-alive).
    Serial,
}

/// Runs moto's server application single-threaded: `moto_server` with
/// `threaded=False` (it has no flag for it).
const SERIAL_SERVER: &str = "import sys\n\
from werkzeug.serving import run_simple\n\
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app\n\
run_simple(sys.argv[1], int(sys.argv[2]), DomainDispatcherApplication(create_backend_app), threaded=False, request_handler=MotoRequestHandler)\n";

/// The Python that runs `moto_server` (its `#!` line), for the serial mode.
fn interpreter(bin: &str) -> String {
    let script = std::fs::read_to_string(bin).ok().or_else(|| {
        let out = Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .output()
            .ok()?;
        std::fs::read_to_string(String::from_utf8_lossy(&out.stdout).trim()).ok()
    });
    script
        .as_deref()
        .and_then(|s| s.lines().next())
        .and_then(|l| l.strip_prefix("#!"))
        .map(|l| l.trim().to_owned())
        .unwrap_or_else(|| "python3".to_owned())
}

fn start_mode(test: &str, mode: Mode) -> Option<Moto> {
    let env = MotoEnv::from_process();
    // Skipping is decided before looking for moto: a skip means "do not run".
    let bin = if env.skip { None } else { binary() };
    // Straight to stderr: libtest captures `eprintln!` of passing tests.
    start_with(test, bin, mode, &env, &mut std::io::stderr().lock())
}

fn start_with(
    test: &str,
    bin: Option<String>,
    mode: Mode,
    env: &MotoEnv,
    say: &mut dyn std::io::Write,
) -> Option<Moto> {
    if env.skip {
        assert!(
            !env.ci,
            "{test}: HEALER_SKIP_MOTO=1 is refused under CI=true: CI must run the moto tests"
        );
        let _ = writeln!(
            say,
            "SKIPPED (HEALER_SKIP_MOTO=1) {test}: this moto test did not run; unset HEALER_SKIP_MOTO to run it"
        );
        return None;
    }
    let Some(bin) = bin else {
        panic!(
            "{test}: moto_server not found. Run scripts/test (it installs moto), set MOTO_SERVER to \
             a moto_server binary, or set HEALER_SKIP_MOTO=1 to skip the moto tests (loudly)"
        );
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut command = match mode {
        Mode::Threaded => {
            let mut c = Command::new(&bin);
            c.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            c
        }
        Mode::Serial => {
            let mut c = Command::new(interpreter(&bin));
            c.args(["-c", SERIAL_SERVER, "127.0.0.1", &port.to_string()]);
            c.env("MOTO_PORT", port.to_string());
            c
        }
    };
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{test}: cannot start {bin}: {e}"));
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{test}: moto_server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(moto)
}

/// The SDK configuration for moto (us-east-1, test credentials), with the
/// service's per-call timeouts.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    healer::aws::AwsTimeouts::default()
        .loader()
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "moto",
        ))
        .load()
        .await
}

/// A DynamoDB client for moto through the real SDK.
pub async fn dynamodb(moto: &Moto) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sdk_config(&moto.endpoint).await)
}

/// Issue 11, item 16: the moto tests passed silently wherever moto was missing
/// outside CI.
#[test]
#[should_panic(expected = "moto_server not found")]
fn a_missing_moto_fails_the_test_outside_ci() {
    start_with(
        "t",
        None,
        Mode::Threaded,
        &MotoEnv::default(),
        &mut Vec::new(),
    );
}

#[test]
#[should_panic(expected = "moto_server not found")]
fn a_missing_moto_fails_the_test_under_ci() {
    let env = MotoEnv {
        ci: true,
        skip: false,
    };
    start_with("t", None, Mode::Threaded, &env, &mut Vec::new());
}

#[test]
fn healer_skip_moto_skips_the_test_loudly() {
    let env = MotoEnv {
        ci: false,
        skip: true,
    };
    // Even with a binary at hand: the skip was asked for.
    let mut said = Vec::new();
    assert!(
        start_with(
            "some_test",
            Some("moto_server".into()),
            Mode::Threaded,
            &env,
            &mut said
        )
        .is_none()
    );
    assert_eq!(
        String::from_utf8_lossy(&said),
        "SKIPPED (HEALER_SKIP_MOTO=1) some_test: this moto test did not run; unset HEALER_SKIP_MOTO to run it\n"
    );
}

#[test]
#[should_panic(expected = "refused under CI=true")]
fn healer_skip_moto_is_refused_under_ci() {
    let env = MotoEnv {
        ci: true,
        skip: true,
    };
    start_with("t", None, Mode::Threaded, &env, &mut Vec::new());
}
