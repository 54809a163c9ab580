//! I/O that feeds signals into the pipeline. `sqs` long-polls a queue (the
//! EventBridge rules' target) and deletes a message only after what it carried
//! is durably recorded.
//!
//! What one delivered payload turned into is a [`Handled`]: the source acks
//! `Done`, and leaves `Rejected` (not an AWS event healer can read) and `Failed`
//! (the store could not record it) on the queue, so they are retried and, past
//! the queue's `maxReceiveCount`, kept in its dead-letter queue: nothing is lost.

pub mod sqs;

use chrono::{DateTime, Utc};

use crate::pipeline::{Pipeline, Recorded};
use crate::policy::PolicyContext;
use crate::signals::{NormalizeOptions, Signal, normalize};

/// What handling one payload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Every signal in it was recorded (or explained as ignored): ack it.
    Done {
        /// Incidents recorded new (duplicates are not counted).
        incidents: usize,
        /// Incidents healed by recoveries in it.
        healed: usize,
        /// Signals ignored, with their reasons.
        ignored: Vec<String>,
    },
    /// Not a payload healer can read (malformed JSON, oversized, too deep):
    /// leave it for the dead-letter queue.
    Rejected(String),
    /// Recording failed (store unavailable): leave it to be redelivered.
    Failed(String),
}

/// Normalizes one payload and runs every signal through the pipeline.
pub async fn handle(
    pipeline: &Pipeline<'_>,
    payload: &[u8],
    context: &PolicyContext,
    now: DateTime<Utc>,
) -> Handled {
    let signals = match normalize(payload, &NormalizeOptions::new(now)) {
        Ok(s) => s,
        Err(e) => return Handled::Rejected(e.to_string()),
    };
    let (mut incidents, mut healed, mut ignored) = (0, 0, Vec::new());
    for n in signals {
        let result = match &n.signal {
            Signal::Incident(i) => pipeline.on_incident(i, context, now).await.map(|(_, r)| r),
            Signal::Recovery(r) => pipeline.on_recovery(r).await,
            Signal::Ignored { reason } => {
                ignored.push(reason.clone());
                continue;
            }
            Signal::Subscription(s) => {
                ignored.push(format!(
                    "SNS {} for {} (confirm subscriptions over HTTPS, not SQS)",
                    s.kind, s.topic_arn
                ));
                continue;
            }
        };
        match result {
            Ok(Recorded::New(_)) => incidents += 1,
            Ok(Recorded::Duplicate(_)) => {}
            Ok(Recorded::Healed(h)) => healed += h.len(),
            Err(e) => return Handled::Failed(e.to_string()),
        }
    }
    Handled::Done {
        incidents,
        healed,
        ignored,
    }
}
