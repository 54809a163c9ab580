//! `GET /health`, which the ECS task definition's health check and load
//! balancers probe. Answers 200 with what the service is doing
//! while it runs; 503 once it is shutting down, when the ingestion loop has
//! ended, or when it has not completed a poll for longer than `stuck_after`
//! (a dead consumer is a dead service: ECS replaces the task).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Counters and facts `/health` reports; shared with the ingestion loop.
#[derive(Debug)]
pub struct Health {
    /// When the service started.
    pub started_at: DateTime<Utc>,
    /// Policies loaded at start (`name@version`); `/health` lists the ones
    /// deciding now when the API has the catalog.
    pub policies: Vec<String>,
    /// Dry run (executes nothing).
    pub dry_run: bool,
    /// The SQS queue polled, if any.
    pub queue: Option<String>,
    /// Messages recorded and acknowledged.
    pub processed: AtomicU64,
    /// Messages left for redelivery / the dead-letter queue.
    pub rejected: AtomicU64,
    /// Failed receives or records (store or SQS unavailable).
    pub failures: AtomicU64,
    /// Signals dropped past the per-payload cap (`HEALER_MAX_SIGNALS_PER_PAYLOAD`).
    pub truncated: AtomicU64,
    /// Set when shutdown began.
    pub stopping: AtomicBool,
    /// Set when the ingestion loop ended (it only ends on shutdown).
    pub ingestion_ended: AtomicBool,
    /// When the last receive from the queue completed, ms since the epoch
    /// (0: never).
    last_poll_ms: AtomicI64,
    /// How long without a completed poll counts as stuck.
    pub stuck_after: Duration,
}

impl Health {
    /// A fresh report.
    pub fn new(policies: Vec<String>, dry_run: bool, queue: Option<String>) -> Self {
        Health {
            started_at: Utc::now(),
            policies,
            dry_run,
            queue,
            processed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            truncated: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            ingestion_ended: AtomicBool::new(false),
            last_poll_ms: AtomicI64::new(0),
            stuck_after: DEFAULT_STUCK_AFTER,
        }
    }

    /// Records a completed receive from the queue (with or without messages).
    pub fn polled(&self, at: DateTime<Utc>) {
        self.last_poll_ms
            .store(at.timestamp_millis(), Ordering::Relaxed);
    }

    /// When the last receive completed.
    pub fn last_poll(&self) -> Option<DateTime<Utc>> {
        match self.last_poll_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => DateTime::from_timestamp_millis(ms),
        }
    }

    /// What the service is doing, judged at `now`.
    pub fn status(&self, now: DateTime<Utc>) -> HealthStatus {
        if self.stopping.load(Ordering::Relaxed) {
            return HealthStatus::Stopping;
        }
        if self.queue.is_none() {
            return HealthStatus::Ok;
        }
        if self.ingestion_ended.load(Ordering::Relaxed) {
            return HealthStatus::IngestionEnded;
        }
        let since = self.last_poll().unwrap_or(self.started_at);
        let stuck = chrono::Duration::from_std(self.stuck_after).unwrap_or(chrono::Duration::MAX);
        if now - since > stuck {
            HealthStatus::Stuck
        } else {
            HealthStatus::Ok
        }
    }
}

/// Default time without a completed poll after which `/health` says stuck:
/// six long polls of 20 s.
pub const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(120);

/// What `/health` says the service is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthStatus {
    /// Serving and polling.
    Ok,
    /// Shutting down.
    Stopping,
    /// The ingestion loop ended while the service runs.
    IngestionEnded,
    /// No poll completed within `stuck_after`.
    Stuck,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Report<'a> {
    status: HealthStatus,
    last_poll: Option<DateTime<Utc>>,
    started_at: DateTime<Utc>,
    policies: Vec<String>,
    dry_run: bool,
    queue: Option<&'a str>,
    processed: u64,
    rejected: u64,
    failures: u64,
    truncated: u64,
}

/// `GET /health`: the policies listed are the ones deciding now (after swaps).
pub(super) async fn health(State(api): State<super::ApiState>) -> impl IntoResponse {
    let h = &api.health;
    let status = h.status(Utc::now());
    let policies = match &api.catalog {
        Some(c) => c
            .registry()
            .roles()
            .values()
            .filter_map(|(active, _)| active.as_ref())
            .map(|p| format!("{}@{}", p.id.name, p.id.version))
            .collect(),
        None => h.policies.clone(),
    };
    let report = Report {
        status,
        last_poll: h.last_poll(),
        started_at: h.started_at,
        policies,
        dry_run: h.dry_run,
        queue: h.queue.as_deref(),
        processed: h.processed.load(Ordering::Relaxed),
        rejected: h.rejected.load(Ordering::Relaxed),
        failures: h.failures.load(Ordering::Relaxed),
        truncated: h.truncated.load(Ordering::Relaxed),
    };
    let code = match status {
        HealthStatus::Ok => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, Json(serde_json::to_value(report).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> Health {
        Health::new(Vec::new(), true, Some("q".into()))
    }

    #[test]
    fn a_consumer_that_stopped_polling_is_stuck() {
        let h = health();
        let t0 = h.started_at;
        assert_eq!(
            h.status(t0 + chrono::Duration::seconds(60)),
            HealthStatus::Ok
        );
        assert_eq!(
            h.status(t0 + chrono::Duration::seconds(121)),
            HealthStatus::Stuck
        );
        h.polled(t0 + chrono::Duration::seconds(100));
        assert_eq!(
            h.status(t0 + chrono::Duration::seconds(121)),
            HealthStatus::Ok
        );
        assert_eq!(
            h.status(t0 + chrono::Duration::seconds(221)),
            HealthStatus::Stuck
        );
    }

    #[test]
    fn a_dead_consumer_is_a_dead_service() {
        let h = health();
        h.ingestion_ended.store(true, Ordering::Relaxed);
        assert_eq!(h.status(h.started_at), HealthStatus::IngestionEnded);
        h.stopping.store(true, Ordering::Relaxed);
        assert_eq!(h.status(h.started_at), HealthStatus::Stopping);
        let http_only = Health::new(Vec::new(), true, None);
        assert_eq!(
            http_only.status(http_only.started_at + chrono::Duration::days(1)),
            HealthStatus::Ok
        );
    }
}
