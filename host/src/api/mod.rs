//! The HTTP API. For now: `GET /health`, which the ECS task definition's health
//! check and load balancers probe. Answers 200 with what the service is doing
//! while it runs; 503 once it is shutting down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Counters and facts `/health` reports; shared with the ingestion loop.
#[derive(Debug)]
pub struct Health {
    /// When the service started.
    pub started_at: DateTime<Utc>,
    /// Loaded policies (`name@version`).
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
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Report<'a> {
    status: &'static str,
    started_at: DateTime<Utc>,
    policies: &'a [String],
    dry_run: bool,
    queue: Option<&'a str>,
    processed: u64,
    rejected: u64,
    failures: u64,
    truncated: u64,
}

async fn health(State(h): State<Arc<Health>>) -> impl IntoResponse {
    let stopping = h.stopping.load(Ordering::Relaxed);
    let report = Report {
        status: if stopping { "stopping" } else { "ok" },
        started_at: h.started_at,
        policies: &h.policies,
        dry_run: h.dry_run,
        queue: h.queue.as_deref(),
        processed: h.processed.load(Ordering::Relaxed),
        rejected: h.rejected.load(Ordering::Relaxed),
        failures: h.failures.load(Ordering::Relaxed),
        truncated: h.truncated.load(Ordering::Relaxed),
    };
    let code = if stopping {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(serde_json::to_value(report).unwrap_or_default()))
}

/// The router.
pub fn router(health_state: Arc<Health>) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(health_state)
}
