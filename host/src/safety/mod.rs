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
mod cooldown;
mod facts;
mod in_flight;
mod loop_breaker;
mod opt_in;
mod rate;
mod self_caused;
mod switches;
mod target;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::decision::{ActionKind, Decision, Step};
use crate::incident::Incident;
use crate::store::{ActionRecord, DecisionState};

pub use facts::{AWS_FACT_ACTIONS, AwsFacts, FactSource, Facts, Layered, StaticFacts};

/// Governor limits, with their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct GovernorConfig {
    /// Mode: `true` (default) computes and records every verdict, executes nothing.
    pub dry_run: bool,
    /// Global kill switch: deny every mutating step.
    pub kill_switch: bool,
    /// A file whose existence trips the kill switch (for operators with a shell).
    pub kill_switch_file: Option<PathBuf>,
    /// Opt-in tag key EC2 instances need. Default `SelfHeal`.
    pub opt_in_tag_key: String,
    /// Opt-in tag value. Default `true`.
    pub opt_in_tag_value: String,
    /// Cooldown per resource and action kind, minutes. Default 10.
    pub cooldown_minutes: u32,
    /// Mutating actions per hour, per action kind. Default 20 each; override per kind.
    pub rate_per_kind_per_hour: u32,
    /// Per-kind overrides of `rate-per-kind-per-hour`.
    pub rate_overrides: BTreeMap<ActionKind, u32>,
    /// Mutating actions per hour, all kinds. Default 60.
    pub rate_global_per_hour: u32,
    /// Notify/escalate steps per hour. Default 30.
    pub notify_per_hour: u32,
    /// Actions running at once, globally. Default 10.
    pub max_in_flight: u32,
    /// Actions running at once in one group. Default 2.
    pub max_in_flight_per_group: u32,
    /// Minutes an action counts as in flight when its end is unknown. Default 15.
    pub in_flight_minutes: u32,
    /// Most members of a group under action at once, percent. Default 34.
    pub blast_radius_percent: u32,
    /// Window in which acted-on group members count for the blast radius, minutes. Default 15.
    pub blast_window_minutes: u32,
    /// Heals of one resource within the window that trip the loop breaker. Default 3.
    pub loop_breaker_count: u32,
    /// Loop breaker window, minutes. Default 60.
    pub loop_breaker_window_minutes: u32,
    /// Window in which incidents on resources our own actions touched are self-caused, minutes. Default 30.
    pub self_caused_window_minutes: u32,
    /// Action kinds that wait for a human's approval.
    pub require_approval: Vec<ActionKind>,
}

impl Default for GovernorConfig {
    fn default() -> Self {
        GovernorConfig {
            dry_run: true,
            kill_switch: false,
            kill_switch_file: None,
            opt_in_tag_key: "SelfHeal".into(),
            opt_in_tag_value: "true".into(),
            cooldown_minutes: 10,
            rate_per_kind_per_hour: 20,
            rate_overrides: BTreeMap::new(),
            rate_global_per_hour: 60,
            notify_per_hour: 30,
            max_in_flight: 10,
            max_in_flight_per_group: 2,
            in_flight_minutes: 15,
            blast_radius_percent: 34,
            blast_window_minutes: 15,
            loop_breaker_count: 3,
            loop_breaker_window_minutes: 60,
            self_caused_window_minutes: 30,
            require_approval: Vec::new(),
        }
    }
}

impl GovernorConfig {
    /// Mutating actions of `kind` per hour (its override, else the per-kind rate).
    pub fn rate_limit(&self, kind: ActionKind) -> u32 {
        self.rate_overrides
            .get(&kind)
            .copied()
            .unwrap_or(self.rate_per_kind_per_hour)
    }

    /// The longest window any rule looks back over.
    pub fn history_window(&self) -> Duration {
        let minutes = [
            60,
            self.cooldown_minutes,
            self.in_flight_minutes,
            self.blast_window_minutes,
            self.loop_breaker_window_minutes,
            self.self_caused_window_minutes,
        ]
        .into_iter()
        .max()
        .unwrap_or(60);
        Duration::minutes(i64::from(minutes))
    }
}

/// The rule that denied or held a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Target must be the incident's resource or a member of its group.
    TargetGuard,
    /// Opt-in tag / skip-recovery.
    OptIn,
    /// Per-resource allowed actions and the policy's declared kinds.
    AllowedActions,
    /// Per resource and action kind.
    Cooldown,
    /// Per action kind and global.
    RateLimit,
    /// Concurrent actions globally and per group.
    InFlight,
    /// Share of a group under action.
    BlastRadius,
    /// Repeated heals of one resource.
    LoopBreaker,
    /// Incident caused by our own action.
    SelfCaused,
    /// Global kill switch.
    KillSwitch,
    /// Manual approval required.
    Approval,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        f.write_str(&s)
    }
}

/// The governor's judgement of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "verdict")]
pub enum Verdict {
    /// May run (in dry-run mode: recorded as what would run).
    Approved,
    /// Must not run.
    Denied {
        /// Which rule.
        rule: Rule,
        /// Why, for humans.
        reason: String,
    },
    /// Waits for a human.
    PendingApproval {
        /// Why.
        reason: String,
    },
}

impl Verdict {
    fn deny(rule: Rule, reason: impl Into<String>) -> Self {
        Verdict::Denied {
            rule,
            reason: reason.into(),
        }
    }

    /// Whether the step may run.
    pub fn is_approved(&self) -> bool {
        matches!(self, Verdict::Approved)
    }
}

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
    pub kill_switch: bool,
}

/// Store key of the kill-switch flag (`on` trips it).
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
            kill_switch: state.kill_switch.as_deref() == Some("on"),
        }
    }
}

/// One step's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct StepVerdict {
    /// Index in the decision.
    pub step: usize,
    /// The step's action kind.
    pub action: ActionKind,
    /// The verdict.
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// The governor's answer for a whole decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Judgement {
    /// One verdict per step, in order.
    pub verdicts: Vec<StepVerdict>,
    /// Nothing is executed (the default mode).
    pub dry_run: bool,
    /// The blast radius tripped for the group: notify and escalate only.
    pub storm: bool,
    /// The loop breaker tripped: stop acting, hand to humans.
    pub escalate: bool,
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
    pub cause: Option<&'a ActionRecord>,
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
        let mut storm = false;
        let mut escalate = false;
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
            if let Verdict::Denied { rule, reason } = &verdict {
                // A fail-safe denial (unknown group size) is not a storm.
                storm |= *rule == Rule::BlastRadius && reason.starts_with(blast::STORM_PREFIX);
                escalate |= *rule == Rule::LoopBreaker;
            }
            if verdict.is_approved() {
                approved.push(step);
            }
            verdicts.push(StepVerdict {
                step: i,
                action: step.action.kind(),
                verdict,
            });
        }
        Judgement {
            verdicts,
            dry_run: self.config.dry_run,
            storm,
            escalate,
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

#[cfg(test)]
pub(crate) mod testkit {
    //! Builders for the rule tests.
    use super::*;
    use crate::decision::Action;
    use crate::incident::{IncidentKind, IncidentParts, ResourceKind, ResourceRef};

    pub fn now() -> DateTime<Utc> {
        chrono::TimeZone::timestamp_opt(&Utc, 1_714_557_600, 0)
            .single()
            .expect("valid")
    }

    pub fn instance_incident(id: &str) -> Incident {
        Incident::new(IncidentParts {
            kind: IncidentKind::InstanceImpaired,
            source: "test".into(),
            resource: ResourceRef::new(ResourceKind::Ec2Instance, id),
            group: Some(ResourceRef::new(ResourceKind::AutoscalingGroup, "web")),
            reason: "test".into(),
            detail: BTreeMap::new(),
            detected_at: now(),
            dedupe_key: format!("{id}#test"),
        })
    }

    pub fn replace(id: &str) -> Step {
        Step {
            action: Action::ReplaceInstance {
                instance_id: id.into(),
                move_elastic_ip: true,
            },
            reason: "test".into(),
        }
    }

    pub fn notify() -> Step {
        Step {
            action: Action::Notify {
                channel: "default".into(),
                subject: "s".into(),
                message: "m".into(),
            },
            reason: "test".into(),
        }
    }

    pub fn tagged() -> Facts {
        Facts {
            tags: Some(BTreeMap::from([("SelfHeal".to_owned(), "true".to_owned())])),
            group_size: Some(6),
            ..Facts::default()
        }
    }

    pub fn action(kind: ActionKind, target: &str, minutes_ago: i64, running: bool) -> ActionRecord {
        ActionRecord {
            incident_id: format!("inc-{target}-{minutes_ago}"),
            step: 0,
            kind,
            target: target.into(),
            group: Some("web".into()),
            started_at: now() - Duration::minutes(minutes_ago),
            ended_at: (!running)
                .then(|| now() - Duration::minutes(minutes_ago) + Duration::seconds(30)),
            result: if running { "running" } else { "succeeded" }.into(),
        }
    }

    /// Judges one step with the given facts and history.
    pub fn judge_one(
        step: Step,
        facts: &Facts,
        history: &History,
        config: GovernorConfig,
    ) -> Verdict {
        let incident = instance_incident("i-1");
        let decision = Decision {
            steps: vec![step],
            verify: None,
            summary: "t".into(),
        };
        let declared = [
            ActionKind::ReplaceInstance,
            ActionKind::Notify,
            ActionKind::RebootInstance,
        ];
        Governor::new(config)
            .judge(&incident, &decision, &declared, facts, history, now())
            .verdicts
            .remove(0)
            .verdict
    }
}
