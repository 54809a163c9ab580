//! I/O that feeds signals into the pipeline. `sqs` long-polls a queue (the
//! EventBridge rules' target) and deletes a message only after what it carried
//! is durably recorded.
//!
//! What one delivered payload turned into is a [`Handled`]: the source acks
//! `Done`, and leaves `Rejected` (not an AWS event healer can read) and `Failed`
//! (the store could not record it) on the queue, so they are retried and, past
//! the queue's `maxReceiveCount`, kept in its dead-letter queue: nothing is lost.
//!
//! A payload yields at most `NormalizeOptions::max_signals` signals (default
//! 100). The ones past the cap are counted in `Done::truncated`, not recorded:
//! the message is still acked once every kept signal is recorded, since a
//! redelivery would be cut at the same place. Only counts and the first few
//! ignore reasons are kept, so one flooding payload cannot flood the logs.

pub mod instances;
pub mod poll;
pub mod sns;
pub mod sqs;
pub mod targets;

use crate::incident::IncidentId;
use crate::pipeline::{Handoff, Pipeline, Recorded};
use crate::policy::PolicyContext;
use crate::signals::{NormalizeOptions, Signal, normalize};
use crate::store::LifecycleState;

/// Where a payload came from, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An SQS message.
    Sqs,
    /// `POST /events` and `POST /events/eventbridge`.
    Http,
    /// `POST /events/sns` (an SNS HTTPS subscription).
    Sns,
    /// A poller (target health, instance status).
    Poll,
}

impl Origin {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Sqs => "sqs",
            Origin::Http => "http",
            Origin::Sns => "sns",
            Origin::Poll => "poll",
        }
    }
}

impl Handled {
    /// Counts what the payload turned into, by `origin` and outcome.
    pub fn count(&self, origin: Origin) {
        use crate::metrics::{Counter, metrics};
        let m = metrics();
        let o = origin.as_str();
        match self {
            Handled::Done {
                incidents,
                healed,
                ignored,
                truncated,
                ..
            } => {
                m.add(
                    Counter::Signals,
                    &[("origin", o), ("outcome", "incident")],
                    *incidents as u64,
                );
                m.add(
                    Counter::Signals,
                    &[("origin", o), ("outcome", "healed")],
                    *healed as u64,
                );
                m.add(
                    Counter::Signals,
                    &[("origin", o), ("outcome", "ignored")],
                    *ignored as u64,
                );
                m.add(
                    Counter::Signals,
                    &[("origin", o), ("outcome", "truncated")],
                    *truncated as u64,
                );
            }
            Handled::Rejected(_) => {
                m.inc(Counter::Signals, &[("origin", o), ("outcome", "rejected")])
            }
            Handled::Failed(_) => m.inc(Counter::Signals, &[("origin", o), ("outcome", "failed")]),
        }
    }
}

/// How many distinct ignore reasons [`Handled::Done`] keeps.
pub const FIRST_REASONS: usize = 3;

/// What handling one payload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Every signal kept from it was recorded (or explained as ignored): ack it.
    Done {
        /// Incidents recorded new (duplicates are not counted).
        incidents: usize,
        /// Incidents healed by recoveries in it.
        healed: usize,
        /// Signals ignored (SNS subscription messages included).
        ignored: usize,
        /// The first [`FIRST_REASONS`] distinct reasons among them.
        reasons: Vec<String>,
        /// Signals past the cap, not recorded.
        truncated: usize,
        /// Incidents recorded in `acting` (live mode): work for the worker.
        acting: Vec<IncidentId>,
    },
    /// Not a payload healer can read (malformed JSON, oversized, too deep):
    /// leave it for the dead-letter queue.
    Rejected(String),
    /// Recording failed (store unavailable): leave it to be redelivered.
    Failed(String),
}

/// Normalizes one payload with `opts` (its `received_at` is the decision time)
/// and runs every kept signal through the pipeline.
pub async fn handle(
    pipeline: &Pipeline<'_>,
    payload: &[u8],
    context: &PolicyContext,
    opts: &NormalizeOptions,
) -> Handled {
    let (handled, handoffs) = handle_leased(pipeline, payload, context, opts).await;
    for h in handoffs {
        h.release(pipeline.store).await;
    }
    handled
}

/// `handle`, keeping the lease of each incident it left `acting` for the
/// live workers (one [`Handoff`] each, in `Handled::Done::acting`'s order):
/// the caller hands them on or releases them.
pub async fn handle_leased(
    pipeline: &Pipeline<'_>,
    payload: &[u8],
    context: &PolicyContext,
    opts: &NormalizeOptions,
) -> (Handled, Vec<Handoff>) {
    match normalize(payload, opts) {
        Ok(signals) => {
            let signals = signals.into_iter().map(|n| n.signal);
            handle_signals(pipeline, signals, context, opts.received_at).await
        }
        Err(e) => (Handled::Rejected(e.to_string()), Vec::new()),
    }
}

/// Runs signals already normalized (a poller's, or a payload's) through the
/// pipeline at `now`, keeping the lease of each incident left `acting`, as
/// [`handle_leased`] does.
pub async fn handle_signals(
    pipeline: &Pipeline<'_>,
    signals: impl IntoIterator<Item = Signal>,
    context: &PolicyContext,
    now: chrono::DateTime<chrono::Utc>,
) -> (Handled, Vec<Handoff>) {
    let mut handoffs: Vec<Handoff> = Vec::new();
    let (mut incidents, mut healed, mut ignored, mut truncated) = (0, 0, 0, 0);
    let mut reasons: Vec<String> = Vec::new();
    let mut acting: Vec<IncidentId> = Vec::new();
    let mut note = |reason: String| {
        ignored += 1;
        if reasons.len() < FIRST_REASONS && !reasons.contains(&reason) {
            reasons.push(reason);
        }
    };
    for signal in signals {
        let result = match &signal {
            Signal::Incident(i) => match pipeline.on_incident_leased(i, context, now).await {
                Ok((_, r, lease)) => {
                    if let (Some(lease), Recorded::New(record) | Recorded::Resumed(record)) =
                        (lease, &r)
                    {
                        handoffs.push(Handoff {
                            id: record.incident.id.clone(),
                            held: Some((lease, record.clone())),
                        });
                    }
                    Ok(r)
                }
                Err(e) => Err(e),
            },
            Signal::Recovery(r) => pipeline.on_recovery(r).await.map_err(Into::into),
            Signal::Ignored { reason } => {
                note(reason.clone());
                continue;
            }
            Signal::Subscription(s) => {
                note(format!(
                    "SNS {} for {} (confirm subscriptions over HTTPS, not SQS)",
                    s.kind, s.topic_arn
                ));
                continue;
            }
            Signal::Truncated { dropped, .. } => {
                truncated += dropped;
                continue;
            }
        };
        match result {
            Ok(Recorded::New(r) | Recorded::Resumed(r)) => {
                incidents += 1;
                crate::metrics::metrics().inc(
                    crate::metrics::Counter::Incidents,
                    &[("kind", r.incident.kind.as_str())],
                );
                if r.state == LifecycleState::Acting {
                    acting.push(r.incident.id.clone());
                }
            }
            Ok(Recorded::Duplicate(_)) => {}
            Ok(Recorded::Healed(h)) => healed += h.len(),
            Err(e) => {
                for h in handoffs.drain(..) {
                    h.release(pipeline.store).await;
                }
                return (Handled::Failed(e.to_string()), Vec::new());
            }
        }
    }
    let handled = Handled::Done {
        incidents,
        healed,
        ignored,
        reasons,
        truncated,
        acting,
    };
    (handled, handoffs)
}
