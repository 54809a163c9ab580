//! Wires the stages in order for one signal: record the incident (idempotently),
//! read the facts of its resource and group, let the routed policies decide,
//! read the facts of every further resource the steps name, let the governor
//! judge every step against them and the store's state, record decision,
//! provenance and verdicts; a recovery heals the open incidents of its resource
//! or group and sets their MTTR.
//!
//! An incident is decided under its lease, and an approved mutating step
//! reserves its places under the counted limits before it is recorded (see
//! `record`), so limits hold across replicas and a redelivery resumes an
//! incident that an earlier attempt created but never decided.
//!
//! In dry run an approved step stays a plan. In live mode a decided incident
//! with approved steps becomes `acting`, and a [`Worker`] (the `act` module)
//! carries it on from the store: execute, verify, heal or escalate.
//! This is the only module that knows the order of the stages.

use chrono::{DateTime, Utc};
use serde::Serialize;

mod act;
mod again;
mod approve;
mod record;

pub use act::{
    DEFAULT_MAX_ROUNDS, DEFAULT_STEP_DEADLINE, DEFAULT_VERIFY_DEADLINE, DEFAULT_VERIFY_SETTLE,
    WorkOptions, Worker,
};
pub use again::{ATTEMPT_KEY, VERIFY_SEEN_KEY};
pub use approve::{Answer, ApprovalError};

use crate::decision::Decision;
use crate::incident::{Incident, IncidentId, Recovery, ResourceKind, ResourceRef};
use crate::policy::{Decisions, PolicyContext, PolicyInput, PolicyRegistry};
use crate::safety::{
    FactSource, Facts, Governor, History, Judgement, KILL_SWITCH_KEY, gather, unread_resources,
};
use crate::store::{
    ActionRecord, DecisionState, IncidentRecord, LifecycleState, ResourceConfigRecord, Scope,
    Store, StoreError,
};

/// Store key prefix of the storm notice sent per group (compare-and-set, so one
/// replica sends it once per blast window).
const STORM_KEY: &str = "storm:";

/// What the policies and the governor said about one incident.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Plan {
    /// Every routed policy's decision (and the shadows').
    pub decisions: Decisions,
    /// The governor's verdicts on the acting decision (the first active policy's).
    pub judgement: Option<Judgement>,
    /// The facts the governor judged with, per resource (tags, settings, group
    /// size and members, the service's task definition, and why a fact is
    /// unknown).
    pub facts: Facts,
    /// This incident put its group in storm mode and is the one that tells humans.
    pub storm_notice: bool,
    /// The exact input the routed policies decided on (recorded by hash).
    #[serde(skip)]
    pub input: PolicyInput,
}

/// Why a signal could not be recorded. Either way nothing was lost: the
/// source leaves the message to be redelivered, and the redelivery resumes
/// the incident (still `detected`) under its lease.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The policy host could not run a policy (pool exhausted, cache I/O): a
    /// host fault, not the policy's, so the incident is not escalated.
    #[error("policy host error (transient; the signal is retried): {0}")]
    PolicyHost(String),
}

/// What recording one signal did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recorded {
    /// A new incident, decided (or ignored / denied / escalated) and stored.
    New(Box<IncidentRecord>),
    /// The incident's id was already stored: a redelivery, not decided again.
    Duplicate(Box<IncidentRecord>),
    /// The incident was stored by an earlier attempt that never decided it
    /// (the store or the policy host failed): decided now.
    Resumed(Box<IncidentRecord>),
    /// Open incidents this recovery healed.
    Healed(Vec<IncidentRecord>),
}

/// The stages and what they need.
pub struct Pipeline<'a> {
    /// Where incidents and governor state live.
    pub store: &'a dyn Store,
    /// The policies.
    pub registry: &'a PolicyRegistry,
    /// The limits.
    pub governor: &'a Governor,
    /// Resource facts (tags, group size): from AWS and/or the operator; what
    /// cannot be read is unknown, and the rules that need it fail safe.
    pub facts: &'a dyn FactSource,
}

impl Pipeline<'_> {
    /// What the host knows for the policy: the operator's context (policy config
    /// values), completed with the resource's tags and config from the facts and
    /// its recent incidents and actions from the store.
    fn context_for(
        incident: &Incident,
        base: &PolicyContext,
        facts: &Facts,
        state: &DecisionState,
        history: &History,
        now: DateTime<Utc>,
    ) -> PolicyContext {
        let mut ctx = base.clone();
        let own = facts.of(&incident.resource.id);
        // A task carries its service's tags (ECS propagates them).
        let inherited = incident
            .group
            .as_ref()
            .filter(|_| incident.resource.kind == ResourceKind::EcsTask)
            .and_then(|g| facts.of(&g.id).tags.as_ref());
        if let Some(tags) = own.tags.as_ref().or(inherited) {
            ctx.tags.extend(tags.clone());
        }
        if let Some(rc) = &own.resource_config {
            ctx.resource_config = crate::policy::ResourceConfig {
                skip_recovery: rc.skip_recovery,
                cooldown_minutes: rc.cooldown_minutes,
                allowed_actions: rc.allowed_actions.clone(),
            };
        }
        let since = now - chrono::Duration::hours(1);
        let recent = |records: &[IncidentRecord]| {
            records
                .iter()
                .filter(|r| r.incident.id != incident.id && r.incident.detected_at > since)
                .count() as u32
        };
        ctx.recent_incidents_resource = ctx
            .recent_incidents_resource
            .max(recent(&state.incidents_resource));
        if incident.group.is_some() {
            ctx.recent_incidents_group = ctx
                .recent_incidents_group
                .max(recent(&state.incidents_group));
        }
        let mut last: Vec<&ActionRecord> = history.resource.iter().chain(&history.group).collect();
        last.sort_by_key(|a| std::cmp::Reverse(a.started_at));
        last.dedup_by(|a, b| a.incident_id == b.incident_id && a.step == b.step);
        ctx.last_actions.extend(
            last.into_iter()
                .take(10)
                .map(|a| crate::policy::PastAction {
                    kind: a.kind,
                    target: a.target.clone(),
                    at: a.started_at,
                    outcome: a.result.to_string(),
                }),
        );
        ctx
    }

    /// The incident as judged: with the group AWS places its resource in when
    /// the signal named none (an instance's Auto Scaling group), so the blast
    /// radius, the loop breaker and the recorded actions count over that group.
    /// Also returns the facts it read (the incident's resource), so they are
    /// not read again.
    async fn discover_group(&self, incident: &Incident) -> (Option<Incident>, Facts) {
        let mut facts = Facts::default();
        if incident.group.is_some() {
            return (None, facts);
        }
        gather(
            self.facts,
            std::slice::from_ref(&incident.resource),
            &mut facts,
        )
        .await;
        let enriched = facts.of(&incident.resource.id).group.clone().map(|group| {
            let mut enriched = incident.clone();
            enriched.group = Some(group);
            enriched
        });
        (enriched, facts)
    }

    /// Decides and judges an incident against the current store state, writing
    /// nothing (this is `healer plan`). The store is read once (one
    /// [`DecisionState`]), the facts are looked up concurrently with it.
    pub async fn plan(
        &self,
        incident: &Incident,
        context: &PolicyContext,
        now: DateTime<Utc>,
    ) -> Result<Plan, StoreError> {
        self.plan_with(incident, context, None, now).await
    }

    /// `plan`, judging `proposed` instead of the active policy's own decision,
    /// as if that policy proposed it (and declared the kinds it contains): what
    /// the governor would say to a plan. This is `healer plan --propose`.
    pub async fn plan_with(
        &self,
        incident: &Incident,
        context: &PolicyContext,
        proposed: Option<&Decision>,
        now: DateTime<Utc>,
    ) -> Result<Plan, StoreError> {
        let (enriched, facts) = self.discover_group(incident).await;
        let incident = enriched.as_ref().unwrap_or(incident);
        self.plan_judged(incident, facts, context, proposed, now)
            .await
    }

    /// `plan` of an incident whose group is settled; `facts` holds what was
    /// read already.
    async fn plan_judged(
        &self,
        incident: &Incident,
        mut facts: Facts,
        context: &PolicyContext,
        proposed: Option<&Decision>,
        now: DateTime<Utc>,
    ) -> Result<Plan, StoreError> {
        let since = now - self.governor.config().history_window();
        let state = self.store.decision_state(
            &incident.resource.id,
            incident.group.as_ref().map(|g| g.id.as_str()),
            KILL_SWITCH_KEY,
            since,
        );
        let own: Vec<ResourceRef> = std::iter::once(incident.resource.clone())
            .chain(incident.group.clone())
            .collect();
        let (state, ()) = tokio::join!(state, gather(self.facts, &own, &mut facts));
        let state = state?;
        apply_configs(&mut facts, &state.resource_configs);
        let history = History::from_state(incident, &state);
        let context = Self::context_for(incident, context, &facts, &state, &history, now);
        let mut decisions = self.registry.decide(incident, &context, now);
        if let (Some(d), Some(first)) = (proposed, decisions.active.first_mut()) {
            first.result = Ok(d.clone());
        }
        let judgement = match decisions.acting() {
            Some(outcome) => match &outcome.result {
                Ok(decision) => {
                    let mut declared = self
                        .registry
                        .metadata(&outcome.policy)
                        .map(|m| m.proposes)
                        .unwrap_or_default();
                    // A proposal is judged as if its author declared what it proposes.
                    if proposed.is_some() {
                        declared.extend(decision.steps.iter().map(|s| s.action.kind()));
                    }
                    self.read_step_facts(incident, decision, &state, &mut facts)
                        .await;
                    let judgement = self
                        .governor
                        .judge(incident, decision, &declared, &facts, &history, now);
                    count_denials(&judgement);
                    Some(judgement)
                }
                Err(_) => None,
            },
            None => None,
        };
        Ok(Plan {
            decisions,
            judgement,
            facts,
            storm_notice: false,
            input: PolicyInput::new(incident, &context, now),
        })
    }

    /// Reads the facts of every resource of the incident's scope that the
    /// decision's steps name beyond its resource and group (a sibling instance
    /// of the group, say), concurrently, with their config records.
    async fn read_step_facts(
        &self,
        incident: &Incident,
        decision: &Decision,
        state: &DecisionState,
        facts: &mut Facts,
    ) {
        let unread = unread_resources(incident, decision, facts);
        if !unread.is_empty() {
            gather(self.facts, &unread, facts).await;
            apply_configs(facts, &state.resource_configs);
        }
    }

    /// Records a new incident, its decision and the governor's verdicts. A
    /// duplicate of a decided incident is returned untouched and not decided
    /// again; one still `detected` (an earlier attempt failed before deciding)
    /// is resumed. Either way the decision runs under the incident's lease, so
    /// two replicas never decide one incident twice.
    pub async fn on_incident(
        &self,
        incident: &Incident,
        context: &PolicyContext,
        now: DateTime<Utc>,
    ) -> Result<(Option<Plan>, Recorded), PipelineError> {
        let (plan, recorded, lease) = self.on_incident_leased(incident, context, now).await?;
        if let Some(lease) = lease {
            lease.release(self.store).await;
        }
        Ok((plan, recorded))
    }

    /// `on_incident`, keeping the decision's lease on an incident it leaves
    /// `acting`, for the worker that acts on it next (so the first step
    /// starts without a release, a claim and a read in between). The caller
    /// must hand the lease on or release it.
    pub async fn on_incident_leased(
        &self,
        incident: &Incident,
        context: &PolicyContext,
        now: DateTime<Utc>,
    ) -> Result<(Option<Plan>, Recorded, Option<Lease>), PipelineError> {
        let (enriched, facts) = self.discover_group(incident).await;
        let incident = enriched.as_ref().unwrap_or(incident);
        let (record, created) = self.store.create_incident(incident).await?;
        if !created && record.state != LifecycleState::Detected {
            return Ok((None, Recorded::Duplicate(Box::new(record)), None));
        }
        let lease = Lease::new(&incident.id, record::LEASE_TTL);
        if !self
            .store
            .claim(&incident.id, &lease.owner, record::LEASE_TTL, now)
            .await?
        {
            // Another replica is deciding it right now.
            return Ok((None, Recorded::Duplicate(Box::new(record)), None));
        }
        let decided = self.decide_and_record(&record, facts, context, now).await;
        let kept = match &decided {
            Ok((_, r)) if r.state == LifecycleState::Acting => Some(lease),
            _ => {
                lease.release(self.store).await;
                None
            }
        };
        let (plan, record) = decided?;
        let recorded = if created {
            Recorded::New(Box::new(record))
        } else {
            Recorded::Resumed(Box::new(record))
        };
        Ok((Some(plan), recorded, kept))
    }

    /// Heals the open incidents of the recovered resource (or group) that were
    /// detected before the recovery was observed; an older recovery closes nothing.
    pub async fn on_recovery(&self, recovery: &Recovery) -> Result<Recorded, StoreError> {
        let id = recovery.resource.id.clone();
        let mut healed: Vec<IncidentRecord> = Vec::new();
        for scope in [Scope::Resource(id.clone()), Scope::Group(id)] {
            for open in self.store.open_incidents(&scope).await? {
                if open.incident.detected_at > recovery.observed_at
                    || !recovery.closes(&open.incident)
                    || healed.iter().any(|h| h.incident.id == open.incident.id)
                {
                    continue;
                }
                match self
                    .store
                    .transition(
                        &open.incident.id,
                        LifecycleState::Healed,
                        recovery.observed_at,
                        None,
                    )
                    .await
                {
                    Ok(r) => {
                        observe_recovery(&r, "signal");
                        healed.push(r);
                    }
                    // Another replica closed it first.
                    Err(StoreError::IllegalTransition { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(Recorded::Healed(healed))
    }
}

/// An incident's lease, held by this host: taken by a decision and handed
/// to the worker that acts on it, or taken by the worker itself.
#[derive(Debug)]
pub struct Lease {
    /// The incident.
    pub id: IncidentId,
    /// The owner name the lease was taken under (unique per call).
    pub owner: String,
    /// When it lapses at the latest, unless renewed (from before the claim).
    pub until: std::time::Instant,
}

impl Lease {
    /// A lease about to be claimed for `ttl`.
    pub(crate) fn new(id: &IncidentId, ttl: std::time::Duration) -> Lease {
        Lease {
            id: id.clone(),
            owner: record::lease_owner(),
            until: std::time::Instant::now() + ttl,
        }
    }

    /// Gives the lease up. A failure is only logged: the lease expires on its
    /// own, and nothing waits on it but a resume.
    pub async fn release(self, store: &dyn Store) {
        if let Err(error) = store.release(&self.id, &self.owner).await {
            tracing::warn!(incident = %self.id, error = %error, "Could not release the incident's lease.");
        }
    }
}

/// Work for the live workers: an incident by id (the worker takes its
/// lease), or one a decision left `acting` with its lease and record in hand.
#[derive(Debug)]
pub struct Handoff {
    /// The incident.
    pub id: IncidentId,
    /// The decision's lease and the record it wrote, when handed on.
    pub held: Option<(Lease, Box<IncidentRecord>)>,
}

impl From<IncidentId> for Handoff {
    fn from(id: IncidentId) -> Self {
        Handoff { id, held: None }
    }
}

impl Handoff {
    /// Releases the lease in hand, if any (work not taken up).
    pub async fn release(self, store: &dyn Store) {
        if let Some((lease, _)) = self.held {
            lease.release(store).await;
        }
    }
}

/// Counts the governor's denials by rule.
fn count_denials(j: &Judgement) {
    for v in &j.verdicts {
        if let crate::safety::Verdict::Denied { rule, .. } = &v.verdict {
            crate::metrics::metrics()
                .inc(crate::metrics::Counter::Denials, &[("rule", rule.as_str())]);
        }
    }
}

/// Observes a healed incident's time to recover, by kind, deciding policy and
/// who healed it (`healer` after verifying its steps, `signal` for a recovery
/// signal).
pub(crate) fn observe_recovery(r: &IncidentRecord, by: &'static str) {
    let Some(ms) = r.mttr_ms else { return };
    let policy = r
        .provenance
        .as_ref()
        .map_or("none", |p| p.policy.name.as_str());
    crate::metrics::metrics().observe(
        crate::metrics::Histogram::TimeToRecover,
        &[
            ("kind", r.incident.kind.as_str()),
            ("policy", policy),
            ("by", by),
        ],
        ms as f64 / 1000.0,
    );
}

/// Completes each resource's settings with the store's config records that
/// match it (by id or by its tags), combined fail-safe with the operator's.
fn apply_configs(facts: &mut Facts, configs: &[ResourceConfigRecord]) {
    for (id, f) in facts.0.iter_mut() {
        let tags = f.tags.clone().unwrap_or_default();
        if let Some(stored) = ResourceConfigRecord::settings_for(configs, id, &tags) {
            f.resource_config = Some(match &f.resource_config {
                Some(own) => own.combine(&stored),
                None => stored,
            });
        }
    }
}
