//! The governor on replayed plans (`healer replay --verdicts`): the recorded
//! plan and the candidate's, each judged by the same governor against the
//! store as it was when the incident was decided (the actions started
//! before the input's virtual clock, in the governor's window), so what the
//! candidate would have had denied is set beside what the recorded plan
//! would have, under the same limits and facts.
//!
//! What the store cannot give back is left out, and said so: resource
//! facts are the operator's (`--facts`), not what the AWS APIs said then,
//! and the kill switch is taken as off (the plans are judged, not the
//! switch).

use chrono::{DateTime, Utc};

use super::{Case, CaseReport, Pair};
use crate::decision::{ActionKind, Decision};
use crate::safety::{Facts, Governor, History, KILL_SWITCH_KEY, StepVerdict, VerdictKind};
use crate::store::{Store, StoreError};

/// Judges the recorded and the candidate plan of every case, filling each
/// report's `verdicts`. `proposes` is the candidate's declared action kinds
/// (`None`: as if it declared what it proposed, for a shadow version whose
/// metadata is not at hand); the recorded plan is judged as if its version
/// declared what it proposed (an older version's metadata is not kept).
/// One store read per case.
pub async fn judge(
    store: &dyn Store,
    governor: &Governor,
    facts: &Facts,
    proposes: Option<&[ActionKind]>,
    cases: &[Case],
    reports: &mut [CaseReport],
) -> Result<(), StoreError> {
    for (case, report) in cases.iter().zip(reports.iter_mut()) {
        judge_one(store, governor, facts, proposes, case, report).await?;
    }
    Ok(())
}

/// [`judge`] of one case.
pub(super) async fn judge_one(
    store: &dyn Store,
    governor: &Governor,
    facts: &Facts,
    proposes: Option<&[ActionKind]>,
    case: &Case,
    report: &mut CaseReport,
) -> Result<(), StoreError> {
    let recorded = case.recorded.decision.as_ref().ok();
    let candidate = report.plan.as_ref();
    if recorded.is_none_or(|d| d.steps.is_empty()) && candidate.is_none_or(|d| d.steps.is_empty()) {
        return Ok(());
    }
    let now = case.input.now;
    let history = history_at(store, governor, case, now).await?;
    let incident = &case.input.incident;
    let judged = |d: Option<&Decision>, declared: &[ActionKind]| -> Vec<StepVerdict> {
        d.map(|d| {
            governor
                .judge(incident, d, declared, facts, &history, now)
                .verdicts
        })
        .unwrap_or_default()
    };
    let own = |d: Option<&Decision>| -> Vec<ActionKind> {
        d.map(|d| d.steps.iter().map(|s| s.action.kind()).collect())
            .unwrap_or_default()
    };
    let declared = proposes.map_or_else(|| own(candidate), <[ActionKind]>::to_vec);
    report.verdicts = Some(Pair {
        recorded: judged(recorded, &own(recorded)),
        candidate: judged(candidate, &declared),
    });
    Ok(())
}

/// The governor's history of one case as the store held it at `now`.
async fn history_at(
    store: &dyn Store,
    governor: &Governor,
    case: &Case,
    now: DateTime<Utc>,
) -> Result<History, StoreError> {
    let incident = &case.input.incident;
    let mut state = store
        .decision_state(
            &incident.resource.id,
            incident.group.as_ref().map(|g| g.id.as_str()),
            KILL_SWITCH_KEY,
            now - governor.config().history_window(),
        )
        .await?;
    state.actions.retain(|a| a.started_at < now);
    // An action still running at `now` was running then, however it ended.
    for a in &mut state.actions {
        if a.ended_at.is_some_and(|e| e > now) {
            a.ended_at = None;
            a.result = crate::store::Outcome::Running;
        }
    }
    state.kill_switch = None;
    Ok(History::from_state(incident, &state))
}

/// Denied (or held) steps of a list of verdicts.
pub fn denied(verdicts: &[StepVerdict]) -> usize {
    verdicts
        .iter()
        .filter(|v| v.verdict.kind() != VerdictKind::Approved)
        .count()
}
