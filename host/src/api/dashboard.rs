//! The dashboard: a small static app embedded in the binary (`/` and
//! `/ui/*`), and `GET /overview`, the figures its first screen shows in one
//! read.
//!
//! The page calls the read API like any client (with the token the viewer
//! enters, kept in the tab's session storage) and the admin routes for
//! changes; it loads nothing from outside the host (a `default-src 'self'`
//! content security policy says so to the browser).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, Caller, ErrorCode};
use crate::metrics::Counter;
use crate::safety::KillSwitch;
use crate::store::aggregates::{self, AggCell, TrendPoint};
use crate::store::{GroupBy, IncidentRecord, LifecycleState, StatsRow};

/// The embedded assets: (name, content type, body).
const ASSETS: [(&str, &str, &str); 3] = [
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("ui/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("ui/app.css"),
    ),
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("ui/index.html"),
    ),
];

/// What every asset is served with: nothing from elsewhere, no framing, no sniffing.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'none'";

fn asset(name: &str) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(CSP),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            *body,
        )
            .into_response(),
        None => ApiError::new(ErrorCode::NotFound, format!("no asset {name}")).into_response(),
    }
}

/// `GET /`: the page (open: it holds no data; the data routes check the caller).
pub(super) async fn index() -> Response {
    asset("index.html")
}

/// `GET /ui/{name}`: a script or style sheet of the page.
pub(super) async fn ui(Path(name): Path<String>) -> Response {
    asset(&name)
}

/// `GET /ui/meta`: what the page needs before any data (open, like
/// `/health`, which says the mode too).
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct Meta {
    /// `live` or `dry-run`.
    mode: &'static str,
    /// Every incident kind, for the filters.
    kinds: Vec<&'static str>,
    /// Every lifecycle state.
    states: Vec<&'static str>,
}

fn mode(api: &ApiState) -> &'static str {
    if api.health.dry_run {
        "dry-run"
    } else {
        "live"
    }
}

pub(super) async fn meta(State(api): State<ApiState>) -> Json<Meta> {
    Json(Meta {
        mode: mode(&api),
        kinds: crate::incident::IncidentKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect(),
        states: LifecycleState::ALL.iter().map(|s| s.as_str()).collect(),
    })
}

/// `GET /overview` parameters.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(super) struct OverviewQuery {
    /// Window start (whole UTC days) [default: 7 days ago].
    since: Option<DateTime<Utc>>,
}

/// The window `/overview` covers without `since`.
const DEFAULT_DAYS: i64 = 7;

/// Incidents still open, by state.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct OpenNow {
    detected: usize,
    decided: usize,
    acting: usize,
    verifying: usize,
    total: usize,
}

/// The window's figures, every kind together.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct Window {
    /// First day covered (UTC).
    since: DateTime<Utc>,
    /// Incidents detected in the window (closed and open).
    count: u64,
    closed: u64,
    healed: u64,
    escalated: u64,
    /// Denied or ignored: closed neither healed nor escalated.
    other: u64,
    open: usize,
    mttr_p50_ms: Option<i64>,
    mttr_p90_ms: Option<i64>,
}

/// One series of a counter this replica keeps.
#[derive(Debug, Serialize)]
pub(super) struct Series {
    labels: BTreeMap<&'static str, String>,
    value: u64,
}

/// What this replica counted since it started (not the fleet's: Prometheus
/// sums those).
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct Replica {
    started_at: DateTime<Utc>,
    actions: Vec<Series>,
    denials: Vec<Series>,
    signals: Vec<Series>,
    decisions: Vec<Series>,
}

/// `GET /overview`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct Overview {
    now: DateTime<Utc>,
    /// `live` or `dry-run`.
    mode: &'static str,
    kill_switch: KillSwitch,
    open: OpenNow,
    window: Window,
    by_kind: Vec<StatsRow>,
    by_healer: Vec<StatsRow>,
    trend: Vec<TrendPoint>,
    replica: Replica,
}

fn series(c: Counter) -> Vec<Series> {
    crate::metrics::metrics()
        .series(c)
        .into_iter()
        .map(|(labels, value)| Series {
            labels: labels.into_iter().collect(),
            value,
        })
        .collect()
}

fn open_now(open: &[IncidentRecord]) -> OpenNow {
    let mut o = OpenNow {
        total: open.len(),
        ..OpenNow::default()
    };
    for r in open {
        match r.state {
            LifecycleState::Detected => o.detected += 1,
            LifecycleState::Decided => o.decided += 1,
            LifecycleState::Acting => o.acting += 1,
            LifecycleState::Verifying => o.verifying += 1,
            _ => {}
        }
    }
    o
}

fn window(since: DateTime<Utc>, cells: &[(String, AggCell)], open: usize) -> Window {
    let mut all = AggCell::default();
    for (_, c) in cells {
        all.merge(c);
    }
    Window {
        since,
        count: all.closed + open as u64,
        closed: all.closed,
        healed: all.healed,
        escalated: all.escalated,
        other: all.closed.saturating_sub(all.healed + all.escalated),
        open,
        mttr_p50_ms: all.percentile(0.5),
        mttr_p90_ms: all.percentile(0.9),
    }
}

/// `GET /overview[?since=]`: the open incidents, the window's totals, MTTR
/// by kind and by who healed, the daily trend, and this replica's counters.
/// Reads the aggregates and the open incidents only, never every record.
pub(super) async fn overview(
    State(api): State<ApiState>,
    caller: Caller,
    query: Result<Query<OverviewQuery>, QueryRejection>,
) -> Result<Json<Overview>, ApiError> {
    caller.read(api.token.as_ref())?;
    let Query(q) = query?;
    let since = q
        .since
        .unwrap_or_else(|| Utc::now() - chrono::Duration::days(DEFAULT_DAYS));
    let from = aggregates::first_day(since);
    let start = from.and_hms_opt(0, 0, 0).map_or(since, |t| t.and_utc());
    let store = api.store()?;
    let (open, kinds, healers, kill_switch) = tokio::try_join!(
        async { Ok(store.all_open().await?) },
        async { Ok(store.aggregates(GroupBy::Kind, from).await?) },
        async { Ok(store.aggregates(GroupBy::Healer, from).await?) },
        async { Ok::<_, ApiError>(crate::safety::kill_switch_flag(store.as_ref()).await?) },
    )?;
    let in_window: Vec<IncidentRecord> = open
        .iter()
        .filter(|r| r.incident.detected_at >= start)
        .cloned()
        .collect();
    let flat = |cells: &[(chrono::NaiveDate, String, AggCell)]| -> Vec<(String, AggCell)> {
        cells
            .iter()
            .map(|(_, k, c)| (k.clone(), c.clone()))
            .collect()
    };
    let (kinds_flat, healers_flat) = (flat(&kinds), flat(&healers));
    Ok(Json(Overview {
        now: Utc::now(),
        mode: mode(&api),
        kill_switch,
        open: open_now(&open),
        window: window(start, &healers_flat, in_window.len()),
        by_kind: aggregates::rows(GroupBy::Kind, &kinds_flat, &in_window).rows,
        by_healer: aggregates::rows(GroupBy::Healer, &healers_flat, &in_window).rows,
        trend: aggregates::trend(&healers),
        replica: Replica {
            started_at: api.health.started_at,
            actions: series(Counter::Actions),
            denials: series(Counter::Denials),
            signals: series(Counter::Signals),
            decisions: series(Counter::Decisions),
        },
    }))
}
