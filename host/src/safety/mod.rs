//! The safety governor: host-enforced limits that approve, deny (rule + reason)
//! or hold for approval every step a policy proposes. A policy only proposes;
//! nothing runs without the governor's approval.
//!
//! Each rule is one small module with its own tests. The governor reads its state
//! once per decision (`History`: the actions index for the resource, the group
//! and everything recent, plus the store's kill-switch flag) and the facts of
//! every resource the decision's steps name; it is otherwise a pure function of
//! (incident, decision, facts, history, config, now). Every step is judged on
//! the resources it names (see `scope`), not on the incident's resource.

mod allowed;
mod aws_facts;
mod blast;
mod config;
mod cooldown;
mod facts;
mod in_flight;
mod loop_breaker;
mod opt_in;
mod params;
mod rate;
mod reserve;
mod scope;
mod self_caused;
mod switches;
mod target;
#[cfg(test)]
pub(crate) mod testkit;
mod verdict;

use chrono::{DateTime, Duration, Utc};

use crate::decision::{ActionKind, Decision, Step};
use crate::incident::{Incident, ResourceRef};
use crate::store::{ActionRecord, DecisionState};

pub use aws_facts::{AWS_FACT_ACTIONS, AwsFacts};
pub use config::GovernorConfig;
pub use facts::{FactSource, Facts, Layered, ResourceFacts, ServiceFacts, StaticFacts, gather};
pub use params::ParamsConfig;
pub use reserve::lost_race;
pub use switches::{KillSwitch, kill_switch_flag, set_kill_switch};
pub use verdict::{Effect, Judgement, Rule, StepVerdict, Verdict, VerdictKind};

use scope::StepScope;

/// The store state one decision is judged against, read once.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Actions on the incident's resource in the window.
    pub resource: Vec<ActionRecord>,
    /// Actions in its group in the window (the incident's group, or the
    /// incident's resource when it has none: a service is the group of its tasks).
    pub group: Vec<ActionRecord>,
    /// Every action in the window.
    pub all: Vec<ActionRecord>,
    /// The store's kill-switch flag (so every replica sees it).
    pub kill_switch: KillSwitch,
}

/// Store key of the kill-switch flag (anything but `off` trips it).
pub const KILL_SWITCH_KEY: &str = "kill-switch";

impl History {
    /// The history of one incident from the store state read for its decision:
    /// the resource's and the group's actions are the matching part of the
    /// window's actions.
    pub fn from_state(incident: &Incident, state: &DecisionState) -> History {
        let resource = incident.resource.id.as_str();
        let group = blast_group(incident).id.as_str();
        let pick = |f: &dyn Fn(&ActionRecord) -> bool| {
            state.actions.iter().filter(|a| f(a)).cloned().collect()
        };
        History {
            resource: pick(&|a| a.target == resource),
            group: pick(&|a| a.group.as_deref() == Some(group)),
            all: state.actions.clone(),
            kill_switch: KillSwitch::from_stored(state.kill_switch.as_deref()),
        }
    }
}

/// The group an incident's actions count in: its group, else its own resource.
fn blast_group(incident: &Incident) -> &ResourceRef {
    incident.group.as_ref().unwrap_or(&incident.resource)
}

/// The resources of the incident's scope that `decision`'s steps name and
/// `facts` does not hold yet: what the pipeline reads before judging.
pub fn unread_resources(
    incident: &Incident,
    decision: &Decision,
    facts: &Facts,
) -> Vec<ResourceRef> {
    decision
        .steps
        .iter()
        .flat_map(|s| StepScope::of(incident, &s.action, facts).guarded)
        .filter(|r| !facts.contains(&r.id))
        .collect()
}

/// Per-decision aggregates of the history, computed once so each rule is O(1)
/// in the size of the history (the global action list can be long).
pub(crate) struct Tally<'a> {
    /// The rate limits' token buckets, replayed from the actions index.
    pub buckets: rate::Buckets,
    /// Mutating actions still running, globally and in the group.
    pub running_all: usize,
    pub running_group: usize,
    /// Group members acted on within the blast window.
    pub blast_members: std::collections::BTreeSet<&'a str>,
    /// A group-wide action (a new deployment) ran on the group within the
    /// blast window: every member counts as under action.
    pub blast_group_wide: bool,
    /// Mutating actions on the group within the loop-breaker window.
    pub group_heals: usize,
    /// Our own earlier action that caused this incident, if any.
    pub cause: Option<self_caused::Cause<'a>>,
}

impl<'a> Tally<'a> {
    fn new(
        incident: &Incident,
        history: &'a History,
        config: &GovernorConfig,
        now: DateTime<Utc>,
    ) -> Self {
        let stale = now - Ctx::minutes(config.in_flight_minutes);
        let blast = now - Ctx::minutes(config.blast_window_minutes);
        let looped = now - Ctx::minutes(config.loop_breaker_window_minutes);
        let running =
            |a: &ActionRecord| a.ended_at.is_none() && a.kind.is_mutating() && a.started_at > stale;
        let mut t = Tally {
            buckets: rate::Buckets::replay(&history.all, config, now),
            running_all: 0,
            running_group: 0,
            blast_members: std::collections::BTreeSet::new(),
            blast_group_wide: false,
            group_heals: 0,
            cause: self_caused::cause(incident, history, config, now),
        };
        for a in &history.all {
            t.running_all += usize::from(running(a));
        }
        for a in &history.group {
            t.running_group += usize::from(running(a));
            if a.kind.is_mutating() && a.started_at > blast {
                t.blast_members.insert(a.target.as_str());
                t.blast_group_wide |= a.kind.is_group_wide();
            }
            t.group_heals += usize::from(a.kind.is_mutating() && a.started_at > looped);
        }
        t
    }
}

/// A step of this decision approved so far (it counts against limits before
/// it is in the store).
#[derive(Debug, Clone)]
pub(crate) struct Approved {
    pub kind: ActionKind,
    /// Its resolved target.
    pub target: Option<String>,
}

/// Everything a rule may look at for one step.
pub(crate) struct Ctx<'a> {
    pub tally: &'a Tally<'a>,
    pub step: &'a Step,
    /// Where each resource the step names sits in the incident's scope.
    pub scope: &'a StepScope<'a>,
    pub declared: &'a [ActionKind],
    pub facts: &'a Facts,
    pub history: &'a History,
    pub config: &'a GovernorConfig,
    pub now: DateTime<Utc>,
    pub approved_before: &'a [Approved],
}

impl Ctx<'_> {
    pub fn kind(&self) -> ActionKind {
        self.step.action.kind()
    }

    /// The step's target as resolved in the incident's scope.
    pub fn target(&self) -> Option<&str> {
        self.scope.target.as_ref().map(|t| t.id.as_str())
    }

    /// The facts of the step's target (all unknown without one).
    pub fn target_facts(&self) -> &ResourceFacts {
        self.facts.of(self.target().unwrap_or_default())
    }

    pub fn minutes(m: u32) -> Duration {
        Duration::minutes(i64::from(m))
    }
}

/// The governor.
#[derive(Debug, Clone, Default)]
pub struct Governor {
    config: GovernorConfig,
}

impl Governor {
    /// A governor with the given limits.
    pub fn new(config: GovernorConfig) -> Self {
        Governor { config }
    }

    /// The limits.
    pub fn config(&self) -> &GovernorConfig {
        &self.config
    }

    /// Why acting must stop now, if a kill switch is on: the config's, its
    /// file, or the store's flag (`stored`, the value under
    /// [`KILL_SWITCH_KEY`]). Re-checked right before every live call.
    pub fn kill_switch(&self, stored: Option<&str>) -> Option<String> {
        switches::engaged(&self.config, KillSwitch::from_stored(stored))
    }

    /// Judges every step of a decision. `declared` is the deciding policy's
    /// declared action kinds; `facts` holds what is known about each resource
    /// the steps name (see [`unread_resources`]).
    pub fn judge(
        &self,
        incident: &Incident,
        decision: &Decision,
        declared: &[ActionKind],
        facts: &Facts,
        history: &History,
        now: DateTime<Utc>,
    ) -> Judgement {
        let mut verdicts = Vec::with_capacity(decision.steps.len());
        let mut approved: Vec<Approved> = Vec::new();
        let tally = Tally::new(incident, history, &self.config, now);
        for (i, step) in decision.steps.iter().enumerate() {
            let scope = StepScope::of(incident, &step.action, facts);
            let ctx = Ctx {
                tally: &tally,
                step,
                scope: &scope,
                declared,
                facts,
                history,
                config: &self.config,
                now,
                approved_before: &approved,
            };
            let verdict = judge_step(&ctx);
            let target = scope.target.map(|t| t.id);
            if verdict.is_approved() {
                approved.push(Approved {
                    kind: step.action.kind(),
                    target: target.clone(),
                });
            }
            verdicts.push(StepVerdict {
                step: i,
                action: step.action.kind(),
                target,
                group: scope.group.map(|g| g.id),
                verdict,
            });
        }
        let any = |e: Effect| verdicts.iter().any(|v| v.verdict.effect() == e);
        Judgement {
            storm: any(Effect::Storm),
            escalate: any(Effect::Escalate),
            verdicts,
            dry_run: self.config.dry_run,
        }
    }
}

/// Every rule in order; the first denial wins. Notify and escalate are how humans
/// learn about a block: only the declared-kind check and their rate limit apply.
fn judge_step(ctx: &Ctx<'_>) -> Verdict {
    if !ctx.kind().is_mutating() {
        return allowed::declared(ctx)
            .or_else(|| rate::notify(ctx))
            .unwrap_or(Verdict::Approved);
    }
    let rules: [fn(&Ctx<'_>) -> Option<Verdict>; 12] = [
        switches::kill_switch,
        target::guard,
        allowed::declared,
        allowed::per_resource,
        opt_in::check,
        params::check,
        self_caused::check,
        loop_breaker::check,
        cooldown::check,
        rate::check,
        in_flight::check,
        blast::check,
    ];
    rules
        .iter()
        .find_map(|rule| rule(ctx))
        .or_else(|| switches::approval(ctx))
        .unwrap_or(Verdict::Approved)
}

/// Actions of `list` (plus this decision's approved steps) that match `pred`,
/// as (kind, target, started_at).
pub(crate) fn counted<'a>(
    ctx: &'a Ctx<'_>,
    list: &'a [ActionRecord],
    pred: impl Fn(ActionKind, &str, DateTime<Utc>) -> bool + 'a,
) -> usize {
    let past = list
        .iter()
        .filter(|a| pred(a.kind, &a.target, a.started_at))
        .count();
    let now = ctx.now;
    let pending = ctx
        .approved_before
        .iter()
        .filter(|s| pred(s.kind, s.target.as_deref().unwrap_or_default(), now))
        .count();
    past + pending
}

/// This decision's approved steps that match `pred` (they count against limits
/// before they are in the store).
pub(crate) fn pending(ctx: &Ctx<'_>, pred: impl Fn(ActionKind) -> bool) -> usize {
    ctx.approved_before.iter().filter(|s| pred(s.kind)).count()
}
