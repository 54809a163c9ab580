//! The AWS SDK edge every client shares: the SDK configuration (the standard
//! AWS environment plus per-call timeouts, so no AWS call can hang the service)
//! and [`classify`], the pure function that tells a throttled, timed-out,
//! retryable, access-denied, not-found or permanent SDK error apart for retry
//! decisions and logs. It builds no service client and makes no call itself:
//! the SQS source, the DynamoDB store and the facts reader build their clients
//! from [`sdk_config`] and keep the SDK error as their errors' `#[source]`.

use std::fmt;
use std::time::Duration;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::retry::{ErrorKind, ProvideErrorKind};
use aws_smithy_types::timeout::TimeoutConfig;

/// Default time to establish a connection (TCP and TLS): the SDK's own default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);
/// Default time one attempt (request sent, response read) may take. DynamoDB,
/// EC2, ECS, Auto Scaling and ELB answer in milliseconds; 10 s only cuts a call
/// that is stuck (a half-open connection, a black-holed endpoint).
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a whole operation may take, the SDK's retries (3 attempts,
/// with backoff) included.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Per-call timeouts of every AWS client healer builds. A call that exceeds
/// one fails with [`AwsErrorClass::TimedOut`] instead of waiting forever.
///
/// An operation the server holds open on purpose (an SQS long poll) gets its
/// wait added on top, see [`long_poll_timeouts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsTimeouts {
    /// Connection establishment (default [`DEFAULT_CONNECT_TIMEOUT`], 3.1 s).
    pub connect: Duration,
    /// One attempt: send the request, read the whole response (default
    /// [`DEFAULT_ATTEMPT_TIMEOUT`], 10 s).
    pub attempt: Duration,
    /// The whole operation, retries included (default
    /// [`DEFAULT_OPERATION_TIMEOUT`], 30 s).
    pub operation: Duration,
}

impl Default for AwsTimeouts {
    fn default() -> Self {
        AwsTimeouts {
            connect: DEFAULT_CONNECT_TIMEOUT,
            attempt: DEFAULT_ATTEMPT_TIMEOUT,
            operation: DEFAULT_OPERATION_TIMEOUT,
        }
    }
}

impl AwsTimeouts {
    /// These timeouts as the SDK's `TimeoutConfig`.
    pub fn timeout_config(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .operation_attempt_timeout(self.attempt)
            .operation_timeout(self.operation)
            .build()
    }

    /// A loader of the standard AWS environment (`AWS_REGION`,
    /// `AWS_ENDPOINT_URL`, the credentials chain, profiles) with these
    /// timeouts; callers may set more (an endpoint, a region) before `load`.
    pub fn loader(&self) -> aws_config::ConfigLoader {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(self.timeout_config())
    }
}

/// The shared SDK configuration: the standard AWS environment with the default
/// [`AwsTimeouts`]. Every client built from it (`Client::new(&config)`, or
/// `config::Builder::from(&config)`) has per-call timeouts.
pub async fn sdk_config() -> aws_config::SdkConfig {
    AwsTimeouts::default().loader().load().await
}

/// Attempts per call of the executors' clients (the first and its retries).
pub const ACTION_MAX_ATTEMPTS: u32 = 5;

/// The configuration of the executors' clients: `shared` with the SDK's
/// standard retry mode tuned for actions: [`ACTION_MAX_ATTEMPTS`] attempts
/// on throttling, timeouts and 5xx, full-jitter exponential backoff from
/// 200 ms up to 5 s, and a client-side token bucket so a flood of failures
/// does not become a retry storm. Non-retryable errors (access denied, bad
/// parameters) are never retried.
pub fn action_config(shared: &aws_config::SdkConfig) -> aws_config::SdkConfig {
    let retry = aws_smithy_types::retry::RetryConfig::standard()
        .with_max_attempts(ACTION_MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(5));
    shared.to_builder().retry_config(retry).build()
}

/// The timeouts of an operation the server may hold open for `wait` before
/// answering (an SQS long poll): `base` with `wait` added to every timeout
/// that runs while the server waits (read, attempt, operation); the connect
/// timeout is kept. Without this a long poll longer than the attempt timeout
/// would time out every time the queue is empty.
pub fn long_poll_timeouts(base: &TimeoutConfig, wait: Duration) -> TimeoutConfig {
    let mut b = TimeoutConfig::builder();
    b.set_connect_timeout(base.connect_timeout());
    b.set_read_timeout(base.read_timeout().map(|t| t + wait));
    b.set_operation_attempt_timeout(base.operation_attempt_timeout().map(|t| t + wait));
    b.set_operation_timeout(base.operation_timeout().map(|t| t + wait));
    b.build()
}

/// What an AWS SDK error means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AwsErrorClass {
    /// The service asked for less traffic (a throttling error code, HTTP 429):
    /// retry, with backoff.
    Throttled,
    /// No answer within a timeout (the SDK's attempt or operation timeout, or
    /// the connector's): retry.
    TimedOut,
    /// A transient failure (the connection failed or broke, HTTP 5xx, an
    /// unreadable response, a transient error code): retry.
    Retryable,
    /// The credentials are missing, invalid or expired, or do not allow the
    /// call: fix the IAM policy or the credentials; retrying does not help.
    AccessDenied,
    /// The table, queue or resource named does not exist.
    NotFound,
    /// Any other error (invalid request, failed condition, a request that
    /// could not be built): retrying the same call fails the same way.
    Permanent,
}

impl AwsErrorClass {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            AwsErrorClass::Throttled | AwsErrorClass::TimedOut | AwsErrorClass::Retryable
        )
    }

    /// The class as a bounded kebab-case label (`error_type` in logs).
    pub fn as_str(self) -> &'static str {
        match self {
            AwsErrorClass::Throttled => "throttled",
            AwsErrorClass::TimedOut => "timed-out",
            AwsErrorClass::Retryable => "retryable",
            AwsErrorClass::AccessDenied => "access-denied",
            AwsErrorClass::NotFound => "not-found",
            AwsErrorClass::Permanent => "permanent",
        }
    }
}

impl fmt::Display for AwsErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Throttling error codes: the SDK's own list (`aws-runtime`'s
/// `THROTTLING_ERRORS`) plus SQS's KMS throttling.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "KmsThrottled",
];

/// Transient error codes: the SDK's (`TRANSIENT_ERRORS`) plus the services'
/// internal-failure codes, which some return with a 4xx status.
const TRANSIENT_CODES: &[&str] = &[
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "InternalServerException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
];

/// Codes of missing, invalid or expired credentials and of denied calls.
const ACCESS_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "MissingAuthenticationTokenException",
    "ExpiredToken",
    "ExpiredTokenException",
    "AuthFailure",
    "NotAuthorized",
    "KmsAccessDenied",
];

/// Codes of a missing queue; other services end theirs in `NotFound` or
/// `NotFoundException` (`ResourceNotFoundException`,
/// `InvalidInstanceID.NotFound`, `ServiceNotFoundException`).
const NOT_FOUND_CODES: &[&str] = &["QueueDoesNotExist", "NonExistentQueue"];

/// The class of an error code, if the code says. A query-compatible code
/// (`AWS.SimpleQueueService.NonExistentQueue`) is judged by its last segment.
fn class_of_code(code: &str) -> Option<AwsErrorClass> {
    let last = code.rsplit('.').next().unwrap_or(code);
    let is = |list: &[&str]| list.contains(&code) || list.contains(&last);
    if is(THROTTLING_CODES) {
        Some(AwsErrorClass::Throttled)
    } else if is(TRANSIENT_CODES) {
        Some(AwsErrorClass::Retryable)
    } else if is(ACCESS_CODES) {
        Some(AwsErrorClass::AccessDenied)
    } else if is(NOT_FOUND_CODES)
        || last.ends_with("NotFound")
        || last.ends_with("NotFoundException")
    {
        Some(AwsErrorClass::NotFound)
    } else {
        None
    }
}

/// The class of an HTTP status, if the status says.
fn class_of_status(status: u16) -> Option<AwsErrorClass> {
    match status {
        429 => Some(AwsErrorClass::Throttled),
        // The SDK's transient statuses (`TRANSIENT_ERROR_STATUS_CODES`).
        500 | 502 | 503 | 504 => Some(AwsErrorClass::Retryable),
        401 | 403 => Some(AwsErrorClass::AccessDenied),
        404 => Some(AwsErrorClass::NotFound),
        _ => None,
    }
}

/// Classifies an SDK error. Pure: the same error always gets the same class.
///
/// - a timeout (the SDK's, or the connector's) → [`AwsErrorClass::TimedOut`];
/// - a dispatch failure: a user error (an invalid request or endpoint) →
///   `Permanent`, otherwise (connection refused or reset, TLS) → `Retryable`;
/// - a response that could not be read → by its HTTP status, else `Retryable`;
/// - a service error → by the error's modeled retry kind (throttling,
///   transient, server), then by its code, then by its HTTP status, else
///   `Permanent`;
/// - a request that could not be built (construction failure, e.g. no
///   credentials or region) → `Permanent`.
pub fn classify<E>(error: &SdkError<E, HttpResponse>) -> AwsErrorClass
where
    E: ProvideErrorMetadata + ProvideErrorKind,
{
    match error {
        SdkError::TimeoutError(_) => AwsErrorClass::TimedOut,
        SdkError::DispatchFailure(failure) => {
            if failure.is_timeout() {
                AwsErrorClass::TimedOut
            } else if failure.is_user() {
                AwsErrorClass::Permanent
            } else if failure.as_other() == Some(ErrorKind::ThrottlingError) {
                AwsErrorClass::Throttled
            } else {
                AwsErrorClass::Retryable
            }
        }
        SdkError::ResponseError(response) => {
            class_of_status(response.raw().status().as_u16()).unwrap_or(AwsErrorClass::Retryable)
        }
        SdkError::ServiceError(service) => {
            let err = service.err();
            match ProvideErrorKind::retryable_error_kind(err) {
                Some(ErrorKind::ThrottlingError) => return AwsErrorClass::Throttled,
                Some(ErrorKind::TransientError | ErrorKind::ServerError) => {
                    return AwsErrorClass::Retryable;
                }
                _ => {}
            }
            ProvideErrorMetadata::code(err)
                .and_then(class_of_code)
                .or_else(|| class_of_status(service.raw().status().as_u16()))
                .unwrap_or(AwsErrorClass::Permanent)
        }
        // Construction failures, and any variant a later SDK adds.
        _ => AwsErrorClass::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    use aws_sdk_dynamodb::types::error::{
        ConditionalCheckFailedException, InternalServerError,
        ProvisionedThroughputExceededException,
    };
    use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(
            StatusCode::try_from(status).expect("valid status"),
            SdkBody::from("{}"),
        )
    }

    fn meta(code: &str) -> ErrorMetadata {
        ErrorMetadata::builder()
            .code(code)
            .message("from the test")
            .build()
    }

    /// An unmodeled DynamoDB PutItem error with `code`, answered with `status`.
    fn put_item(code: &str, status: u16) -> SdkError<PutItemError, HttpResponse> {
        SdkError::service_error(PutItemError::generic(meta(code)), response(status))
    }

    #[test]
    fn service_errors_are_classified_by_code_then_status() {
        use AwsErrorClass::*;
        let table = [
            // DynamoDB's throttling codes come with a 400.
            ("ThrottlingException", 400, Throttled),
            ("ProvisionedThroughputExceededException", 400, Throttled),
            ("RequestLimitExceeded", 400, Throttled),
            ("TooManyRequestsException", 429, Throttled),
            ("RequestLimitExceeded", 503, Throttled),
            ("Throttling", 400, Throttled),
            ("RequestThrottled", 400, Throttled),
            ("SlowDown", 503, Throttled),
            ("Whatever", 429, Throttled),
            ("InternalServerError", 500, Retryable),
            ("ServiceUnavailable", 503, Retryable),
            ("RequestTimeout", 400, Retryable),
            ("", 502, Retryable),
            ("AccessDeniedException", 400, AccessDenied),
            ("AccessDenied", 403, AccessDenied),
            ("UnauthorizedOperation", 403, AccessDenied),
            ("UnrecognizedClientException", 400, AccessDenied),
            ("ExpiredTokenException", 400, AccessDenied),
            ("InvalidSignatureException", 400, AccessDenied),
            ("Forbidden", 403, AccessDenied),
            ("ResourceNotFoundException", 400, NotFound),
            ("InvalidInstanceID.NotFound", 400, NotFound),
            // SQS's query-compatible code and its JSON one.
            ("AWS.SimpleQueueService.NonExistentQueue", 400, NotFound),
            ("QueueDoesNotExist", 400, NotFound),
            ("ValidationException", 400, Permanent),
            ("ConditionalCheckFailedException", 400, Permanent),
            ("SomethingNew", 418, Permanent),
        ];
        for (code, status, class) in table {
            let e = put_item(code, status);
            assert_eq!(classify(&e), class, "{code} {status}");
        }
    }

    #[test]
    fn modeled_service_errors_are_classified() {
        let throttled = SdkError::service_error(
            PutItemError::ProvisionedThroughputExceededException(
                ProvisionedThroughputExceededException::builder()
                    .message("slow down")
                    .meta(meta("ProvisionedThroughputExceededException"))
                    .build(),
            ),
            response(400),
        );
        assert_eq!(classify(&throttled), AwsErrorClass::Throttled);
        let internal = SdkError::service_error(
            PutItemError::InternalServerError(
                InternalServerError::builder()
                    .message("oops")
                    .meta(meta("InternalServerError"))
                    .build(),
            ),
            response(500),
        );
        assert_eq!(classify(&internal), AwsErrorClass::Retryable);
        let condition = SdkError::service_error(
            PutItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder()
                    .message("no")
                    .meta(meta("ConditionalCheckFailedException"))
                    .build(),
            ),
            response(400),
        );
        assert_eq!(classify(&condition), AwsErrorClass::Permanent);
        assert!(!classify(&condition).is_retryable());
    }

    #[test]
    fn timeouts_are_timed_out() {
        let sdk: SdkError<GetItemError, HttpResponse> = SdkError::timeout_error(
            "operation attempt timeout (all attempts including retries) occurred after 10s",
        );
        assert_eq!(classify(&sdk), AwsErrorClass::TimedOut);
        let connector: SdkError<GetItemError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::timeout("connect timed out".into()));
        assert_eq!(classify(&connector), AwsErrorClass::TimedOut);
        assert!(AwsErrorClass::TimedOut.is_retryable());
    }

    #[test]
    fn dispatch_failures_are_classified() {
        let table = [
            (
                ConnectorError::io("connection refused".into()),
                AwsErrorClass::Retryable,
            ),
            (
                ConnectorError::other("tls".into(), None),
                AwsErrorClass::Retryable,
            ),
            (
                ConnectorError::other("reset".into(), Some(ErrorKind::TransientError)),
                AwsErrorClass::Retryable,
            ),
            (
                ConnectorError::other("busy".into(), Some(ErrorKind::ThrottlingError)),
                AwsErrorClass::Throttled,
            ),
            (
                ConnectorError::user("invalid URI".into()),
                AwsErrorClass::Permanent,
            ),
        ];
        for (connector, class) in table {
            let what = format!("{connector:?}");
            let e: SdkError<ReceiveMessageError, HttpResponse> =
                SdkError::dispatch_failure(connector);
            assert_eq!(classify(&e), class, "{what}");
        }
    }

    #[test]
    fn unreadable_responses_are_classified_by_status() {
        let table = [
            (200, AwsErrorClass::Retryable),
            (502, AwsErrorClass::Retryable),
            (429, AwsErrorClass::Throttled),
            (403, AwsErrorClass::AccessDenied),
        ];
        for (status, class) in table {
            let e: SdkError<ReceiveMessageError, HttpResponse> =
                SdkError::response_error("unexpected end of body", response(status));
            assert_eq!(classify(&e), class, "{status}");
        }
    }

    #[test]
    fn construction_failures_are_permanent() {
        let e: SdkError<PutItemError, HttpResponse> =
            SdkError::construction_failure("no credentials provider");
        assert_eq!(classify(&e), AwsErrorClass::Permanent);
    }

    #[test]
    fn only_throttled_timed_out_and_retryable_are_retryable() {
        use AwsErrorClass::*;
        for class in [Throttled, TimedOut, Retryable] {
            assert!(class.is_retryable(), "{class}");
        }
        for class in [AccessDenied, NotFound, Permanent] {
            assert!(!class.is_retryable(), "{class}");
        }
    }

    #[test]
    fn the_default_timeouts_are_documented_ones() {
        let t = AwsTimeouts::default().timeout_config();
        assert_eq!(t.connect_timeout(), Some(Duration::from_millis(3100)));
        assert_eq!(t.operation_attempt_timeout(), Some(Duration::from_secs(10)));
        assert_eq!(t.operation_timeout(), Some(Duration::from_secs(30)));
        assert_eq!(t.read_timeout(), None);
    }

    #[tokio::test]
    async fn clients_built_from_the_loaded_config_carry_the_timeouts() {
        let timeouts = AwsTimeouts {
            connect: Duration::from_secs(1),
            attempt: Duration::from_secs(2),
            operation: Duration::from_secs(3),
        };
        let shared = timeouts
            .loader()
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "k", "s", None, None, "test",
            ))
            .load()
            .await;
        assert_eq!(shared.timeout_config(), Some(&timeouts.timeout_config()));
        let dynamodb = aws_sdk_dynamodb::Client::new(&shared);
        assert_eq!(
            dynamodb.config().timeout_config(),
            Some(&timeouts.timeout_config())
        );
        let sqs = aws_sdk_sqs::Client::new(&shared);
        assert_eq!(
            sqs.config().timeout_config(),
            Some(&timeouts.timeout_config())
        );
    }

    #[test]
    fn a_long_poll_gets_its_wait_on_top_of_every_response_timeout() {
        let base = AwsTimeouts::default().timeout_config();
        let t = long_poll_timeouts(&base, Duration::from_secs(20));
        assert_eq!(t.connect_timeout(), Some(DEFAULT_CONNECT_TIMEOUT));
        assert_eq!(t.operation_attempt_timeout(), Some(Duration::from_secs(30)));
        assert_eq!(t.operation_timeout(), Some(Duration::from_secs(50)));
        assert_eq!(t.read_timeout(), None);
        let with_read = TimeoutConfig::builder()
            .read_timeout(Duration::from_secs(5))
            .build();
        let t = long_poll_timeouts(&with_read, Duration::from_secs(20));
        assert_eq!(t.read_timeout(), Some(Duration::from_secs(25)));
        assert_eq!(t.operation_attempt_timeout(), None);
        assert!(
            !long_poll_timeouts(&TimeoutConfig::disabled(), Duration::from_secs(20)).has_timeouts()
        );
    }
}
