//! The SQS source: long-polls the queue the EventBridge rules deliver to. A
//! message is deleted only after its signals are recorded in the store; a
//! message healer cannot read or record stays on the queue (its visibility
//! timeout makes it reappear) until the queue's redrive policy moves it to the
//! dead-letter queue.

use aws_sdk_sqs::types::MessageSystemAttributeName;

/// The SQS API operations this source calls, as IAM actions.
pub const SQS_ACTIONS: &[&str] = &["sqs:DeleteMessage", "sqs:ReceiveMessage"];

/// SQS failures.
#[derive(Debug, thiserror::Error)]
#[error("sqs {op} {queue}: {message}")]
pub struct SqsError {
    /// The operation.
    pub op: &'static str,
    /// The queue URL.
    pub queue: String,
    /// The SDK's error with its source chain.
    pub message: String,
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
}

/// A long-polling reader of one queue.
#[derive(Debug, Clone)]
pub struct SqsSource {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    wait_seconds: i32,
}

impl SqsSource {
    /// A reader of `queue_url` that waits up to 20 s per receive.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        SqsSource {
            client,
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

    fn error<E: std::error::Error + 'static>(&self, op: &'static str, e: E) -> SqsError {
        SqsError {
            op,
            queue: self.queue_url.clone(),
            message: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
        }
    }

    /// Up to 10 messages, waiting for them up to the long-poll time.
    pub async fn receive(&self) -> Result<Vec<Message>, SqsError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(self.wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| self.error("ReceiveMessage", e))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                let count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                Some(Message {
                    id: m.message_id().unwrap_or_default().to_owned(),
                    receipt: m.receipt_handle()?.to_owned(),
                    body: m.body().unwrap_or_default().to_owned(),
                    receive_count: count,
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
            .map_err(|e| self.error("DeleteMessage", e))?;
        Ok(())
    }
}
