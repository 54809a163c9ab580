//! The safety governor: host-enforced limits that approve, deny (rule + reason)
//! or hold for approval every step a policy proposes. A policy only proposes;
//! nothing runs without the governor's approval.
//!
//! Each rule is one small module with its own tests. The governor reads its state
//! once per decision (`History`: the actions index for the resource, the group
//! and everything recent, plus the store's kill-switch flag) and is otherwise a
//! pure function of (incident, decision, facts, history, config, now).

mod allowed;
mod blast;
mod config;
mod cooldown;
mod facts;
mod in_flight;
mod loop_breaker;
mod opt_in;
mod rate;
mod self_caused;
mod switches;
mod target;
#[cfg(test)]
pub(crate) mod testkit;
mod verdict;

use chrono::{DateTime, Duration, Utc};

use crate::decision::{ActionKind, Decision, Step};
use crate::incident::Incident;
use crate::store::{ActionRecord, DecisionState};

pub use config::GovernorConfig;
pub use facts::{AWS_FACT_ACTIONS, AwsFacts, FactSource, Facts, Layered, StaticFacts};
pub use switches::KillSwitch;
pub use verdict::{Effect, Judgement, Rule, StepVerdict, Verdict, VerdictKind};

/// The store state one decision is judged against, read once.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Actions on the incident's resource in the window.
    pub resource: Vec<ActionRecord>,
    /// Actions on its group in the window.
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
        let group = incident.group.as_ref().map(|g| g.id.as_str());
        History {
            resource: state
                .actions
                .iter()
                .filter(|a| a.target == incident.resource.id)
                .cloned()
                .collect(),
            group: match group {
                Some(g) => state
                    .actions
                    .iter()
                    .filter(|a| a.group.as_deref() == Some(g))
                    .cloned()
                    .collect(),
                None => Vec::new(),
            },
            all: state.actions.clone(),
            kill_switch: KillSwitch::from_stored(state.kill_switch.as_deref()),
        }
    }
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
            }
            t.group_heals += usize::from(a.kind.is_mutating() && a.started_at > looped);
        }
        t
    }
}

/// Everything a rule may look at for one step.
pub(crate) struct Ctx<'a> {
    pub tally: &'a Tally<'a>,
    pub incident: &'a Incident,
    pub step: &'a Step,
    pub declared: &'a [ActionKind],
    pub facts: &'a Facts,
    pub history: &'a History,
    pub config: &'a GovernorConfig,
    pub now: DateTime<Utc>,
    /// Steps of this same decision approved so far (they count against limits).
    pub approved_before: &'a [&'a Step],
}

impl Ctx<'_> {
    pub fn kind(&self) -> ActionKind {
        self.step.action.kind()
    }

    pub fn target(&self) -> Option<&str> {
        self.step.action.target().map(|(_, id)| id)
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

    /// Judges every step of a decision. `declared` is the deciding policy's
    /// declared action kinds.
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
        let mut approved: Vec<&Step> = Vec::new();
        let tally = Tally::new(incident, history, &self.config, now);
        for (i, step) in decision.steps.iter().enumerate() {
            let ctx = Ctx {
                tally: &tally,
                incident,
                step,
                declared,
                facts,
                history,
                config: &self.config,
                now,
                approved_before: &approved,
            };
            let verdict = judge_step(&ctx);
            if verdict.is_approved() {
                approved.push(step);
            }
            verdicts.push(StepVerdict {
                step: i,
                action: step.action.kind(),
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
    let rules: [fn(&Ctx<'_>) -> Option<Verdict>; 11] = [
        switches::kill_switch,
        target::guard,
        allowed::declared,
        allowed::per_resource,
        opt_in::check,
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
        .filter(|s| {
            let target = s.action.target().map_or("", |(_, id)| id);
            pred(s.action.kind(), target, now)
        })
        .count();
    past + pending
}

/// This decision's approved steps that match `pred` (they count against limits
/// before they are in the store).
pub(crate) fn pending(ctx: &Ctx<'_>, pred: impl Fn(ActionKind) -> bool) -> usize {
    ctx.approved_before
        .iter()
        .filter(|s| pred(s.action.kind()))
        .count()
}
