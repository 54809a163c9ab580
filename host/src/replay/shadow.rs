//! The shadow report: a policy's shadow version decided beside its active
//! version on every incident both handled (recorded, never executed); how
//! often the two agree and, where they do not, how.

use crate::policy::PolicyId;
use crate::store::{IncidentRecord, Provenance, Store, StoreError};

use super::{Case, CaseReport, Pair, Selection, Skipped, Summary, compare, scan};
use crate::policy::PolicyInput;
use crate::safety::{Facts, Governor};

/// Judges every report whose active decision's input the store holds.
async fn judge(
    store: &dyn Store,
    governor: &Governor,
    facts: &Facts,
    active: &[(Provenance, crate::incident::IncidentKind)],
    reports: &mut [CaseReport],
) -> Result<(), StoreError> {
    let mut hashes: Vec<String> = active.iter().map(|(p, _)| p.input_hash.clone()).collect();
    hashes.sort_unstable();
    hashes.dedup();
    let mut inputs = std::collections::BTreeMap::new();
    for chunk in hashes.chunks(super::INPUTS_PER_READ) {
        for (hash, json) in store.policy_inputs(chunk).await? {
            if let Ok(input) = serde_json::from_str::<PolicyInput>(&json) {
                inputs.insert(hash, input);
            }
        }
    }
    for ((recorded, kind), report) in active.iter().zip(reports.iter_mut()) {
        let Some(input) = inputs.get(&recorded.input_hash) else {
            continue;
        };
        let case = Case {
            id: report.incident.clone(),
            kind: *kind,
            recorded: recorded.clone(),
            input: input.clone(),
            healed_ms: None,
        };
        super::verdicts::judge_one(store, governor, facts, None, &case, report).await?;
    }
    Ok(())
}

/// Sets the shadow decisions of `name` beside its active decisions on the
/// incidents `selection` picks. The summary's candidate is the newest
/// shadow version seen; `skipped.not-decided-by` counts the incidents
/// without both.
///
/// With `verdicts`, the governor judges the active and the shadow plan of
/// each incident alike, against the store at its decision (see
/// [`super::judge_verdicts`]): what the shadow would have had denied.
pub async fn shadow_report(
    store: &dyn Store,
    selection: &Selection,
    name: &str,
    verdicts: Option<(&Governor, &Facts)>,
) -> Result<(Vec<CaseReport>, Summary), StoreError> {
    let mut reports = Vec::new();
    let mut kinds = Vec::new();
    let mut skipped = Skipped::default();
    let mut newest: Option<(chrono::DateTime<chrono::Utc>, PolicyId)> = None;
    scan(store, selection, |record| match pair(&record, name) {
        Some((active, shadow)) => {
            let at = record.incident.detected_at;
            if newest.as_ref().is_none_or(|(t, _)| at >= *t) {
                newest = Some((at, shadow.policy.clone()));
            }
            kinds.push((active.clone(), record.incident.kind));
            reports.push(report(&record, active, shadow));
        }
        None => skipped.not_decided_by += 1,
    })
    .await?;
    if let Some((governor, facts)) = verdicts {
        judge(store, governor, facts, &kinds, &mut reports).await?;
    }
    // The store lists newest first; the report reads oldest first.
    reports.reverse();
    let candidate = newest.map_or_else(
        || PolicyId {
            name: name.to_owned(),
            version: String::new(),
            sha256: String::new(),
        },
        |(_, id)| id,
    );
    let summary = Summary::of(&candidate, &reports, skipped, std::time::Duration::ZERO);
    Ok((reports, summary))
}

/// The active decision of `name` on the incident (the first of its name
/// recorded: actives are recorded before shadows) and a shadow's (a later
/// one of another version).
fn pair<'r>(record: &'r IncidentRecord, name: &str) -> Option<(&'r Provenance, &'r Provenance)> {
    let mut of_name = record
        .provenance
        .iter()
        .chain(record.also_decided.iter())
        .filter(|p| p.policy.name == name);
    let active = of_name.next()?;
    let shadow = of_name.find(|p| p.policy.sha256 != active.policy.sha256)?;
    Some((active, shadow))
}

fn report(record: &IncidentRecord, active: &Provenance, shadow: &Provenance) -> CaseReport {
    CaseReport {
        incident: record.incident.id.clone(),
        kind: record.incident.kind,
        input_hash: active.input_hash.clone(),
        recorded: active.policy.clone(),
        comparison: compare(&active.decision, &shadow.decision),
        deterministic: None,
        fuel: Pair {
            recorded: active.fuel_used,
            candidate: shadow.fuel_used,
        },
        duration_us: Pair {
            recorded: active.duration_us,
            candidate: shadow.duration_us,
        },
        plan: shadow.decision.as_ref().ok().cloned(),
        recorded_mttr_ms: None,
        mttr_ms: None,
        verdicts: None,
    }
}
