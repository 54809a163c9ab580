//! `POST /events/sns` with real signatures: the test makes its own CA and a
//! signing certificate it issues (with the `openssl` command line; the test
//! fails when it is missing), serves the certificate and a subscribe URL on
//! 127.0.0.1 (the trusted host is the test-only setting), signs messages
//! the way SNS does (SignatureVersion 1: SHA-1, 2: SHA-256), and checks
//! that valid ones are recorded and tampered, wrong-host, expired,
//! unknown-topic and unsigned ones are refused with 403 and the reason.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use healer::api::{Api, Health, Ingest};
use healer::sources::sns::{SnsConfig, SnsMessage, SnsVerifier, string_to_sign};
use healer::sources::{Handled, Origin};
use http_body_util::BodyExt;
use tower::ServiceExt;

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:healer-alarms";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl command line is needed by this test (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a signing key + certificate it issued, in `dir`.
fn pki(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=healer test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "sns.key",
            "-out",
            "sns.csr",
            "-subj",
            "/CN=sns.us-east-1.amazonaws.com",
        ],
    );
    // X.509 v3, as SNS's certificates are.
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n",
    )
    .expect("write");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "sns.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "sns.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

/// Signs like SNS: base64 of RSA PKCS#1 v1.5 over the string to sign.
fn sign(dir: &Path, m: &SnsMessage, digest: &str) -> String {
    std::fs::write(dir.join("msg"), string_to_sign(m)).expect("write");
    openssl(
        dir,
        &["dgst", digest, "-sign", "sns.key", "-out", "sig", "msg"],
    );
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(dir.join("sig")).expect("sig"))
}

/// Serves the certificate and counts `/confirm` hits on 127.0.0.1.
async fn serve(pem: Vec<u8>, confirms: Arc<AtomicUsize>) -> SocketAddr {
    let app = Router::new()
        .route(
            "/SimpleNotificationService-0123abcd.pem",
            axum::routing::get(move || async move { pem.clone() }),
        )
        .route(
            "/confirm",
            axum::routing::get(move || async move {
                confirms.fetch_add(1, Ordering::SeqCst);
                "<ConfirmSubscriptionResponse/>"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

struct Recorder(AtomicUsize);

#[async_trait::async_trait]
impl Ingest for Recorder {
    async fn ingest(&self, body: &[u8], origin: Origin) -> Handled {
        assert_eq!(origin, Origin::Sns);
        let v: serde_json::Value = serde_json::from_slice(body).expect("json");
        let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
        for k in &keys {
            let signed = [
                "Type",
                "MessageId",
                "TopicArn",
                "Subject",
                "Message",
                "Timestamp",
            ];
            assert!(
                signed.contains(&k.as_str()),
                "unsigned key {k} was recorded"
            );
        }
        self.0.fetch_add(1, Ordering::SeqCst);
        Handled::Done {
            incidents: 1,
            healed: 0,
            ignored: 0,
            reasons: Vec::new(),
            truncated: 0,
            acting: Vec::new(),
        }
    }
}

fn message(kind: &str, host: &SocketAddr, timestamp: &str) -> serde_json::Value {
    let mut m = serde_json::json!({
        "Type": kind,
        "MessageId": format!("5a9c2b2e-0000-4000-8000-{:012}", NEXT_ID.fetch_add(1, Ordering::SeqCst)),
        "TopicArn": TOPIC,
        "Message": "{\"AlarmName\":\"errors-checkout\",\"NewStateValue\":\"ALARM\"}",
        "Timestamp": timestamp,
        "SignatureVersion": "1",
        "Signature": "",
        "SigningCertURL": format!("http://{host}/SimpleNotificationService-0123abcd.pem"),
    });
    if kind == "Notification" {
        m["Subject"] = "ALARM: errors-checkout".into();
        m["UnsubscribeURL"] = format!("http://{host}/unsubscribe").into();
    } else {
        m["Token"] = "2336412f37fb687f5d51e6e2425f004aed".into();
        m["SubscribeURL"] = format!("http://{host}/confirm").into();
    }
    m
}

fn signed(dir: &Path, mut m: serde_json::Value, version: &str) -> serde_json::Value {
    m["SignatureVersion"] = version.into();
    let parsed: SnsMessage = serde_json::from_value(m.clone()).expect("shape");
    let digest = if version == "1" { "-sha1" } else { "-sha256" };
    m["Signature"] = sign(dir, &parsed, digest).into();
    m
}

async fn post(router: &Router, body: &serde_json::Value) -> (StatusCode, serde_json::Value) {
    let req = Request::post("/events/sns")
        .header(
            "x-amz-sns-message-type",
            body["Type"].as_str().unwrap_or_default(),
        )
        .header("content-type", "text/plain; charset=UTF-8")
        .body(Body::from(body.to_string()))
        .expect("request");
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).expect("json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_signatures_are_checked_and_subscriptions_confirmed() {
    let dir = tempfile::tempdir().expect("tempdir");
    pki(dir.path());
    let confirms = Arc::new(AtomicUsize::new(0));
    let host = serve(
        std::fs::read(dir.path().join("sns.pem")).expect("pem"),
        confirms.clone(),
    )
    .await;
    let recorder = Arc::new(Recorder(AtomicUsize::new(0)));
    let verifier = SnsVerifier::new(SnsConfig {
        topics: vec![TOPIC.to_owned()],
        max_age: std::time::Duration::from_secs(3600),
        test_trusted_host: Some(host.to_string()),
    });
    let router = Api::new(Arc::new(Health::new(Vec::new(), true, None)))
        .ingest(recorder.clone())
        .sns(Some(Arc::new(verifier)))
        .router();
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let d = dir.path();

    // Valid v1 and v2 notifications are recorded.
    for version in ["1", "2"] {
        let (s, b) = post(
            &router,
            &signed(d, message("Notification", &host, &now), version),
        )
        .await;
        assert_eq!(s, StatusCode::ACCEPTED, "v{version}: {b}");
    }
    assert_eq!(recorder.0.load(Ordering::SeqCst), 2);

    // Unsigned keys riding on a signed message are dropped, and the same
    // message again (an SNS redelivery, or a replay) is acknowledged, not
    // recorded twice.
    let mut smuggled = signed(d, message("Notification", &host, &now), "2");
    smuggled["Messages"] = serde_json::json!([{"Body": "{\"detail-type\":\"forged\"}"}]);
    let (s, b) = post(&router, &smuggled).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(recorder.0.load(Ordering::SeqCst), 3);
    let (s, b) = post(&router, &smuggled).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b["duplicate"].is_string(), "{b}");
    assert_eq!(recorder.0.load(Ordering::SeqCst), 3);

    // A confirmation for the configured topic is confirmed.
    let (s, b) = post(
        &router,
        &signed(d, message("SubscriptionConfirmation", &host, &now), "2"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["confirmed"], true);
    assert_eq!(confirms.load(Ordering::SeqCst), 1);

    // Refused, each with its reason, and never recorded.
    let refused = |b: &serde_json::Value, s: StatusCode, why: &str| {
        assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
        assert_eq!(b["error"], "forbidden", "{b}");
        assert!(
            b["message"].as_str().is_some_and(|m| m.contains(why)),
            "{why}: {b}"
        );
    };
    let mut tampered = signed(d, message("Notification", &host, &now), "1");
    tampered["Message"] = "{\"AlarmName\":\"prod-db\",\"NewStateValue\":\"ALARM\"}".into();
    let (s, b) = post(&router, &tampered).await;
    refused(&b, s, "does not verify");
    let mut unsigned = message("Notification", &host, &now);
    unsigned["Signature"] = "".into();
    let (s, b) = post(&router, &unsigned).await;
    refused(&b, s, "does not verify");
    let mut wrong_host = signed(d, message("Notification", &host, &now), "1");
    wrong_host["SigningCertURL"] =
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem".into();
    let (s, b) = post(&router, &wrong_host).await;
    refused(&b, s, "not an https URL");
    let old = (chrono::Utc::now() - chrono::Duration::hours(2))
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let (s, b) = post(
        &router,
        &signed(d, message("Notification", &host, &old), "2"),
    )
    .await;
    refused(&b, s, "s old");
    let mut other_topic = message("Notification", &host, &now);
    other_topic["TopicArn"] = "arn:aws:sns:us-east-1:123456789012:someone-else".into();
    let (s, b) = post(&router, &signed(d, other_topic, "2")).await;
    refused(&b, s, "not one this service subscribes to");
    let mut v3 = signed(d, message("Notification", &host, &now), "2");
    v3["SignatureVersion"] = "3".into();
    let (s, b) = post(&router, &v3).await;
    refused(&b, s, "unsupported SignatureVersion");
    let (s, b) = post(&router, &serde_json::json!({"hello": "world"})).await;
    refused(&b, s, "not an SNS message");
    // A confirmation whose SubscribeURL is not SNS's is refused too.
    let mut phish = message("SubscriptionConfirmation", &host, &now);
    phish["SubscribeURL"] = "https://evil.example/confirm".into();
    let (s, b) = post(&router, &signed(d, phish, "2")).await;
    refused(&b, s, "not an https URL");
    assert_eq!(
        recorder.0.load(Ordering::SeqCst),
        3,
        "nothing refused was recorded"
    );
    assert_eq!(confirms.load(Ordering::SeqCst), 1);
}
