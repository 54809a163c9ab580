//! Wires the stages in order for one signal: record the incident (idempotently),
//! let the routed policies decide, record the decision with its provenance; a
//! recovery heals the open incidents of its resource or group and sets their MTTR.
//!
//! The governor and the executors are not wired yet: every decision stays
//! `decided` (dry run) until they are. This is the only module that knows the
//! order of the stages.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::incident::{Incident, Recovery};
use crate::policy::{Decisions, PolicyContext, PolicyRegistry};
use crate::store::{IncidentRecord, LifecycleState, Provenance, Scope, Store, StoreError};

/// What recording one signal did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recorded {
    /// A new incident, decided (or ignored / escalated) and stored.
    New(Box<IncidentRecord>),
    /// The incident's id was already stored: a redelivery, not decided again.
    Duplicate(Box<IncidentRecord>),
    /// Open incidents this recovery healed.
    Healed(Vec<IncidentRecord>),
}

/// Records a new incident and its decision. A duplicate is returned untouched.
pub async fn on_incident(
    store: &dyn Store,
    registry: &PolicyRegistry,
    incident: &Incident,
    context: &PolicyContext,
    now: DateTime<Utc>,
) -> Result<(Option<Decisions>, Recorded), StoreError> {
    let (record, created) = store.create_incident(incident).await?;
    if !created {
        return Ok((None, Recorded::Duplicate(Box::new(record))));
    }
    let decisions = registry.decide(incident, context, now);
    let at = now.max(incident.detected_at);
    let record = match decisions.active.first() {
        None => {
            let note = format!("no active policy handles {}", incident.kind);
            store
                .transition(&incident.id, LifecycleState::Ignored, at, Some(note))
                .await?
        }
        Some(outcome) => {
            let provenance = Provenance {
                policy: outcome.policy.clone(),
                input_hash: incident.input_hash(),
                fuel_used: outcome.fuel_used,
                duration_us: u64::try_from(outcome.duration.as_micros()).unwrap_or(u64::MAX),
                decision: outcome.result.clone().map_err(|e| e.to_string()),
            };
            let record = store
                .record_decision(&incident.id, provenance, Vec::new(), at)
                .await?;
            match &outcome.result {
                Err(e) => {
                    let note = format!("policy {} failed: {e}", outcome.policy.name);
                    store
                        .transition(&incident.id, LifecycleState::Escalated, at, Some(note))
                        .await?
                }
                Ok(_) => record,
            }
        }
    };
    Ok((Some(decisions), Recorded::New(Box::new(record))))
}

/// Heals the open incidents of the recovered resource (or group) that were
/// detected before the recovery was observed; an older recovery closes nothing.
pub async fn on_recovery(store: &dyn Store, recovery: &Recovery) -> Result<Recorded, StoreError> {
    let id = recovery.resource.id.clone();
    let mut healed = Vec::new();
    for scope in [Scope::Resource(id.clone()), Scope::Group(id)] {
        for open in store.open_incidents(&scope).await? {
            if open.incident.detected_at > recovery.observed_at
                || healed
                    .iter()
                    .any(|h: &IncidentRecord| h.incident.id == open.incident.id)
            {
                continue;
            }
            match store
                .transition(
                    &open.incident.id,
                    LifecycleState::Healed,
                    recovery.observed_at,
                    None,
                )
                .await
            {
                Ok(r) => healed.push(r),
                // Another replica closed it first.
                Err(StoreError::IllegalTransition { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(Recorded::Healed(healed))
}
