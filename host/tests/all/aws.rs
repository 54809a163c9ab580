//! Per-call timeouts and error classes of the AWS clients, through the real
//! SDK: an endpoint that accepts connections and never answers, one that
//! refuses them, and moto's real service errors (issue 11, item 14).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::get_item::GetItemError;
use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;
use healer::aws::{AwsErrorClass, AwsTimeouts};
use healer::incident::IncidentId;
use healer::sources::sqs::{SqsError, SqsSource};
use healer::store::{DynamoError, DynamoStore, DynamoTables, Store, StoreError};

/// Far above what the short test timeouts allow: reaching it means the call hung.
const HUNG: Duration = Duration::from_secs(60);

/// A TCP endpoint that accepts every connection and holds it open without
/// ever reading or answering (a black-holed or wedged service).
struct Silent {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Silent {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        let addr = listener.local_addr().expect("local address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    held.push(conn);
                }
            }
        });
        Silent {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop up so it sees the stop.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Short timeouts, so a call that cannot be answered fails in about a second.
fn short() -> AwsTimeouts {
    AwsTimeouts {
        connect: Duration::from_secs(1),
        attempt: Duration::from_millis(300),
        operation: Duration::from_secs(1),
    }
}

async fn shared(endpoint: &str) -> aws_config::SdkConfig {
    loader(endpoint).load().await
}

fn loader(endpoint: &str) -> aws_config::ConfigLoader {
    short()
        .loader()
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
}

fn store(shared: &aws_config::SdkConfig) -> DynamoStore {
    DynamoStore::new(
        aws_sdk_dynamodb::Client::new(shared),
        DynamoTables::with_prefix("timeouts"),
    )
}

fn id() -> IncidentId {
    IncidentId::from_dedupe_key("i-1#instance-impaired#0")
}

/// The SDK error behind a store error (kept as its source, boxed).
fn sdk_error(e: &StoreError) -> &SdkError<GetItemError> {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<Box<SdkError<GetItemError>>>())
        .unwrap_or_else(|| panic!("the SDK error is the source of {e:?}"))
}

#[tokio::test]
async fn a_dynamodb_call_to_an_endpoint_that_never_answers_times_out() {
    let silent = Silent::start();
    let store = store(&shared(&silent.endpoint()).await);
    let result = tokio::time::timeout(HUNG, store.get(&id()))
        .await
        .expect("the call returns instead of hanging");
    let e = result.expect_err("nothing answers");
    assert!(
        matches!(&e, StoreError::Dynamo(DynamoError::GetItem { .. })),
        "{e:?}"
    );
    assert_eq!(e.aws_class(), Some(AwsErrorClass::TimedOut), "{e}");
    assert!(e.is_retryable());
    assert!(
        matches!(sdk_error(&e), SdkError::TimeoutError(_)),
        "{:?}",
        sdk_error(&e)
    );
    assert!(e.to_string().contains("GetItem (timed-out)"), "{e}");
}

#[tokio::test]
async fn an_sqs_receive_to_an_endpoint_that_never_answers_times_out() {
    let silent = Silent::start();
    let client = aws_sdk_sqs::Client::new(&shared(&silent.endpoint()).await);
    let queue = format!("{}/123456789012/healer-events", silent.endpoint());
    // A receive may take its long-poll wait (1 s) on top of the 300 ms attempt
    // timeout, and still fails when nothing answers.
    let source = SqsSource::new(client, queue).with_wait_seconds(1);
    let result = tokio::time::timeout(HUNG, source.receive())
        .await
        .expect("the receive returns instead of hanging");
    let e = result.expect_err("nothing answers");
    assert!(matches!(&e, SqsError::ReceiveMessage { .. }), "{e:?}");
    assert_eq!(e.class(), AwsErrorClass::TimedOut, "{e}");
    assert!(e.is_retryable());
    let source = std::error::Error::source(&e)
        .and_then(|s| s.downcast_ref::<Box<SdkError<ReceiveMessageError>>>())
        .expect("the SDK error is the source");
    assert!(matches!(**source, SdkError::TimeoutError(_)), "{source:?}");
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    // The listener is dropped: connections to the port are refused. Without
    // retries: the SDK's would retry until the operation timeout.
    let shared = loader(&format!("http://{addr}"))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let store = store(&shared);
    let result = tokio::time::timeout(HUNG, store.get(&id()))
        .await
        .expect("the call returns");
    let e = result.expect_err("nothing listens");
    assert_eq!(e.aws_class(), Some(AwsErrorClass::Retryable), "{e}");
    assert!(
        matches!(sdk_error(&e), SdkError::DispatchFailure(_)),
        "{:?}",
        sdk_error(&e)
    );
}

#[tokio::test]
async fn moto_service_errors_keep_their_source_and_class() {
    let Some(moto) = crate::moto::start("moto_service_errors_keep_their_source_and_class") else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    // No `init`: the table does not exist.
    let e = store(&shared).get(&id()).await.expect_err("no table");
    assert_eq!(e.aws_class(), Some(AwsErrorClass::NotFound), "{e}");
    assert!(!e.is_retryable());
    let service = sdk_error(&e).as_service_error().expect("a service error");
    assert!(service.is_resource_not_found_exception(), "{service:?}");

    let client = aws_sdk_sqs::Client::new(&shared);
    let queue = format!("{}/123456789012/no-such-queue", moto.endpoint);
    let e = SqsSource::new(client, queue)
        .with_wait_seconds(0)
        .receive()
        .await
        .expect_err("no queue");
    assert_eq!(e.class(), AwsErrorClass::NotFound, "{e}");
    assert!(e.to_string().contains("no-such-queue"), "{e}");
}

#[tokio::test]
async fn a_long_poll_longer_than_the_attempt_timeout_is_not_a_timeout() {
    let Some(moto) =
        crate::moto::start("a_long_poll_longer_than_the_attempt_timeout_is_not_a_timeout")
    else {
        return;
    };
    // 300 ms per attempt, 1 s per operation: shorter than the 2 s wait.
    let client = aws_sdk_sqs::Client::new(&shared(&moto.endpoint).await);
    let queue = crate::support::queue(&client, "empty").await;
    let started = std::time::Instant::now();
    let messages = SqsSource::new(client, queue)
        .with_wait_seconds(2)
        .receive()
        .await
        .expect("an empty queue answers after the wait, within its timeouts");
    assert!(messages.is_empty());
    // moto held the poll open: without the wait on top, the 300 ms attempt
    // timeout would have cut it.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}
