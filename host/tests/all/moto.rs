//! Starts a real `moto_server` (the AWS API emulator) on 127.0.0.1 and a free
//! port for a test, and stops it when dropped. Under `CI=true` a missing
//! moto_server fails the test; elsewhere the test says loudly that it skipped.

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

/// Starts moto, or returns `None` (outside CI only) when it is not installed.
pub fn start(test: &str) -> Option<Moto> {
    let Some(bin) = binary() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: moto_server is required under CI=true (scripts/test installs it; or set MOTO_SERVER)"
        );
        eprintln!("SKIPPED {test}: moto_server not found (run scripts/test, or set MOTO_SERVER)");
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
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

/// The SDK configuration for moto (us-east-1, test credentials).
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
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
