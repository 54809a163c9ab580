//! The signals stage: raw bytes from any transport (SQS, SNS, EventBridge, Lambda
//! batches, ELBv2 polls) → `Vec<Normalized>`, each an incident, a recovery, an SNS
//! subscription to confirm, or an explained "ignored".
//!
//! Pure: no I/O, no clock (the caller passes `received_at`), no AWS client, no
//! tokio. Bad input never panics: the whole input is either a list of signals or
//! one `SignalError`, and each batch item is judged on its own. One input yields
//! at most `max_signals` signals; the rest are counted in one final
//! [`Signal::Truncated`], never silently dropped.

mod alarm;
mod autoscaling;
pub(crate) mod ec2;
mod ecs;
pub(crate) mod elbv2;
mod envelope;
mod fields;
mod health;
mod json;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::incident::{Incident, Recovery};

pub use fields::parse_time;

/// What one piece of input turned into.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signal {
    /// A failure to decide on.
    Incident(Incident),
    /// A resource or group is healthy again.
    Recovery(Recovery),
    /// An SNS subscription (un)confirmation for the HTTP transport to handle.
    Subscription(Subscription),
    /// Nothing to do, and why.
    Ignored {
        /// Why the input was not an incident or a recovery.
        reason: String,
    },
    /// The input held more than `max_signals` signals: the first `limit` are
    /// the entries before this one; these `dropped` were not kept. Always last;
    /// its `path` is where the first dropped signal was.
    Truncated {
        /// Signals past the limit.
        dropped: usize,
        /// The limit (`NormalizeOptions::max_signals`).
        limit: usize,
    },
}

/// An SNS `SubscriptionConfirmation` or `UnsubscribeConfirmation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Subscription {
    /// `SubscriptionConfirmation` or `UnsubscribeConfirmation`.
    pub kind: String,
    /// The topic.
    pub topic_arn: String,
    /// The URL that confirms (SNS `SubscribeURL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribe_url: Option<String>,
    /// The confirmation token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// A signal and where in the input it came from (`Records[0].Sns>Message`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Normalized {
    /// The signal.
    #[serde(flatten)]
    pub signal: Signal,
    /// Path inside the input; `>` marks a JSON-in-string decode.
    pub path: String,
}

impl Normalized {
    /// The incident, if this is one.
    pub fn incident(&self) -> Option<&Incident> {
        match &self.signal {
            Signal::Incident(i) => Some(i),
            _ => None,
        }
    }

    /// The recovery, if this is one.
    pub fn recovery(&self) -> Option<&Recovery> {
        match &self.signal {
            Signal::Recovery(r) => Some(r),
            _ => None,
        }
    }

    /// The ignore reason, if ignored.
    pub fn ignored(&self) -> Option<&str> {
        match &self.signal {
            Signal::Ignored { reason } => Some(reason),
            _ => None,
        }
    }
    /// How many signals were dropped past the limit, if this is the marker.
    pub fn truncated(&self) -> Option<usize> {
        match self.signal {
            Signal::Truncated { dropped, .. } => Some(dropped),
            _ => None,
        }
    }
}

/// Default of [`NormalizeOptions::max_signals`].
pub const DEFAULT_MAX_SIGNALS: usize = 100;

/// Limits and caller-supplied facts for one normalization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NormalizeOptions {
    /// Fallback time when the payload has none.
    pub received_at: DateTime<Utc>,
    /// Largest accepted input in bytes. Default 6 MiB (the SQS/Lambda maximum).
    pub max_input_bytes: usize,
    /// Largest JSON-in-string payload decoded, in bytes. Default 1 MiB.
    pub max_string_bytes: usize,
    /// Most JSON-in-string decodes on one path. Default 4.
    pub max_depth: u32,
    /// Most signals one input yields. Default 100 ([`DEFAULT_MAX_SIGNALS`]): an
    /// EventBridge event is one signal and a Lambda batch at most ten, so more
    /// is a flood (or an attack) that would otherwise cost a store write and a
    /// decision each. The rest are reported in one [`Signal::Truncated`].
    pub max_signals: usize,
    /// Target group ARN for ELBv2 DescribeTargetHealth responses (the response has none).
    pub target_group: Option<String>,
}

impl NormalizeOptions {
    /// Defaults with the given receive time.
    pub fn new(received_at: DateTime<Utc>) -> Self {
        NormalizeOptions {
            received_at,
            max_input_bytes: 6 << 20,
            max_string_bytes: 1 << 20,
            max_depth: 4,
            max_signals: DEFAULT_MAX_SIGNALS,
            target_group: None,
        }
    }
}

/// Why a whole input could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    /// Larger than `max_input_bytes`.
    #[error("input of {size} bytes exceeds the limit of {limit} bytes")]
    Oversized {
        /// Input size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not UTF-8 JSON, truncated, or nested deeper than the parser allows.
    #[error("not JSON: {0}")]
    NotJson(String),
}

/// Normalizes one input (a raw event, an envelope or a batch): at least one
/// signal, at most `max_signals` of them plus a final [`Signal::Truncated`].
pub fn normalize(bytes: &[u8], opts: &NormalizeOptions) -> Result<Vec<Normalized>, SignalError> {
    if bytes.len() > opts.max_input_bytes {
        return Err(SignalError::Oversized {
            size: bytes.len(),
            limit: opts.max_input_bytes,
        });
    }
    // One vectorised UTF-8 check up front; parsing from `str` then skips the
    // per-string check (a tenth of the normalizer's time).
    let text = std::str::from_utf8(bytes).map_err(|e| SignalError::NotJson(e.to_string()))?;
    let value = json::Json::parse(text).map_err(|e| SignalError::NotJson(e.to_string()))?;
    let mut collected = envelope::Collected::default();
    envelope::unwrap(&value, opts, &mut collected);
    let mut out = collected.signals;
    if collected.dropped > 0 {
        out.push(Normalized {
            signal: Signal::Truncated {
                dropped: collected.dropped,
                limit: opts.max_signals,
            },
            path: collected.first_dropped.unwrap_or_default(),
        });
    } else if out.is_empty() {
        out.push(Normalized {
            signal: Signal::Ignored {
                reason: "empty batch".into(),
            },
            path: String::new(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize) -> Vec<u8> {
        let records: Vec<_> = (0..n)
            .map(|i| serde_json::json!({"eventSource": "aws:sqs", "body": format!("plain {i}")}))
            .collect();
        serde_json::to_vec(&serde_json::json!({ "Records": records })).expect("serializes")
    }

    /// Issue 11, item 13: a payload of 150 signals kept every one.
    #[test]
    fn a_payload_over_max_signals_keeps_the_limit_and_reports_the_rest_truncated() {
        let opts = NormalizeOptions::new(Utc::now());
        let out = normalize(&batch(150), &opts).expect("json");
        assert_eq!(out.len(), DEFAULT_MAX_SIGNALS + 1);
        assert!(out[..100].iter().all(|n| n.ignored().is_some()));
        assert_eq!(out[99].path, "Records[99].body");
        assert_eq!(
            out[100].signal,
            Signal::Truncated {
                dropped: 50,
                limit: 100
            }
        );
        assert_eq!(
            out[100].path, "Records[100].body",
            "where the first dropped one was"
        );

        let at_limit = normalize(&batch(100), &opts).expect("json");
        assert_eq!(at_limit.len(), 100);
        assert!(at_limit.iter().all(|n| n.truncated().is_none()));

        let mut small = opts.clone();
        small.max_signals = 2;
        let out = normalize(&batch(3), &small).expect("json");
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].truncated(), Some(1));
    }
}
