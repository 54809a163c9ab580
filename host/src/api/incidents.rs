//! The read API: `GET /incidents` (filtered, cursor-paged), `GET
//! /incidents/{id}` (an incident's whole life) and `GET /stats` (MTTR by
//! kind, policy, action or healer).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::cursor::Cursors;
use super::{ApiError, ApiState, Caller, ErrorCode};
use crate::incident::{IncidentId, IncidentKind};
use crate::store::{GroupBy, IncidentRecord, LifecycleState, ListFilter, Stats};

/// Default and largest page sizes.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// `GET /incidents` filters.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(super) struct IncidentQuery {
    /// Only this lifecycle state.
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<LifecycleState>,
    /// Only this incident kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<IncidentKind>,
    /// Only incidents of this resource (or group) id.
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<String>,
    /// Only incidents this policy decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    /// Detected at or after.
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<DateTime<Utc>>,
    /// Detected before.
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<DateTime<Utc>>,
    /// Page size (default 50, at most 500).
    #[serde(skip_serializing)]
    limit: Option<usize>,
    /// The `next` of the previous page.
    #[serde(skip_serializing)]
    cursor: Option<String>,
}

impl IncidentQuery {
    /// The filters in a canonical form, which a cursor is bound to.
    fn canonical(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn keeps(&self, r: &IncidentRecord) -> bool {
        let resource = |id: &str| {
            r.incident.resource.id == id || r.incident.group.as_ref().is_some_and(|g| g.id == id)
        };
        self.state.is_none_or(|s| r.state == s)
            && self.resource.as_deref().is_none_or(resource)
            && self
                .policy
                .as_deref()
                .is_none_or(|p| r.provenance.as_ref().is_some_and(|v| v.policy.name == p))
            && self.until.is_none_or(|u| r.incident.detected_at < u)
    }
}

/// One page. A page may hold fewer than `limit` incidents (even none) while
/// `next` is set: the filters the store cannot apply are applied to each of
/// its pages. Follow `next` until it is null.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct IncidentPage {
    items: Vec<IncidentRecord>,
    next: Option<String>,
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::new(ErrorCode::BadRequest, e.body_text())
    }
}

async fn cursors(api: &ApiState) -> Result<&Cursors, ApiError> {
    let store = api.store()?;
    api.cursors
        .get_or_try_init(|| Cursors::shared(store.as_ref()))
        .await
        .map_err(ApiError::from)
}

pub(super) async fn list(
    State(api): State<ApiState>,
    caller: Caller,
    query: Result<Query<IncidentQuery>, QueryRejection>,
) -> Result<Json<IncidentPage>, ApiError> {
    caller.read(api.token.as_ref())?;
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let canonical = q.canonical();
    let cursors = cursors(&api).await?;
    let token = match &q.cursor {
        Some(c) => Some(cursors.open(&canonical, c).ok_or_else(|| {
            ApiError::new(
                ErrorCode::BadRequest,
                "invalid cursor: not one this service issued for these filters",
            )
        })?),
        None => None,
    };
    let filter = ListFilter {
        open: q.state.is_some_and(|s| !s.is_terminal()),
        kind: q.kind,
        since: q.since,
    };
    let page = api.store()?.list(&filter, token.as_deref(), limit).await?;
    Ok(Json(IncidentPage {
        items: page.items.into_iter().filter(|r| q.keeps(r)).collect(),
        next: page.next.map(|t| cursors.sign(&canonical, &t)),
    }))
}

pub(super) async fn get(
    State(api): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<IncidentRecord>, ApiError> {
    caller.read(api.token.as_ref())?;
    api.store()?
        .get(&IncidentId::from_stored(&id))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no incident {id}")))
}

/// `GET /stats` parameters.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(super) struct StatsQuery {
    /// Group by `kind` (default), `policy`, `action` or `healer`.
    #[serde(default)]
    by: GroupBy,
    /// Incidents detected at or after (whole UTC days) [default: 30 days ago].
    since: Option<DateTime<Utc>>,
}

/// The window `GET /stats` covers without `since`.
const DEFAULT_STATS_DAYS: i64 = 30;

pub(super) async fn stats(
    State(api): State<ApiState>,
    caller: Caller,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Json<Stats>, ApiError> {
    caller.read(api.token.as_ref())?;
    let Query(q) = query?;
    let since = q
        .since
        .unwrap_or_else(|| Utc::now() - chrono::Duration::days(DEFAULT_STATS_DAYS));
    // From the aggregates kept as incidents close: never every record.
    Ok(Json(api.store()?.stats_aggregated(q.by, since).await?))
}

/// `GET /stats/shadow` parameters.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(super) struct ShadowQuery {
    /// The policy whose shadow version is compared with its active one.
    policy: String,
    /// Incidents detected at or after [default: 7 days ago].
    since: Option<DateTime<Utc>>,
    /// Judge both plans with the service's governor and operator facts
    /// against the store at each decision (one store read per incident).
    #[serde(default)]
    verdicts: bool,
}

/// Differing cases `GET /stats/shadow` lists at most.
const MAX_SHADOW_CASES: usize = 100;

/// `GET /stats/shadow`.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct ShadowStats {
    /// Agreement in numbers (`same` of `total`, by kind).
    summary: crate::replay::Summary,
    /// The incidents where the shadow's plan differs, newest last (at most 100).
    differing: Vec<crate::replay::CaseReport>,
}

/// How a policy's shadow version agrees with its active one on the
/// incidents both decided (what `healer shadow report` prints). Reads the
/// window's records.
pub(super) async fn shadow(
    State(api): State<ApiState>,
    caller: Caller,
    query: Result<Query<ShadowQuery>, QueryRejection>,
) -> Result<Json<ShadowStats>, ApiError> {
    caller.read(api.token.as_ref())?;
    let Query(q) = query?;
    if q.verdicts {
        // One store read per incident of a window the caller picks: admin.
        caller.admin(api.token.as_ref())?;
    }
    let selection = crate::replay::Selection {
        since: Some(
            q.since
                .unwrap_or_else(|| Utc::now() - chrono::Duration::days(7)),
        ),
        ..crate::replay::Selection::default()
    };
    let judge = match (q.verdicts, &api.judge) {
        (false, _) => None,
        (true, Some(j)) => Some((&j.0, &j.1)),
        (true, None) => {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "this service has no governor to judge with",
            ));
        }
    };
    let (cases, summary) =
        crate::replay::shadow_report(api.store()?.as_ref(), &selection, &q.policy, judge).await?;
    let mut differing: Vec<_> = cases
        .into_iter()
        .filter(|c| c.comparison != crate::replay::Comparison::Same)
        .collect();
    let drop = differing.len().saturating_sub(MAX_SHADOW_CASES);
    differing.drain(..drop);
    Ok(Json(ShadowStats { summary, differing }))
}

async fn answer(
    api: &ApiState,
    caller: &Caller,
    id: &str,
    answer: crate::pipeline::Answer,
) -> Result<Json<IncidentRecord>, ApiError> {
    caller.admin(api.token.as_ref())?;
    let approvals = api.approvals.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "this service does not answer approvals",
        )
    })?;
    let record = approvals
        .answer(&IncidentId::from_stored(id), answer, &caller.who())
        .await?;
    Ok(Json(record))
}

/// `POST /incidents/{id}/approve`: the held steps may run (recorded with who and when).
pub(super) async fn approve(
    State(api): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<IncidentRecord>, ApiError> {
    answer(&api, &caller, &id, crate::pipeline::Answer::Approve).await
}

/// `POST /incidents/{id}/deny`: the held steps must not run.
pub(super) async fn deny(
    State(api): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<IncidentRecord>, ApiError> {
    answer(&api, &caller, &id, crate::pipeline::Answer::Deny).await
}
