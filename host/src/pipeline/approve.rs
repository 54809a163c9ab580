//! A human's answer to the steps the approval rule held
//! (`require-approval` in the governor config).
//!
//! Approving turns each held step of the current decision into an approved
//! one, recorded with who and when, after taking the same reservations a
//! step approved at decision time takes (a limit that filled meanwhile
//! denies the step by its rule). In live mode the incident then moves to
//! `acting` and the workers carry it out; in dry run the approved steps stay
//! a plan. Denying turns them into denials by the approval rule. Either is
//! refused once the decision is older than the approval time
//! (`approval-ttl-minutes`): the held steps are then denied as expired. The
//! incident's lease is held throughout, so two replicas cannot both answer.

use chrono::{DateTime, Utc};

use super::Pipeline;
use super::record::{LEASE_TTL, lease_owner};
use crate::incident::IncidentId;
use crate::safety::{Facts, Rule, StepVerdict, Verdict, VerdictKind, gather, lost_race};
use crate::store::{
    ActionRecord, IncidentRecord, LifecycleState, Outcome, Reservation, StepRecord, StoreError,
};

/// Why an answer was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// No such incident.
    #[error("no incident {0}")]
    NotFound(String),
    /// Nothing of its current decision waits for a human.
    #[error("incident {id} has no step waiting for approval (it is {state})")]
    NothingPending {
        /// The incident.
        id: String,
        /// Its state.
        state: LifecycleState,
    },
    /// Too late: the held steps were denied as expired.
    #[error(
        "the approval of incident {id} expired {minutes} min after its decision; its held steps are denied"
    )]
    Expired {
        /// The incident.
        id: String,
        /// The approval time.
        minutes: u32,
    },
    /// Another replica or worker holds the incident.
    #[error("incident {0} is being handled elsewhere; try again")]
    Busy(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A human's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Run the held steps (subject to the limits now).
    Approve,
    /// Do not.
    Deny,
}

impl Pipeline<'_> {
    /// Answers the held steps of incident `id` on behalf of `who`.
    pub async fn answer(
        &self,
        id: &IncidentId,
        answer: Answer,
        who: &str,
        now: DateTime<Utc>,
    ) -> Result<IncidentRecord, ApprovalError> {
        let owner = lease_owner();
        if !self.store.claim(id, &owner, LEASE_TTL, now).await? {
            // A lease nobody can take is a missing incident, or a busy one.
            return Err(match self.store.get(id).await? {
                None => ApprovalError::NotFound(id.to_string()),
                Some(_) => ApprovalError::Busy(id.to_string()),
            });
        }
        let result = self.answer_leased(id, answer, who, now).await;
        if let Err(e) = self.store.release(id, &owner).await {
            tracing::warn!(incident = %id, error = %e, "Could not release the lease; it expires.");
        }
        result
    }

    async fn answer_leased(
        &self,
        id: &IncidentId,
        answer: Answer,
        who: &str,
        now: DateTime<Utc>,
    ) -> Result<IncidentRecord, ApprovalError> {
        let record = self
            .store
            .get(id)
            .await?
            .ok_or_else(|| ApprovalError::NotFound(id.to_string()))?;
        // Never before detection (a signal dated ahead of this clock).
        let now = now.max(record.incident.detected_at);
        let held: Vec<usize> = record
            .verdicts
            .iter()
            .filter(|v| v.verdict == VerdictKind::PendingApproval)
            .map(|v| v.step)
            .collect();
        if record.state != LifecycleState::Decided || held.is_empty() {
            return Err(ApprovalError::NothingPending {
                id: id.to_string(),
                state: record.state,
            });
        }
        let minutes = self.governor.config().approval_ttl_minutes;
        let decided = record.timestamps.get(&LifecycleState::Decided).copied();
        let expired =
            decided.is_some_and(|d| now - d > chrono::Duration::minutes(i64::from(minutes)));
        let at = format!("{} at {}", who, now.format("%Y-%m-%dT%H:%M:%SZ"));
        let verdicts: Vec<(usize, Verdict)> = match (answer, expired) {
            (_, true) => held
                .iter()
                .map(|s| {
                    (
                        *s,
                        Verdict::deny(
                            Rule::Approval,
                            format!("approval expired after {minutes} min"),
                        ),
                    )
                })
                .collect(),
            (Answer::Deny, false) => held
                .iter()
                .map(|s| (*s, Verdict::deny(Rule::Approval, format!("denied by {at}"))))
                .collect(),
            (Answer::Approve, false) => self.reserve_held(&record, &held, now).await?,
        };
        let updated = self
            .record_answer(&record, &verdicts, &at, expired, now)
            .await?;
        if expired {
            return Err(ApprovalError::Expired {
                id: id.to_string(),
                minutes,
            });
        }
        tracing::info!(incident = %id, ?answer, by = %who, state = %updated.state, "Held steps answered.");
        Ok(updated)
    }

    /// The verdicts of the held steps once approved: each takes its
    /// reservations, or is denied by the limit that is full. The steps
    /// approved at decision time renew theirs (claims are per holder, so a
    /// renewal takes no second place): they run now too, possibly long after
    /// their places would have lapsed.
    async fn reserve_held(
        &self,
        record: &IncidentRecord,
        held: &[usize],
        now: DateTime<Utc>,
    ) -> Result<Vec<(usize, Verdict)>, StoreError> {
        let incident = &record.incident;
        let mut facts = Facts::default();
        if let Some(group) = &incident.group {
            gather(self.facts, std::slice::from_ref(group), &mut facts).await;
        }
        let mut out = Vec::new();
        let renewed = record
            .verdicts
            .iter()
            .filter(|v| v.verdict == VerdictKind::Approved)
            .map(|v| v.step);
        let steps: Vec<usize> = held.iter().copied().chain(renewed).collect();
        for step in &steps {
            let Some(v) = record.verdicts.iter().find(|v| v.step == *step) else {
                continue;
            };
            let Some(action) = current_step(record, *step) else {
                continue;
            };
            let approved = StepVerdict {
                step: *step,
                action: action.kind(),
                target: v.target.clone(),
                group: v.group.clone(),
                verdict: Verdict::Approved,
            };
            // `step` is already among all the incident's steps.
            let claims = self.governor.claims(incident, &approved, 0, &facts);
            let verdict = match self.store.reserve(&claims, now).await? {
                Reservation::Full(limit) => lost_race(&limit),
                _ => Verdict::Approved,
            };
            // A renewed step keeps its verdict unless its place is gone.
            if held.contains(step) || !verdict.is_approved() {
                out.push((*step, verdict));
            }
        }
        Ok(out)
    }

    /// Writes the answered verdicts, indexes the approved steps and moves the
    /// incident on: `acting` in live mode when a step may run, `denied` when
    /// no mutating step may, else it stays decided (a dry-run plan).
    async fn record_answer(
        &self,
        record: &IncidentRecord,
        verdicts: &[(usize, Verdict)],
        at: &str,
        expired: bool,
        now: DateTime<Utc>,
    ) -> Result<IncidentRecord, StoreError> {
        let dry_run = self.governor.config().dry_run;
        // After the answer: is any mutating step approved?
        let approved_after = |step: usize| match verdicts.iter().find(|(s, _)| *s == step) {
            Some((_, v)) => v.is_approved(),
            None => record
                .verdicts
                .iter()
                .any(|v| v.step == step && v.verdict == VerdictKind::Approved),
        };
        let mutating_approved = record.verdicts.iter().any(|v| {
            approved_after(v.step)
                && current_step(record, v.step).is_some_and(|a| a.kind().is_mutating())
        });
        // Expired: the whole decision is stale; nothing of it runs.
        let live_work = !dry_run && mutating_approved && !expired;
        let none_approved = !mutating_approved || expired;
        let at = at.to_owned();
        let answered = verdicts.to_vec();
        let updated = self
            .store
            .update(&record.incident.id, &move |r: &mut IncidentRecord| {
                // Still as it was read: decided, the same steps held (a
                // recovery, or another answer, may have moved it meanwhile).
                let still_held = r
                    .verdicts
                    .iter()
                    .any(|v| v.verdict == VerdictKind::PendingApproval);
                if r.state != LifecycleState::Decided || !still_held {
                    return Err(StoreError::IllegalTransition {
                        id: r.incident.id.to_string(),
                        from: r.state,
                        to: LifecycleState::Acting,
                    });
                }
                for (step, verdict) in &answered {
                    if let Some(v) = r.verdicts.iter_mut().find(|v| v.step == *step) {
                        v.verdict = verdict.kind();
                        v.rule = verdict.rule();
                        v.reason = match verdict {
                            Verdict::Approved if dry_run => {
                                format!("approved by {at} (dry run: not executed)")
                            }
                            Verdict::Approved => format!("approved by {at}"),
                            Verdict::Denied { reason, .. }
                            | Verdict::PendingApproval { reason } => reason.clone(),
                        };
                    }
                }
                if live_work {
                    r.advance(LifecycleState::Acting, now, None)?;
                } else if none_approved {
                    r.advance(
                        LifecycleState::Denied,
                        now,
                        Some("no mutating step was approved".to_owned()),
                    )?;
                }
                Ok(())
            })
            .await?;
        for (step, verdict) in verdicts.iter().filter(|(_, v)| v.is_approved()) {
            let Some(action) = current_step(&updated, *step) else {
                continue;
            };
            let planned = StepRecord {
                ended_at: dry_run.then_some(now),
                result: if dry_run {
                    Outcome::DryRun
                } else {
                    Outcome::Running
                },
                ..StepRecord::started(*step, action.clone(), now)
            };
            let v = updated.verdicts.iter().find(|v| v.step == *step);
            let sv = StepVerdict {
                step: *step,
                action: action.kind(),
                target: v.and_then(|v| v.target.clone()),
                group: v.and_then(|v| v.group.clone()),
                verdict: verdict.clone(),
            };
            self.store
                .put_action(&ActionRecord::of(&updated, &planned).judged(&sv))
                .await?;
        }
        Ok(updated)
    }
}

/// Step `step` (an index among all the incident's steps) of the current decision.
fn current_step(record: &IncidentRecord, step: usize) -> Option<&crate::decision::Action> {
    let decision = record.provenance.as_ref()?.decision.as_ref().ok()?;
    let i = step.checked_sub(record.step_base)?;
    decision.steps.get(i).map(|s| &s.action)
}
