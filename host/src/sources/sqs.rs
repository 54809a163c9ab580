//! The SQS source: long-polls the queue the EventBridge rules deliver to. A
//! message is deleted only after its signals are recorded in the store; a
//! message healer cannot read or record stays on the queue (its visibility
//! timeout makes it reappear) until the queue's redrive policy moves it to the
//! dead-letter queue.

use std::time::Duration;

use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::error::{DisplayErrorContext, SdkError};
use aws_sdk_sqs::operation::delete_message::DeleteMessageError;
use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;
use aws_sdk_sqs::types::MessageSystemAttributeName;

use crate::aws::{AwsErrorClass, classify, long_poll_timeouts};

/// The SQS API operations this source calls, as IAM actions.
pub const SQS_ACTIONS: &[&str] = &["sqs:DeleteMessage", "sqs:ReceiveMessage"];

/// A failed SQS call, named by operation. The SDK's error is the `#[source]`,
/// with its [`AwsErrorClass`] computed once, when the call failed.
#[derive(Debug, thiserror::Error)]
pub enum SqsError {
    /// `ReceiveMessage` failed.
    #[error("sqs ReceiveMessage {queue} ({class}): {}", DisplayErrorContext(.source))]
    ReceiveMessage {
        /// The queue URL.
        queue: String,
        /// What the error means for a retry.
        class: AwsErrorClass,
        /// The SDK's error.
        #[source]
        source: Box<SdkError<ReceiveMessageError>>,
    },
    /// `DeleteMessage` failed.
    #[error("sqs DeleteMessage {queue} ({class}): {}", DisplayErrorContext(.source))]
    DeleteMessage {
        /// The queue URL.
        queue: String,
        /// What the error means for a retry.
        class: AwsErrorClass,
        /// The SDK's error.
        #[source]
        source: Box<SdkError<DeleteMessageError>>,
    },
}

impl SqsError {
    /// What the error means for a retry (throttled, timed out, access denied,
    /// queue not found, …).
    pub fn class(&self) -> AwsErrorClass {
        match self {
            SqsError::ReceiveMessage { class, .. } | SqsError::DeleteMessage { class, .. } => {
                *class
            }
        }
    }

    /// Whether retrying the call later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.class().is_retryable()
    }

    /// The queue URL.
    pub fn queue(&self) -> &str {
        match self {
            SqsError::ReceiveMessage { queue, .. } | SqsError::DeleteMessage { queue, .. } => queue,
        }
    }
}

/// One received message.
#[derive(Debug, Clone)]
pub struct Message {
    /// SQS message id (for logs).
    pub id: String,
    /// Receipt handle (for delete).
    pub receipt: String,
    /// The body (an EventBridge event, or an SNS envelope around one).
    pub body: String,
    /// How many times it was received, this time included.
    pub receive_count: u32,
    /// When it was sent to the queue (SQS's `SentTimestamp`).
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A long-polling reader of one queue.
#[derive(Debug, Clone)]
pub struct SqsSource {
    client: aws_sdk_sqs::Client,
    /// The client's timeouts, which a receive extends by its wait.
    timeouts: Option<TimeoutConfig>,
    queue_url: String,
    wait_seconds: i32,
}

impl SqsSource {
    /// A reader of `queue_url` that waits up to 20 s per receive, with the
    /// client's timeouts (build it from [`crate::aws::sdk_config`]).
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        let timeouts = client.config().timeout_config().cloned();
        SqsSource {
            client,
            timeouts,
            queue_url: queue_url.into(),
            wait_seconds: 20,
        }
    }

    /// Long-poll wait per receive, seconds (0–20).
    pub fn with_wait_seconds(mut self, seconds: i32) -> Self {
        self.wait_seconds = seconds.clamp(0, 20);
        self
    }

    /// The queue.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// The timeouts of one receive: the client's (from
    /// [`crate::aws::sdk_config`]) with the long-poll wait on top, so an empty
    /// queue answering after the whole wait is not a timeout while a receive
    /// that never answers still is. `None` when the client has no timeouts
    /// to extend.
    fn receive_timeouts(&self) -> Option<TimeoutConfig> {
        let wait = Duration::from_secs(u64::try_from(self.wait_seconds).unwrap_or(0));
        let base = self.timeouts.as_ref()?;
        Some(long_poll_timeouts(base, wait)).filter(TimeoutConfig::has_timeouts)
    }

    /// Up to 10 messages, waiting for them up to the long-poll time. The
    /// receive fails with a timeout (`AwsErrorClass::TimedOut`) when no answer
    /// comes within the client's timeouts plus that wait.
    pub async fn receive(&self) -> Result<Vec<Message>, SqsError> {
        let mut call = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(self.wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .customize();
        if let Some(timeouts) = self.receive_timeouts() {
            call = call.config_override(aws_sdk_sqs::Config::builder().timeout_config(timeouts));
        }
        let out = call.send().await.map_err(|e| SqsError::ReceiveMessage {
            queue: self.queue_url.clone(),
            class: classify(&e),
            source: Box::new(e),
        })?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                let attribute = |name| m.attributes().and_then(|a| a.get(&name));
                let count = attribute(MessageSystemAttributeName::ApproximateReceiveCount)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                let sent_at = attribute(MessageSystemAttributeName::SentTimestamp)
                    .and_then(|t| t.parse::<i64>().ok())
                    .and_then(chrono::DateTime::from_timestamp_millis);
                Some(Message {
                    id: m.message_id().unwrap_or_default().to_owned(),
                    receipt: m.receipt_handle()?.to_owned(),
                    body: m.body().unwrap_or_default().to_owned(),
                    receive_count: count,
                    sent_at,
                })
            })
            .collect())
    }

    /// Acknowledges a message.
    pub async fn delete(&self, message: &Message) -> Result<(), SqsError> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(&message.receipt)
            .send()
            .await
            .map_err(|e| SqsError::DeleteMessage {
                queue: self.queue_url.clone(),
                class: classify(&e),
                source: Box::new(e),
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::AwsTimeouts;

    async fn client(timeouts: Option<AwsTimeouts>) -> aws_sdk_sqs::Client {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "k", "s", None, None, "test",
            ));
        if let Some(t) = timeouts {
            loader = loader.timeout_config(t.timeout_config());
        }
        aws_sdk_sqs::Client::new(&loader.load().await)
    }

    #[tokio::test]
    async fn a_receive_waits_its_long_poll_on_top_of_the_client_timeouts() {
        let source = SqsSource::new(client(Some(AwsTimeouts::default())).await, "q");
        let t = source.receive_timeouts().expect("timeouts");
        // 10 s per attempt and 30 s per operation, plus the 20 s wait.
        assert_eq!(t.operation_attempt_timeout(), Some(Duration::from_secs(30)));
        assert_eq!(t.operation_timeout(), Some(Duration::from_secs(50)));
        assert_eq!(
            t.connect_timeout(),
            Some(crate::aws::DEFAULT_CONNECT_TIMEOUT)
        );
        let short = source.with_wait_seconds(1);
        let t = short.receive_timeouts().expect("timeouts");
        assert_eq!(t.operation_attempt_timeout(), Some(Duration::from_secs(11)));
    }

    #[tokio::test]
    async fn a_client_without_response_timeouts_gets_none_added() {
        // The SDK's defaults alone: a connect timeout and nothing else.
        let source = SqsSource::new(client(None).await, "q");
        let t = source.receive_timeouts().expect("the connect timeout");
        assert_eq!(t.operation_attempt_timeout(), None);
        assert_eq!(t.operation_timeout(), None);
    }
}
