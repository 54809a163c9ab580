//! AWS throttling and permanent errors, which moto does not produce: a small
//! fault-injecting proxy of the test's own, on 127.0.0.1, in front of moto,
//! answers the first calls of an operation with the exact error AWS sends
//! and forwards everything else. The executors' clients (the SDK's standard
//! retries as `healer::aws::action_config` tunes them) retry throttling and
//! succeed; a permanent `UnauthorizedOperation` is not retried at all.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_ec2 as ec2;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use healer::actions::{Ec2Executor, ExecOutcome, Executor, StepRequest};
use healer::aws::AwsErrorClass;
use healer::decision::Action;
use healer::incident::Incident;

use crate::actions_ecs_ec2::original;

/// What the proxy does to calls of `operation`.
#[derive(Clone)]
pub(crate) struct Fault {
    /// The EC2 query action (`RebootInstances`).
    pub(crate) operation: &'static str,
    /// How many of its calls get the error (then forwarded).
    pub(crate) times: usize,
    /// HTTP status and EC2 error code; status 0 holds the call unanswered
    /// (a host that dies mid-step never hears back).
    pub(crate) status: u16,
    pub(crate) code: &'static str,
    pub(crate) seen: Arc<AtomicUsize>,
}

/// Forwards one request to moto over a fresh connection and returns its answer.
fn forward(
    moto: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let addr = moto.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect to moto");
    let mut head = format!("{method} {uri} HTTP/1.1\r\n");
    for (k, v) in headers {
        if matches!(k.as_str(), "connection" | "content-length" | "host") {
            continue;
        }
        head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or_default()));
    }
    head.push_str(&format!(
        "Host: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write body");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let text = String::from_utf8_lossy(&out[..split]).into_owned();
    let mut lines = text.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| {
            !k.eq_ignore_ascii_case("transfer-encoding")
                && !k.eq_ignore_ascii_case("connection")
                && !k.eq_ignore_ascii_case("content-length")
        })
        .collect();
    (status, headers, out[split + 4..].to_vec())
}

/// What the proxy does with one request.
pub(crate) enum Intercept {
    /// Answers with this HTTP status and EC2 error code.
    Error(u16, &'static str),
    /// Never answers.
    Hold,
    /// Forwards it and passes moto's answer body through this.
    Rewrite(Box<dyn FnOnce(Vec<u8>) -> Vec<u8> + Send>),
    /// Forwards it untouched.
    Forward,
}

/// The proxy's judgement of a request, from its form body.
pub(crate) type Judge = Arc<dyn Fn(&str) -> Intercept + Send + Sync>;

/// Starts the proxy; returns its endpoint.
pub(crate) async fn proxy(moto: String, fault: Fault) -> String {
    let judge: Judge = Arc::new(move |form: &str| {
        if form
            .split('&')
            .any(|kv| kv == format!("Action={}", fault.operation))
            && fault.seen.fetch_add(1, Ordering::SeqCst) < fault.times
        {
            if fault.status == 0 {
                return Intercept::Hold;
            }
            return Intercept::Error(fault.status, fault.code);
        }
        Intercept::Forward
    });
    intercepting_proxy(moto, judge).await
}

/// Starts a proxy in front of `moto` that does what `judge` says with each
/// request; returns its endpoint.
pub(crate) async fn intercepting_proxy(moto: String, judge: Judge) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (moto, judge) = (moto.clone(), judge.clone());
            async move {
                let form = String::from_utf8_lossy(&body).into_owned();
                let rewrite = match judge(&form) {
                    Intercept::Hold => std::future::pending().await,
                    Intercept::Error(status, code) => {
                        let xml = format!(
                            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error></Errors><RequestID>proxy</RequestID></Response>"
                        );
                        let status = StatusCode::from_u16(status).expect("status");
                        return (status, [("content-type", "text/xml")], xml).into_response();
                    }
                    Intercept::Rewrite(f) => Some(f),
                    Intercept::Forward => None,
                };
                let (status, hs, b) = tokio::task::spawn_blocking(move || {
                    forward(&moto, &method, &uri, &headers, &body)
                })
                .await
                .expect("forward");
                let b = match rewrite {
                    Some(f) => f(b),
                    None => b,
                };
                let mut resp = (StatusCode::from_u16(status).expect("status"), b).into_response();
                for (k, v) in hs {
                    if let (Ok(k), Ok(v)) = (
                        axum::http::HeaderName::try_from(k),
                        axum::http::HeaderValue::try_from(v),
                    ) {
                        resp.headers_mut().insert(k, v);
                    }
                }
                resp
            }
        },
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    endpoint
}

async fn reboot_through(
    moto: &crate::moto::Moto,
    operation_faults: (usize, u16, &'static str),
) -> (healer::actions::Execution, usize) {
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let o = original(&ec2::Client::new(&shared)).await;
    let seen = Arc::new(AtomicUsize::new(0));
    let (times, status, code) = operation_faults;
    let endpoint = proxy(
        moto.endpoint.clone(),
        Fault {
            operation: "RebootInstances",
            times,
            status,
            code,
            seen: seen.clone(),
        },
    )
    .await;
    let through = crate::moto::sdk_config(&endpoint).await;
    let executor = Ec2Executor::new(&healer::aws::action_config(&through));
    let incident = Incident::from_json(
        format!(
            r#"{{"kind":"instance-impaired","resource":{{"kind":"ec2-instance","id":"{}"}},"detected-at":"2024-05-01T10:00:00Z"}}"#,
            o.id
        )
        .as_bytes(),
    )
    .expect("incident");
    let action = Action::RebootInstance {
        instance_id: o.id.clone(),
    };
    let req = StepRequest {
        incident: &incident,
        step: 0,
        action: &action,
    };
    let e = executor.execute(&req).await;
    (e, seen.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_calls_are_retried_with_backoff_and_the_step_succeeds() {
    let Some(moto) =
        crate::moto::start("throttled_calls_are_retried_with_backoff_and_the_step_succeeds")
    else {
        return;
    };
    let (e, seen) = reboot_through(&moto, (2, 503, "RequestLimitExceeded")).await;
    assert_eq!(e.outcome, ExecOutcome::Succeeded, "{e:?}");
    assert_eq!(seen, 3, "two throttled attempts, then the one that passed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_access_denied_is_not_retried() {
    let Some(moto) = crate::moto::start("a_permanent_access_denied_is_not_retried") else {
        return;
    };
    let (e, seen) = reboot_through(&moto, (usize::MAX, 403, "UnauthorizedOperation")).await;
    let ExecOutcome::Failed { class, reason } = &e.outcome else {
        panic!("{e:?}");
    };
    assert_eq!(*class, AwsErrorClass::AccessDenied, "{reason}");
    assert_eq!(seen, 1, "no retry storm: one attempt");
}
