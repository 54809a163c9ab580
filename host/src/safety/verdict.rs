//! What the governor answers: per step a typed verdict (approved, denied by a
//! named rule with a reason and what the denial sets off, or held for a human),
//! and per decision the judgement. These types are the record of a decision; no
//! later stage parses a reason string.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::decision::ActionKind;

/// The rule that denied or held a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Every resource a step names must be the incident's resource, its group, a
    /// member of the group or the cluster they run in.
    TargetGuard,
    /// Opt-in tag / skip-recovery.
    OptIn,
    /// Per-resource allowed actions and the policy's declared kinds.
    AllowedActions,
    /// What a step sets: rollback target, desired count, environment keys,
    /// SSM documents and commands.
    Parameters,
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

impl Rule {
    /// The wire name (`target-guard`).
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::TargetGuard => "target-guard",
            Rule::OptIn => "opt-in",
            Rule::AllowedActions => "allowed-actions",
            Rule::Parameters => "parameters",
            Rule::Cooldown => "cooldown",
            Rule::RateLimit => "rate-limit",
            Rule::InFlight => "in-flight",
            Rule::BlastRadius => "blast-radius",
            Rule::LoopBreaker => "loop-breaker",
            Rule::SelfCaused => "self-caused",
            Rule::KillSwitch => "kill-switch",
            Rule::Approval => "approval",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a denial sets off beyond its own step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    /// Only this step is denied.
    #[default]
    Step,
    /// The blast radius tripped: the group is in storm mode (mutating steps
    /// denied, one notice to humans per window). A fail-safe blast denial (the
    /// group's size is unknown) is not a storm.
    Storm,
    /// The loop breaker tripped: stop acting on the incident and escalate.
    Escalate,
}

impl Effect {
    fn is_step(&self) -> bool {
        *self == Effect::Step
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
        /// What the denial sets off (storm mode, escalation).
        #[serde(default, skip_serializing_if = "Effect::is_step")]
        effect: Effect,
    },
    /// Waits for a human.
    PendingApproval {
        /// Why.
        reason: String,
    },
}

/// A verdict's kind, without its details (what the store indexes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    /// May run.
    Approved,
    /// Must not run.
    Denied,
    /// Waits for a human.
    PendingApproval,
}

impl std::fmt::Display for VerdictKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VerdictKind::Approved => "approved",
            VerdictKind::Denied => "denied",
            VerdictKind::PendingApproval => "pending-approval",
        })
    }
}

impl Verdict {
    /// A denial of this step only.
    pub(crate) fn deny(rule: Rule, reason: impl Into<String>) -> Self {
        Verdict::Denied {
            rule,
            reason: reason.into(),
            effect: Effect::Step,
        }
    }

    /// A denial that sets something off (storm mode, escalation).
    pub(crate) fn deny_with(rule: Rule, effect: Effect, reason: impl Into<String>) -> Self {
        Verdict::Denied {
            rule,
            reason: reason.into(),
            effect,
        }
    }

    /// Whether the step may run.
    pub fn is_approved(&self) -> bool {
        matches!(self, Verdict::Approved)
    }

    /// The kind.
    pub fn kind(&self) -> VerdictKind {
        match self {
            Verdict::Approved => VerdictKind::Approved,
            Verdict::Denied { .. } => VerdictKind::Denied,
            Verdict::PendingApproval { .. } => VerdictKind::PendingApproval,
        }
    }

    /// The rule that denied or held the step.
    pub fn rule(&self) -> Option<Rule> {
        match self {
            Verdict::Approved => None,
            Verdict::Denied { rule, .. } => Some(*rule),
            Verdict::PendingApproval { .. } => Some(Rule::Approval),
        }
    }

    /// What a denial sets off ([`Effect::Step`] for anything else).
    pub fn effect(&self) -> Effect {
        match self {
            Verdict::Denied { effect, .. } => *effect,
            _ => Effect::Step,
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
    /// The resource the step acts on, as the governor resolved it (the
    /// incident's own id for it, whatever spelling the policy used), so the
    /// actions index counts every spelling as one resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The group the step counts in (the incident's group; for a group-wide
    /// step on a service, the service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_keep_their_wire_spelling() {
        let storm = Verdict::deny_with(Rule::BlastRadius, Effect::Storm, "r");
        let json = serde_json::to_value(&storm).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"verdict": "denied", "rule": "blast-radius", "reason": "r", "effect": "storm"})
        );
        let plain = serde_json::to_value(Verdict::deny(Rule::OptIn, "r")).expect("json");
        assert!(plain.get("effect").is_none(), "{plain}");
        let back: Verdict = serde_json::from_value(plain).expect("reads back");
        assert_eq!(back.effect(), Effect::Step);
        assert_eq!(
            serde_json::to_value(Rule::Parameters).expect("json"),
            Rule::Parameters.as_str()
        );
        for rule in [Rule::TargetGuard, Rule::KillSwitch, Rule::Approval] {
            assert_eq!(serde_json::to_value(rule).expect("json"), rule.as_str());
        }
    }
}
