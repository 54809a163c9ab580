//! Asking the policy again when verification fails: the ladder. The policy
//! decides anew on the same incident, with what was already done in its
//! context (its `last-actions` list this incident's steps and their
//! outcomes) and two host-provided config values, `healer.attempt` (2 for
//! the first retry) and `healer.verify-seen` (what verification saw), so it
//! can climb: reboot, then replace. The new plan is judged by the governor
//! like any other (the loop breaker and cooldowns count the earlier rounds'
//! actions), its places are reserved, and it becomes the incident's next
//! round; the earlier one is kept in `rounds`.

use chrono::Utc;

use super::act::Worker;
use super::record::{executable, provenance};
use crate::decision::Decision;
use crate::safety::{Facts, Judgement, Verdict};
use crate::store::{ActionRecord, IncidentRecord, StepRecord, StoreError, VerdictRecord};

/// Config key of the attempt number the policy is deciding (2, 3, …).
pub const ATTEMPT_KEY: &str = "healer.attempt";
/// Config key of what verification saw when the last attempt's deadline passed.
pub const VERIFY_SEEN_KEY: &str = "healer.verify-seen";

/// What asking again gave.
pub(super) enum Again {
    /// Another round, recorded: the incident is acting again.
    Round(Box<IncidentRecord>),
    /// No further round, and why.
    Stop(String),
}

impl Worker<'_> {
    /// Asks the policy again on a verifying incident whose deadline passed.
    pub(super) async fn ask_again(
        &self,
        record: &IncidentRecord,
        seen: &str,
    ) -> Result<Again, StoreError> {
        let attempt = record.rounds.len() + 2;
        if attempt > self.options.max_rounds {
            return Ok(Again::Stop(format!(
                "{} attempts made, the most allowed",
                attempt - 1
            )));
        }
        let incident = &record.incident;
        let now = Utc::now().max(incident.detected_at);
        let mut context = self.context.clone();
        context
            .config
            .insert(ATTEMPT_KEY.to_owned(), attempt.to_string());
        context
            .config
            .insert(VERIFY_SEEN_KEY.to_owned(), seen.to_owned());
        let pipeline = self.pipeline;
        let mut plan = pipeline
            .plan_judged(incident, Facts::default(), &context, None, now)
            .await?;
        let Some(outcome) = plan.decisions.acting().cloned() else {
            return Ok(Again::Stop("no active policy handles it any more".into()));
        };
        let decision = match &outcome.result {
            Ok(d) => d.clone(),
            Err(e) => {
                return Ok(Again::Stop(format!(
                    "policy {} failed when asked again: {e}",
                    outcome.policy.name
                )));
            }
        };
        let Some(j) = plan.judgement.as_mut() else {
            return Ok(Again::Stop("the new plan was not judged".into()));
        };
        // Another round must try something new: an approved mutating step.
        // (Notifications alone would repeat every deadline; the escalation
        // tells humans once.) Places are reserved only for a plan that will
        // run; a reservation lost to a concurrent decision denies its step.
        if !j.escalate && acts(j, &decision) {
            let base = record.next_step_base();
            pipeline
                .reserve(incident, j, base, &plan.facts, now)
                .await?;
        }
        if j.escalate || !acts(j, &decision) || !executable(j, &decision) {
            return Ok(Again::Stop(why_not(j, &outcome.policy.name)));
        }
        let (json, hash) = plan.input.encoded();
        let store = pipeline.store;
        store.put_policy_input(&hash, &json).await?;
        let verdicts: Vec<VerdictRecord> = j
            .verdicts
            .iter()
            .map(|v| VerdictRecord::of(v, j.dry_run))
            .collect();
        let next = store
            .record_round(
                &incident.id,
                provenance(&outcome, &hash),
                verdicts,
                seen.to_owned(),
                now,
            )
            .await?;
        index_round(store, &next, &decision, j, now).await?;
        tracing::info!(incident = %incident.id, attempt, summary = %decision.summary,
            "Verification failed; the policy proposed another attempt.");
        Ok(Again::Round(Box::new(next)))
    }
}

/// Whether the judged plan has an approved step that changes something.
fn acts(j: &Judgement, decision: &Decision) -> bool {
    j.verdicts.iter().any(|v| {
        v.verdict.is_approved()
            && decision
                .steps
                .get(v.step)
                .is_some_and(|s| s.action.kind().is_mutating())
    })
}

/// Why the next attempt will not run: the governor's denials, else the
/// policy proposed nothing new.
fn why_not(j: &Judgement, policy: &str) -> String {
    let denied: Vec<String> = j
        .verdicts
        .iter()
        .filter_map(|v| match &v.verdict {
            Verdict::Denied { rule, reason, .. } => Some(format!("{rule}: {reason}")),
            _ => None,
        })
        .collect();
    if denied.is_empty() {
        format!("policy {policy} proposes nothing more")
    } else {
        format!("the next attempt was denied ({})", denied.join("; "))
    }
}

/// The new round's approved mutating steps enter the actions index at once
/// (as running), so the limits count them before they execute.
async fn index_round(
    store: &dyn crate::store::Store,
    next: &IncidentRecord,
    decision: &Decision,
    j: &Judgement,
    now: chrono::DateTime<Utc>,
) -> Result<(), StoreError> {
    for v in j.verdicts.iter().filter(|v| v.verdict.is_approved()) {
        let Some(step) = decision.steps.get(v.step) else {
            continue;
        };
        if !step.action.kind().is_mutating() {
            continue;
        }
        let planned = StepRecord::started(next.step_base + v.step, step.action.clone(), now);
        store
            .put_action(&ActionRecord::of(next, &planned).judged(v))
            .await?;
    }
    Ok(())
}
