//! Acting and verifying, in live mode: the work an incident has once it is
//! `acting`, driven from the store under the incident's lease, so any host
//! (this one after a restart, another replica) can take it up where it
//! stopped.
//!
//! Acting runs the approved steps in order. Right before each one the kill
//! switch is re-read; the step is recorded as started (with the request it
//! will send) before its first call, and with its outcome after. A step an
//! earlier attempt started and never finished is executed again only when
//! its executor can tell what that attempt did ([`Executor::resumable`]);
//! otherwise it is recorded `interrupted` and not repeated: a mutating call
//! is made at most once per step. A failed step stops the rest and escalates
//! with its reason, notifying the escalation channel.
//!
//! Verifying polls the resource (a [`Verifier`]) until the decision's verify
//! deadline, unless the decision waits for the recovery signal
//! (`Pipeline::on_recovery` heals it then). Past the deadline the policy is
//! asked again (the `again` module), with the failed attempt in its context,
//! so it can climb a ladder (reboot, then replace); when it proposes nothing
//! more, the governor denies it, or the rounds run out, the incident
//! escalates.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Lease;
use super::again::Again;
use super::record::LEASE_TTL;
use super::{Pipeline, PipelineError};
use crate::actions::{ExecOutcome, Execution, Executors, StepRequest};
use crate::decision::{Action, ActionKind, Decision, VerifyMethod};
use crate::incident::IncidentId;
use crate::safety::{KILL_SWITCH_KEY, VerdictKind};
use crate::store::{IncidentRecord, LifecycleState, ListFilter, Outcome, StepRecord, StoreError};
use crate::verify::{Check, Verifier};

/// Default overall deadline of one step (every call and wait in it).
pub const DEFAULT_STEP_DEADLINE: Duration = Duration::from_secs(15 * 60);
/// Default verify deadline of a decision that names none.
pub const DEFAULT_VERIFY_DEADLINE: Duration = Duration::from_secs(10 * 60);
/// Default most attempts per incident (the ladder's rungs).
pub const DEFAULT_MAX_ROUNDS: usize = 3;
/// Default time after acting before a poll's "recovered" counts.
pub const DEFAULT_VERIFY_SETTLE: Duration = Duration::from_secs(60);
/// Bounds of a decision's verify deadline.
const MIN_VERIFY_DEADLINE: Duration = Duration::from_secs(10);
const MAX_VERIFY_DEADLINE: Duration = Duration::from_secs(24 * 3600);

/// How the worker acts and verifies.
#[derive(Debug, Clone, Copy)]
pub struct WorkOptions {
    /// Overall deadline of one step; past it the step fails as timed out.
    pub step_deadline: Duration,
    /// Verify deadline of a decision without a verify spec.
    pub verify_deadline: Duration,
    /// How long an incident's lease lasts without renewal: how soon other
    /// hosts take over the work of a host that died (renewed every third
    /// of it while a step runs).
    pub lease: Duration,
    /// Most attempts (rounds of decide, act, verify) per incident before it
    /// escalates: the first decision and the policy asked again after each
    /// failed verification.
    pub max_rounds: usize,
    /// How long after acting a poll's "recovered" is believed (a reboot
    /// leaves the last status checks `ok` for a while).
    pub settle: Duration,
}

impl Default for WorkOptions {
    fn default() -> Self {
        WorkOptions {
            step_deadline: DEFAULT_STEP_DEADLINE,
            verify_deadline: DEFAULT_VERIFY_DEADLINE,
            lease: LEASE_TTL,
            max_rounds: DEFAULT_MAX_ROUNDS,
            settle: DEFAULT_VERIFY_SETTLE,
        }
    }
}

/// Carries incidents through `acting` and `verifying`.
pub struct Worker<'a> {
    /// The decide stages (store, governor).
    pub pipeline: &'a Pipeline<'a>,
    /// Who carries the steps out.
    pub executors: &'a Executors,
    /// Who reads whether the resource recovered.
    pub verifier: &'a dyn Verifier,
    /// The operator's policy context (config values), for asking the
    /// policy again when verification fails.
    pub context: &'a crate::policy::PolicyContext,
    /// Deadlines.
    pub options: WorkOptions,
    /// Told each step as it ends (`healer heal` prints them).
    pub on_step: Option<&'a (dyn Fn(&StepRecord) + Send + Sync)>,
    /// Set when the host is stopping: acting hands the incident back (its
    /// lease released) before the next step instead of starting it.
    pub stopping: Option<&'a std::sync::atomic::AtomicBool>,
}

impl Worker<'_> {
    /// Incidents with work to do (acting or verifying), oldest first: what a
    /// host drives at start-up and periodically, whoever decided them.
    pub async fn pending(&self) -> Result<Vec<IncidentId>, StoreError> {
        let filter = ListFilter {
            open: true,
            ..ListFilter::default()
        };
        let mut ids = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .pipeline
                .store
                .list(&filter, token.as_deref(), 500)
                .await?;
            let now = Utc::now();
            ids.extend(
                page.items
                    .iter()
                    .filter(|r| self.due(r, now))
                    .map(|r| r.incident.id.clone()),
            );
            match page.next {
                Some(t) => token = Some(t),
                None => return Ok(ids),
            }
        }
    }

    /// A decision's verify deadline (the operator's default without a spec),
    /// bounded: 0 would ask again at once, round after round; a week would
    /// never escalate.
    fn verify_deadline(&self, spec: Option<crate::decision::VerifySpec>) -> Duration {
        spec.map_or(self.options.verify_deadline, |s| {
            Duration::from_secs(u64::from(s.deadline_secs))
        })
        .clamp(MIN_VERIFY_DEADLINE, MAX_VERIFY_DEADLINE)
    }

    /// Whether a sweep has work for `r` now: acting; verifying by poll; or
    /// waiting for a recovery signal past its deadline (before it, only the
    /// signal can change anything, so the incident is not even leased).
    fn due(&self, r: &IncidentRecord, now: DateTime<Utc>) -> bool {
        match r.state {
            LifecycleState::Acting => true,
            LifecycleState::Verifying => {
                let spec = r
                    .provenance
                    .as_ref()
                    .and_then(|p| p.decision.as_ref().ok())
                    .and_then(|d| d.verify);
                let Some(spec) = spec.filter(|s| s.method == VerifyMethod::RecoverySignal) else {
                    return true;
                };
                let since = r.timestamps.get(&LifecycleState::Verifying).copied();
                let deadline = self.verify_deadline(Some(spec));
                since.is_none_or(|t| past(t, deadline, now))
            }
            _ => false,
        }
    }

    /// Takes the incident's lease and moves it as far as it goes now: runs
    /// its steps if it is acting, looks once at its resource if it is
    /// verifying. `None` when another host holds the lease.
    pub async fn drive(&self, id: &IncidentId) -> Result<Option<IncidentRecord>, PipelineError> {
        let lease = Lease::new(id, self.options.lease);
        if !self
            .pipeline
            .store
            .claim(id, &lease.owner, self.options.lease, Utc::now())
            .await?
        {
            return Ok(None);
        }
        self.drive_leased(lease, None).await
    }

    /// `drive`, for an incident handed on by the decision that left it
    /// acting, with its lease and the record it wrote: the first step starts
    /// without a claim or a read. The lease is renewed first when less than
    /// two thirds of a worker's lease is left of it (the first renewal comes
    /// a third of a lease in).
    pub async fn drive_handed(
        &self,
        mut lease: Lease,
        record: IncidentRecord,
    ) -> Result<Option<IncidentRecord>, PipelineError> {
        let ttl = self.options.lease;
        let left = lease
            .until
            .saturating_duration_since(std::time::Instant::now());
        if left < ttl * 2 / 3 {
            let renewed = std::time::Instant::now() + ttl;
            if !self
                .pipeline
                .store
                .claim(&lease.id, &lease.owner, ttl, Utc::now())
                .await?
            {
                return Ok(None);
            }
            lease.until = renewed;
        }
        self.drive_leased(lease, Some(record)).await
    }

    /// Drives the incident under `lease` (held), from `record` when in hand,
    /// and releases the lease.
    async fn drive_leased(
        &self,
        lease: Lease,
        record: Option<IncidentRecord>,
    ) -> Result<Option<IncidentRecord>, PipelineError> {
        let (id, owner) = (&lease.id.clone(), lease.owner.clone());
        // The lease is renewed for as long as the incident is in hand; if it
        // is lost (another host took the incident after a renewal failed),
        // the work in hand is dropped at once and nothing more is written.
        let work = self.drive_held(id, record);
        let renew = self.renew(id, &owner);
        tokio::pin!(work, renew);
        let driven = tokio::select! {
            biased;
            done = &mut work => done,
            () = &mut renew => {
                tracing::error!(incident = %id, "Lost the incident's lease; stopped working on it.");
                return Ok(None);
            }
        };
        lease.release(self.pipeline.store).await;
        driven.map(Some)
    }

    async fn drive_held(
        &self,
        id: &IncidentId,
        record: Option<IncidentRecord>,
    ) -> Result<IncidentRecord, PipelineError> {
        let store = self.pipeline.store;
        let mut record = match record {
            Some(r) => r,
            None => store
                .get(id)
                .await?
                .ok_or_else(|| StoreError::NotFound(id.to_string()))?,
        };
        // Acting, then verifying; a failed verification may start another
        // round (acting again), which runs at once.
        for _ in 0..2 {
            let Some(Ok(decision)) = record.provenance.as_ref().map(|p| p.decision.clone()) else {
                return Ok(record);
            };
            if record.state == LifecycleState::Acting {
                record = match self.act(record, &decision).await {
                    // A recovery signal healed it meanwhile (or a human closed it).
                    Err(StoreError::IllegalTransition { .. }) => store
                        .get(id)
                        .await?
                        .ok_or_else(|| StoreError::NotFound(id.to_string()))?,
                    other => other?,
                };
            }
            if record.state != LifecycleState::Verifying {
                break;
            }
            record = self.verify_once(record, &decision).await?;
            if record.state != LifecycleState::Acting {
                break;
            }
        }
        Ok(record)
    }

    /// Runs the approved steps not yet ended, in order; then verifying (or
    /// escalated, when a step failed or the plan escalates).
    async fn act(
        &self,
        mut record: IncidentRecord,
        decision: &Decision,
    ) -> Result<IncidentRecord, StoreError> {
        let store = self.pipeline.store;
        let id = record.incident.id.clone();
        // Verdicts and step records are indexed among all the incident's
        // steps; the decision's own from 0.
        let base = record.step_base;
        let approved: Vec<usize> = record
            .verdicts
            .iter()
            .filter(|v| v.verdict == VerdictKind::Approved)
            .map(|v| v.step)
            .collect();
        let mut escalates = false;
        for index in approved {
            let Some(step) = index.checked_sub(base).and_then(|i| decision.steps.get(i)) else {
                continue;
            };
            let kind = step.action.kind();
            escalates |= kind == ActionKind::Escalate;
            if kind == ActionKind::NoOp {
                continue;
            }
            let earlier = record.steps.iter().find(|s| s.index == index).cloned();
            match earlier {
                Some(s) if s.result.ended() => {
                    if let Outcome::Failed(reason) = &s.result {
                        let why = format!("step {index} ({kind}) failed: {reason}");
                        return self.escalate(record, decision, why).await;
                    }
                    continue;
                }
                Some(s) if !self.resumable(kind) => {
                    tracing::warn!(incident = %id, step = index, action = %kind,
                        "Step interrupted by an earlier attempt; not repeated (at most once).");
                    let interrupted = StepRecord {
                        ended_at: Some(Utc::now()),
                        result: Outcome::Interrupted,
                        ..s
                    };
                    // Whether it worked is for verification to tell; the
                    // steps after it still run.
                    record = store.record_step(&record, interrupted).await?;
                    continue;
                }
                _ => {}
            }
            if self
                .stopping
                .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
            {
                tracing::info!(incident = %id, step = index, "Stopping: handing the incident back.");
                return Ok(record);
            }
            let (flag, _) = store.governor_get(KILL_SWITCH_KEY).await?;
            if let Some(why) = self.pipeline.governor.kill_switch(flag.as_deref()) {
                let why = format!("{why}: step {index} ({kind}) and the rest not executed");
                return self.escalate(record, decision, why).await;
            }
            let action = self.with_report(&step.action, &record);
            let (next, ended) = self.run_step(&record, index, &action).await?;
            record = next;
            if let Outcome::Failed(reason) = &ended.result {
                let why = format!("step {index} ({kind}) failed: {reason}");
                return self.escalate(record, decision, why).await;
            }
        }
        if escalates {
            let note = "the plan escalates: humans take over".to_owned();
            return store
                .transition_from(&record, LifecycleState::Escalated, Utc::now(), Some(note))
                .await;
        }
        store
            .transition_from(&record, LifecycleState::Verifying, Utc::now(), None)
            .await
    }

    fn resumable(&self, kind: ActionKind) -> bool {
        self.executors.of(kind).is_some_and(|e| e.resumable(kind))
    }

    /// Records the step as started, executes it under the step deadline
    /// while renewing the lease, and records how it ended.
    async fn run_step(
        &self,
        record: &IncidentRecord,
        index: usize,
        action: &Action,
    ) -> Result<(IncidentRecord, StepRecord), StoreError> {
        let store = self.pipeline.store;
        let id = &record.incident.id;
        let req = StepRequest {
            incident: &record.incident,
            step: index,
            action,
        };
        // The record as last written here: the next write is one
        // compare-and-set on it.
        let mut current = None;
        let started = match record.steps.iter().find(|s| s.index == index) {
            Some(s) => s.clone(),
            None => {
                let mut s = StepRecord::started(index, action.clone(), Utc::now());
                s.indexed_at = record.timestamps.get(&LifecycleState::Acting).copied();
                if let Some(e) = self.executors.of(action.kind()) {
                    s.calls = e.plan(&req);
                }
                current = Some(store.record_step(record, s.clone()).await?);
                s
            }
        };
        tracing::info!(incident = %id, step = index, action = %action.kind(), "Executing.");
        let m = crate::metrics::metrics();
        let kind = action.kind().as_str();
        m.shift(crate::metrics::Gauge::RemediationsInProgress, &[], 1.0);
        let clock = std::time::Instant::now();
        let execution = self.execute_leased(&req).await;
        m.shift(crate::metrics::Gauge::RemediationsInProgress, &[], -1.0);
        m.observe(
            crate::metrics::Histogram::Action,
            &[("action", kind)],
            clock.elapsed().as_secs_f64(),
        );
        m.inc(
            crate::metrics::Counter::Actions,
            &[("action", kind), ("result", execution.outcome.label())],
        );
        tracing::info!(incident = %id, step = index, action = %action.kind(),
            outcome = ?execution.outcome, note = ?execution.note, "Executed.");
        let calls = if execution.calls.is_empty() {
            started.calls.clone()
        } else {
            execution.calls
        };
        let ended = StepRecord {
            ended_at: Some(Utc::now()),
            result: outcome_of(&execution.outcome),
            created: execution.created,
            calls,
            request_ids: execution.request_ids,
            note: execution.note,
            ..started
        };
        let record = store
            .record_step(current.as_ref().unwrap_or(record), ended.clone())
            .await?;
        if let Some(tell) = self.on_step {
            tell(&ended);
        }
        Ok((record, ended))
    }

    /// Executes one step under the step deadline.
    async fn execute_leased(&self, req: &StepRequest<'_>) -> Execution {
        let Some(executor) = self.executors.of(req.action.kind()) else {
            return Execution::failed(
                Vec::new(),
                crate::aws::AwsErrorClass::Permanent,
                format!("no executor carries out {}", req.action.kind()),
            );
        };
        let deadline = self.options.step_deadline;
        tokio::time::timeout(deadline, executor.execute(req))
            .await
            .unwrap_or_else(|_| {
                Execution::failed(
                    Vec::new(),
                    crate::aws::AwsErrorClass::TimedOut,
                    format!("the step did not end within its deadline of {deadline:?}"),
                )
            })
    }

    /// Renews the lease every third of its time; returns when it is lost
    /// (another owner holds it, or renewals failed for a whole lease).
    async fn renew(&self, id: &IncidentId, owner: &str) {
        let lease = self.options.lease;
        let mut every = tokio::time::interval(lease / 3);
        every.tick().await;
        let mut last_ok = tokio::time::Instant::now();
        loop {
            every.tick().await;
            match self
                .pipeline
                .store
                .claim(id, owner, lease, Utc::now())
                .await
            {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(incident = %id, error = %e, "Could not renew the lease.");
                    if last_ok.elapsed() >= lease {
                        return;
                    }
                }
            }
        }
    }

    /// A notification carries what healer did so far (each ended step, its
    /// outcome and what changed: old and new ids, the Elastic IP).
    fn with_report(&self, action: &Action, record: &IncidentRecord) -> Action {
        let report = report(record);
        match action {
            Action::Notify {
                channel,
                subject,
                message,
            } if !report.is_empty() => Action::Notify {
                channel: channel.clone(),
                subject: subject.clone(),
                message: format!("{message}\n\nWhat healer did:\n{report}"),
            },
            Action::Escalate { message } if !report.is_empty() => Action::Escalate {
                message: format!("{message}\n\nWhat healer did:\n{report}"),
            },
            other => other.clone(),
        }
    }

    /// Escalates: notifies the escalation channel (recorded as a host step
    /// after the plan's), then the incident becomes escalated with `why`.
    async fn escalate(
        &self,
        record: IncidentRecord,
        decision: &Decision,
        why: String,
    ) -> Result<IncidentRecord, StoreError> {
        tracing::warn!(incident = %record.incident.id, reason = %why, "Escalating.");
        let index = record.step_base + decision.steps.len();
        let already = record.steps.iter().any(|s| s.index == index);
        let record = if already || self.executors.of(ActionKind::Escalate).is_none() {
            record
        } else {
            let action = self.with_report(
                &Action::Escalate {
                    message: format!("healer stopped acting: {why}"),
                },
                &record,
            );
            self.run_step(&record, index, &action).await?.0
        };
        self.pipeline
            .store
            .transition(
                &record.incident.id,
                LifecycleState::Escalated,
                Utc::now(),
                Some(why),
            )
            .await
    }

    /// One look at a verifying incident: healed when the resource is back,
    /// escalated past the deadline, else left verifying.
    async fn verify_once(
        &self,
        record: IncidentRecord,
        decision: &Decision,
    ) -> Result<IncidentRecord, StoreError> {
        let now = Utc::now();
        let spec = decision.verify;
        let deadline = self.verify_deadline(spec);
        let check = match spec.map(|s| s.method) {
            Some(VerifyMethod::RecoverySignal) => {
                Check::Unknown("waiting for the recovery signal".into())
            }
            _ => self.verifier.check(&record).await,
        };
        let since = record
            .timestamps
            .get(&LifecycleState::Verifying)
            .copied()
            .unwrap_or(now);
        // Right after acting, what is read may still be the state before it
        // (status checks lag a reboot): recovery counts once settled.
        let settled = past(since, self.options.settle, now);
        match check {
            Check::Recovered(seen) if settled => {
                let note = format!("verified: {seen}");
                match self
                    .pipeline
                    .store
                    .transition(&record.incident.id, LifecycleState::Healed, now, Some(note))
                    .await
                {
                    Err(StoreError::IllegalTransition { .. }) => Ok(record),
                    Ok(healed) => {
                        super::observe_recovery(&healed, "healer");
                        Ok(healed)
                    }
                    other => other,
                }
            }
            Check::Recovered(seen) | Check::NotYet(seen) | Check::Unknown(seen)
                if past(since, deadline, now) =>
            {
                let why = format!(
                    "not recovered within {}s of acting; last seen: {seen}",
                    deadline.as_secs()
                );
                match self.ask_again(&record, &why).await? {
                    Again::Round(next) => Ok(*next),
                    Again::Stop(stop) => {
                        let why = format!("{why}; {stop}");
                        self.escalate(record, decision, why).await
                    }
                }
            }
            Check::Recovered(_) | Check::NotYet(_) | Check::Unknown(_) => Ok(record),
        }
    }
}

fn past(since: DateTime<Utc>, deadline: Duration, now: DateTime<Utc>) -> bool {
    chrono::Duration::from_std(deadline).is_ok_and(|d| now - since >= d)
}

/// The record's outcome of an execution.
fn outcome_of(outcome: &ExecOutcome) -> Outcome {
    match outcome {
        ExecOutcome::Succeeded => Outcome::Succeeded,
        ExecOutcome::DryRun => Outcome::DryRun,
        ExecOutcome::Superseded { seen } => Outcome::Superseded(seen.clone()),
        ExecOutcome::Failed { class, reason } => Outcome::Failed(format!("{class}: {reason}")),
    }
}

/// One line per ended step: `- replace-instance: succeeded (i-old → i-new, …)`.
fn report(record: &IncidentRecord) -> String {
    record
        .steps
        .iter()
        .filter(|s| s.result.ended())
        .map(|s| {
            let mut line = format!("- {}: {}", s.action.kind(), s.result);
            if let Some(note) = &s.note {
                line.push_str(&format!(" ({note})"));
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}
