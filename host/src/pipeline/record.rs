//! Recording a decided incident: the exact input by hash, the acting
//! decision with the others beside it, the reservations of the approved
//! mutating steps (a step that loses a place to a concurrent decision is
//! denied by the rule whose limit was full), the verdicts, the dry-run
//! entries of the actions index and the next lifecycle state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Pipeline, PipelineError, Plan, STORM_KEY};
use crate::decision::{ActionKind, Decision};
use crate::incident::Incident;
use crate::policy::{DecisionOutcome, PolicyContext, PolicyError};
use crate::safety::{Effect, Facts, Judgement, Verdict, lost_race};
use crate::store::{
    ActionRecord, IncidentRecord, LifecycleState, Outcome, Provenance, Reservation, StepRecord,
    StoreError, VerdictRecord,
};

/// How long a decision holds its incident's lease. A decision takes
/// milliseconds; a replica that dies mid-decision frees the incident for the
/// redelivery after this.
pub(super) const LEASE_TTL: Duration = Duration::from_secs(60);

/// A lease owner unique to this process and call. The pid alone is not: in
/// containers every replica's healer is often pid 1, and two replicas with one
/// owner name would both pass `claim`. A random per-process part (from the
/// standard library's randomly keyed hasher) tells them apart.
pub(super) fn lease_owner() -> String {
    use std::hash::{BuildHasher, Hasher};
    static PROCESS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let process = PROCESS.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        format!("{}-{:016x}", std::process::id(), h.finish())
    });
    format!("{process}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

pub(super) fn provenance(outcome: &DecisionOutcome, input_hash: &str) -> Provenance {
    Provenance {
        policy: outcome.policy.clone(),
        input_hash: input_hash.to_owned(),
        fuel_used: outcome.fuel_used,
        duration_us: u64::try_from(outcome.duration.as_micros()).unwrap_or(u64::MAX),
        decision: outcome.result.clone().map_err(|e| e.to_string()),
    }
}

impl Pipeline<'_> {
    /// Decides an incident (held under its lease) and records the result.
    pub(super) async fn decide_and_record(
        &self,
        current: &IncidentRecord,
        facts: Facts,
        context: &PolicyContext,
        now: DateTime<Utc>,
    ) -> Result<(Plan, IncidentRecord), PipelineError> {
        let incident = &current.incident;
        let mut plan = self
            .plan_judged(incident, facts, context, None, now)
            .await?;
        let at = now.max(incident.detected_at);
        let id = &incident.id;
        let Some(outcome) = plan.decisions.acting().cloned() else {
            let note = format!("no active policy handles {}", incident.kind);
            let record = self
                .store
                .transition(id, LifecycleState::Ignored, at, Some(note))
                .await?;
            return Ok((plan, record));
        };
        if let Err(PolicyError::Host(e)) = &outcome.result {
            // Not the policy's fault: leave the incident detected; the
            // redelivered signal resumes it.
            return Err(PipelineError::PolicyHost(e.clone()));
        }
        let (json, hash) = plan.input.encoded();
        self.store.put_policy_input(&hash, &json).await?;
        if let Some(j) = plan.judgement.as_mut() {
            self.reserve(incident, j, 0, &plan.facts, now).await?;
        }
        let also: Vec<Provenance> = plan
            .decisions
            .active
            .iter()
            .filter(|o| o.policy != outcome.policy)
            .chain(&plan.decisions.shadow)
            .map(|o| provenance(o, &hash))
            .collect();
        let verdicts = plan.judgement.as_ref().map_or_else(Vec::new, |j| {
            j.verdicts
                .iter()
                .map(|v| VerdictRecord::of(v, j.dry_run))
                .collect()
        });
        // Where it goes next is written with the decision, in one update: a
        // host that dies right after cannot leave a live incident decided but
        // never acting.
        let next = match (&outcome.result, &plan.judgement) {
            (Err(e), _) => Some((
                LifecycleState::Escalated,
                Some(format!("policy {} failed: {e}", outcome.policy.name)),
            )),
            (Ok(decision), Some(j)) => next_state(j, decision),
            (Ok(_), None) => None,
        };
        let record = self
            .store
            .record_decisions(
                current,
                provenance(&outcome, &hash),
                also,
                verdicts,
                at,
                next,
            )
            .await?;
        if let (Ok(decision), Some(j)) = (&outcome.result, &plan.judgement) {
            self.record_planned(&record, decision, j, at).await?;
            if j.storm {
                plan.storm_notice = self.claim_storm_notice(incident, now).await?;
            }
        }
        Ok((plan, record))
    }

    /// Reserves the places of every approved mutating step, in order; a step
    /// whose limit is full (a concurrent decision took the last place) is
    /// denied by that limit's rule.
    pub(super) async fn reserve(
        &self,
        incident: &Incident,
        j: &mut Judgement,
        step_base: usize,
        facts: &Facts,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for v in j.verdicts.iter_mut() {
            let claims = self.governor.claims(incident, v, step_base, facts);
            if claims.is_empty() {
                continue;
            }
            if let Reservation::Full(limit) = self.store.reserve(&claims, now).await? {
                tracing::info!(incident = %incident.id, step = v.step, limit = ?limit,
                    "Step lost its reservation to a concurrent decision.");
                v.verdict = lost_race(&limit);
            }
        }
        j.storm = j
            .verdicts
            .iter()
            .any(|v| v.verdict.effect() == Effect::Storm);
        Ok(())
    }

    /// The approved steps go into the actions index at decision time, on the
    /// target and group the governor resolved, so later verdicts see them at
    /// once (cooldowns, rates, blast radius, in flight): as `dry-run` in dry
    /// run (what live mode would have done), as `running` in live mode until
    /// the step's execution replaces the entry with how it ended.
    async fn record_planned(
        &self,
        record: &IncidentRecord,
        decision: &Decision,
        j: &Judgement,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let result = if j.dry_run {
            Outcome::DryRun
        } else {
            Outcome::Running
        };
        for v in j.verdicts.iter().filter(|v| v.verdict.is_approved()) {
            let Some(step) = decision.steps.get(v.step) else {
                continue;
            };
            if !j.dry_run && !step.action.kind().is_mutating() {
                continue;
            }
            let planned = StepRecord {
                ended_at: j.dry_run.then_some(at),
                result: result.clone(),
                ..StepRecord::started(v.step, step.action.clone(), at)
            };
            let action = ActionRecord::of(record, &planned).judged(v);
            self.store.put_action(&action).await?;
        }
        Ok(())
    }

    /// One storm notice per group per blast window, whichever replica gets there first.
    async fn claim_storm_notice(
        &self,
        incident: &Incident,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let Some(group) = &incident.group else {
            return Ok(false);
        };
        let key = format!("{STORM_KEY}{}", group.id);
        let window =
            chrono::Duration::minutes(i64::from(self.governor.config().blast_window_minutes));
        let (last, version) = self.store.governor_get(&key).await?;
        let recent = last
            .as_deref()
            .and_then(|s| s.parse::<DateTime<Utc>>().ok())
            .is_some_and(|t| now - t < window);
        if recent {
            return Ok(false);
        }
        self.store
            .governor_cas(&key, &now.to_rfc3339(), version)
            .await
    }
}

/// Where a judged incident goes next: escalated when the loop breaker tripped,
/// denied when every mutating step was; in live mode, acting when steps were
/// approved and none waits for a human; else it stays decided.
fn next_state(j: &Judgement, decision: &Decision) -> Option<(LifecycleState, Option<String>)> {
    if j.escalate {
        return Some((
            LifecycleState::Escalated,
            Some("loop breaker tripped: stop acting, humans take over".to_owned()),
        ));
    }
    if let Some(n) = denied_note(j, decision) {
        return Some((LifecycleState::Denied, Some(n)));
    }
    let pending = j
        .verdicts
        .iter()
        .any(|v| matches!(v.verdict, Verdict::PendingApproval { .. }));
    let executable = executable(j, decision);
    // A plan with nothing to execute but a verify spec is verified live too
    // (a crashed service task the scheduler replaces).
    let work = executable || decision.verify.is_some();
    (!j.dry_run && !pending && work).then_some((LifecycleState::Acting, None))
}

/// Whether the governor approved a step of the plan that does something.
pub(super) fn executable(j: &Judgement, decision: &Decision) -> bool {
    j.verdicts.iter().any(|v| {
        v.verdict.is_approved()
            && decision
                .steps
                .get(v.step)
                .is_some_and(|s| s.action.kind() != ActionKind::NoOp)
    })
}

/// When the plan proposed mutating steps and the governor approved none of them
/// (and no human approval is pending), the incident is denied; the note lists why.
fn denied_note(j: &Judgement, decision: &Decision) -> Option<String> {
    let mutating: Vec<_> = j
        .verdicts
        .iter()
        .filter(|v| {
            decision
                .steps
                .get(v.step)
                .is_some_and(|s| s.action.kind().is_mutating())
        })
        .collect();
    if mutating.is_empty()
        || mutating
            .iter()
            .any(|v| !matches!(v.verdict, Verdict::Denied { .. }))
    {
        return None;
    }
    let reasons: Vec<String> = mutating
        .iter()
        .filter_map(|v| match &v.verdict {
            Verdict::Denied { rule, reason, .. } => Some(format!("{rule}: {reason}")),
            _ => None,
        })
        .collect();
    Some(reasons.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_owners_are_unique_per_call_and_not_just_the_pid() {
        let (a, b) = (lease_owner(), lease_owner());
        assert_ne!(a, b);
        let pid = std::process::id().to_string();
        // pid, a 64-bit random process token, the call counter.
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(parts.len(), 3, "{a}");
        assert_eq!(parts[0], pid);
        assert_eq!(parts[1].len(), 16, "{a}");
        assert_eq!(parts[1], b.split('-').nth(1).unwrap_or_default());
    }
}
