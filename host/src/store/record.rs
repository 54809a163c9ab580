//! The stored shapes: an incident's record with its lifecycle, provenance,
//! verdicts and steps; action index entries; per-resource config. The lifecycle
//! rules (which transition is legal, MTTR) and how matching config records
//! combine live here, backend-independent. Every state is typed (enums in their
//! kebab-case wire spelling), so stored JSON stays readable and nothing past
//! the store parses a string.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::decision::{Action, ActionKind, Decision};
use crate::incident::Incident;
use crate::policy::PolicyId;
use crate::safety::{Rule, StepVerdict, VerdictKind};

/// How long a record is kept before DynamoDB's TTL removes it (90 days).
pub const RETENTION_SECS: i64 = 90 * 24 * 3600;

/// Where an incident is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LifecycleState {
    /// Normalized and recorded.
    Detected,
    /// A policy decided and the governor judged every step.
    Decided,
    /// Approved steps are running.
    Acting,
    /// Waiting for proof of recovery.
    Verifying,
    /// Recovered (terminal); MTTR is set.
    Healed,
    /// Handed to humans (terminal).
    Escalated,
    /// Every step was denied (terminal).
    Denied,
    /// Nothing to do (terminal).
    Ignored,
}

impl LifecycleState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleState::Detected => "detected",
            LifecycleState::Decided => "decided",
            LifecycleState::Acting => "acting",
            LifecycleState::Verifying => "verifying",
            LifecycleState::Healed => "healed",
            LifecycleState::Escalated => "escalated",
            LifecycleState::Denied => "denied",
            LifecycleState::Ignored => "ignored",
        }
    }

    /// Every state, in lifecycle order.
    pub const ALL: [LifecycleState; 8] = [
        LifecycleState::Detected,
        LifecycleState::Decided,
        LifecycleState::Acting,
        LifecycleState::Verifying,
        LifecycleState::Healed,
        LifecycleState::Escalated,
        LifecycleState::Denied,
        LifecycleState::Ignored,
    ];

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Healed, escalated, denied and ignored are final.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            LifecycleState::Healed
                | LifecycleState::Escalated
                | LifecycleState::Denied
                | LifecycleState::Ignored
        )
    }

    /// Whether the model allows `self → to`. A resource may recover on its own
    /// at any open stage; nothing leaves a terminal state.
    pub fn can_move_to(self, to: LifecycleState) -> bool {
        use LifecycleState::*;
        match self {
            Detected => matches!(to, Decided | Healed | Escalated | Denied | Ignored),
            Decided => matches!(to, Acting | Healed | Escalated | Denied | Ignored),
            Acting => matches!(to, Verifying | Healed | Escalated),
            // Verification failed and the policy proposed another round.
            Verifying => matches!(to, Acting | Healed | Escalated),
            Healed | Escalated | Denied | Ignored => false,
        }
    }
}

impl fmt::Display for LifecycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who decided and at what cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Provenance {
    /// Policy name, version, sha256.
    pub policy: PolicyId,
    /// sha256 of the exact input the policy saw (incident, context and
    /// virtual time as canonical JSON: `PolicyInput`); the input itself is
    /// stored once under it (`Store::policy_input`).
    pub input_hash: String,
    /// Fuel used.
    pub fuel_used: u64,
    /// Decision time in microseconds.
    pub duration_us: u64,
    /// The full decision, or the policy error as text.
    pub decision: Result<Decision, String>,
}

/// The governor's judgement of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct VerdictRecord {
    /// Index of the step in the decision.
    pub step: usize,
    /// Approved, denied or pending approval.
    pub verdict: VerdictKind,
    /// The rule that denied or held the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    /// The human reason.
    pub reason: String,
    /// The step's target as the governor resolved it, so the actions index
    /// counts the executed step on the resource it judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The group the step counts in, as the governor resolved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl VerdictRecord {
    /// The record of one step's verdict; `dry_run` says so in an approval's reason.
    pub fn of(v: &StepVerdict, dry_run: bool) -> Self {
        use crate::safety::Verdict;
        let reason = match &v.verdict {
            Verdict::Approved if dry_run => "approved (dry run: not executed)".to_owned(),
            Verdict::Approved => "approved".to_owned(),
            Verdict::Denied { reason, .. } | Verdict::PendingApproval { reason } => reason.clone(),
        };
        VerdictRecord {
            step: v.step,
            verdict: v.verdict.kind(),
            rule: v.verdict.rule(),
            reason,
            target: v.target.clone(),
            group: v.group.clone(),
        }
    }
}

/// How a step or action ended (or that it has not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Started, not ended.
    Running,
    /// Done.
    Succeeded,
    /// The call failed, with the error.
    Failed(String),
    /// Dry run: approved, recorded as what would have run, not executed.
    DryRun,
    /// Not sent: right before the call the condition no longer held, with
    /// what the re-check saw (already stopped, already reset, …).
    Superseded(String),
    /// Started by an attempt that died before recording how it ended; the
    /// call may have been sent, so it is not sent again (at most once) and
    /// verification decides.
    Interrupted,
}

impl Outcome {
    /// Whether the step ended (anything but running).
    pub fn ended(&self) -> bool {
        !matches!(self, Outcome::Running)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Running => f.write_str("running"),
            Outcome::Succeeded => f.write_str("succeeded"),
            Outcome::Failed(e) => write!(f, "failed: {e}"),
            Outcome::DryRun => f.write_str("dry-run"),
            Outcome::Superseded(seen) => write!(f, "superseded: {seen}"),
            Outcome::Interrupted => f.write_str("interrupted"),
        }
    }
}

/// One executed (or dry-run) step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StepRecord {
    /// Index of the step in the decision.
    pub index: usize,
    /// What was done.
    pub action: Action,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended; `None` while running.
    pub ended_at: Option<DateTime<Utc>>,
    /// How it ended.
    pub result: Outcome,
    /// Resources the step created (a replacement instance), so incidents on
    /// them are recognised as caused by it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created: Vec<String>,
    /// The exact AWS requests sent (operation and parameters), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<crate::actions::PlannedCall>,
    /// The AWS request ids of those calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_ids: Vec<String>,
    /// What changed, for humans (`revision 7 → 6`, `i-old → i-new`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When the step's actions-index entry was planned (the decision's
    /// time), if not its start: the executed step replaces that entry
    /// instead of adding a second one (DynamoDB keys entries by time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexed_at: Option<DateTime<Utc>>,
}

impl StepRecord {
    /// A step that starts now: recorded before its first call.
    pub fn started(index: usize, action: Action, at: DateTime<Utc>) -> Self {
        StepRecord {
            index,
            action,
            started_at: at,
            ended_at: None,
            result: Outcome::Running,
            created: Vec::new(),
            calls: Vec::new(),
            request_ids: Vec::new(),
            note: None,
            indexed_at: None,
        }
    }
}

/// An incident's whole life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct IncidentRecord {
    /// The incident as detected.
    pub incident: Incident,
    /// Current state.
    pub state: LifecycleState,
    /// When each state was entered.
    pub timestamps: BTreeMap<LifecycleState, DateTime<Utc>>,
    /// healed_at − detected_at, in milliseconds, once healed.
    pub mttr_ms: Option<i64>,
    /// Why it was denied, escalated or ignored.
    pub note: Option<String>,
    /// The deciding policy and its decision.
    pub provenance: Option<Provenance>,
    /// The other routed policies' decisions and the shadows', recorded
    /// beside the acting one and never executed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_decided: Vec<Provenance>,
    /// The governor's verdict on every step.
    pub verdicts: Vec<VerdictRecord>,
    /// Executed steps, by index.
    pub steps: Vec<StepRecord>,
    /// Earlier rounds: when verification failed and the policy was asked
    /// again, the decision, verdicts and steps of each attempt before the
    /// current one, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<Round>,
    /// The index of the current decision's first step among all the
    /// incident's steps (0 in the first round): step `i` of the current
    /// decision is recorded, judged and indexed as `step_base + i`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub step_base: usize,
    /// Optimistic-concurrency version, +1 per write.
    pub version: u64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One earlier attempt at healing an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Round {
    /// Who decided and what.
    pub provenance: Option<Provenance>,
    /// The verdicts on its steps (indexed from its step base).
    pub verdicts: Vec<VerdictRecord>,
    /// Its executed steps.
    pub steps: Vec<StepRecord>,
    /// What verification saw when its deadline passed.
    pub verify_seen: String,
}

impl IncidentRecord {
    /// A fresh record in `detected`.
    pub fn detected(incident: Incident) -> Self {
        let at = incident.detected_at;
        IncidentRecord {
            incident,
            state: LifecycleState::Detected,
            timestamps: BTreeMap::from([(LifecycleState::Detected, at)]),
            mttr_ms: None,
            note: None,
            provenance: None,
            also_decided: Vec::new(),
            verdicts: Vec::new(),
            steps: Vec::new(),
            rounds: Vec::new(),
            step_base: 0,
            version: 1,
        }
    }

    /// Where the next round's steps start among all the incident's steps:
    /// past every step recorded and every step the current decision planned
    /// (its escalation included), so no index is reused.
    pub fn next_step_base(&self) -> usize {
        let planned = self
            .provenance
            .as_ref()
            .and_then(|p| p.decision.as_ref().ok())
            .map_or(0, |d| d.steps.len() + 1);
        self.steps
            .iter()
            .map(|s| s.index + 1)
            .max()
            .unwrap_or(0)
            .max(self.step_base + planned)
    }

    /// Applies a transition, enforcing the model. Healing sets MTTR; a time
    /// before detection is rejected (clock skew would make MTTR negative).
    pub fn advance(
        &mut self,
        to: LifecycleState,
        at: DateTime<Utc>,
        note: Option<String>,
    ) -> Result<(), StoreError> {
        let illegal = || StoreError::IllegalTransition {
            id: self.incident.id.to_string(),
            from: self.state,
            to,
        };
        if !self.state.can_move_to(to) {
            return Err(illegal());
        }
        if at < self.incident.detected_at {
            return Err(StoreError::Invalid(format!(
                "incident {}: {to} at {at} is before its detection at {}",
                self.incident.id, self.incident.detected_at
            )));
        }
        self.state = to;
        self.timestamps.insert(to, at);
        if to == LifecycleState::Healed {
            self.mttr_ms = Some((at - self.incident.detected_at).num_milliseconds());
        }
        if note.is_some() {
            self.note = note;
        }
        Ok(())
    }

    /// The DynamoDB TTL (epoch seconds): detection + retention.
    pub fn expires_at(&self) -> i64 {
        self.incident.detected_at.timestamp() + RETENTION_SECS
    }
}

/// One entry of the actions index: what was done to which target, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ActionRecord {
    /// The incident that acted.
    pub incident_id: String,
    /// Step index.
    pub step: usize,
    /// Action kind.
    pub kind: ActionKind,
    /// Target resource id ("" for notify/escalate), as the governor resolved it.
    pub target: String,
    /// The group the action counts in, if any.
    pub group: Option<String>,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End.
    pub ended_at: Option<DateTime<Utc>>,
    /// How it ended.
    pub result: Outcome,
    /// Resources it created (the self-caused marker: an incident on one of
    /// them was caused by this action).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created: Vec<String>,
}

impl ActionRecord {
    /// The index entry of a step of an incident: its target as the action
    /// names it, in the incident's group. The pipeline replaces both with what
    /// the governor resolved ([`ActionRecord::judged`]).
    pub fn of(record: &IncidentRecord, step: &StepRecord) -> Self {
        let judged = record.verdicts.iter().find(|v| v.step == step.index);
        let action = ActionRecord {
            incident_id: record.incident.id.to_string(),
            step: step.index,
            kind: step.action.kind(),
            target: step
                .action
                .target()
                .map(|(_, id)| id.to_owned())
                .unwrap_or_default(),
            group: record.incident.group.as_ref().map(|g| g.id.clone()),
            started_at: step.indexed_at.unwrap_or(step.started_at),
            ended_at: step.ended_at,
            result: step.result.clone(),
            created: step.created.clone(),
        };
        match judged {
            Some(v) => action.resolved(v.target.as_deref(), v.group.as_deref()),
            None => action,
        }
    }

    fn resolved(mut self, target: Option<&str>, group: Option<&str>) -> Self {
        if let Some(t) = target {
            t.clone_into(&mut self.target);
        }
        if group.is_some() {
            self.group = group.map(str::to_owned);
        }
        self
    }

    /// The entry with the target and group the governor resolved for the step,
    /// so every spelling of a resource (ARN, bare name) is one resource in the
    /// limits.
    pub fn judged(self, v: &StepVerdict) -> Self {
        self.resolved(v.target.as_deref(), v.group.as_deref())
    }
}

/// Which resources a config record applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceSelector {
    /// One resource by id.
    Id(String),
    /// Every resource with this tag.
    Tag {
        /// Tag key.
        key: String,
        /// Tag value.
        value: String,
    },
}

impl ResourceSelector {
    /// The storage key (`id:<id>` or `tag:<key>=<value>`).
    pub fn key(&self) -> String {
        match self {
            ResourceSelector::Id(id) => format!("id:{id}"),
            ResourceSelector::Tag { key, value } => format!("tag:{key}={value}"),
        }
    }
}

/// Per-resource operator config (the seeds' InstanceConfig).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ResourceConfigRecord {
    /// Which resources.
    pub selector: ResourceSelector,
    /// Never act automatically.
    #[serde(default)]
    pub skip_recovery: bool,
    /// Cooldown override, minutes.
    #[serde(default)]
    pub cooldown_minutes: Option<u32>,
    /// Only these actions.
    #[serde(default)]
    pub allowed_actions: Option<Vec<ActionKind>>,
}

/// The operator config that applies to one resource: every matching record
/// (and operator facts) combined fail-safe.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ResourceSettings {
    /// Never act automatically: a `true` from any source wins.
    pub skip_recovery: bool,
    /// Cooldown override, minutes: the longest of the sources'.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_minutes: Option<u32>,
    /// Only these actions: the kinds every source that lists some allows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_actions: Option<Vec<ActionKind>>,
}

impl ResourceSettings {
    /// Both sources' settings, fail-safe: skip if either skips, the longer
    /// cooldown, the kinds both allow.
    pub fn combine(&self, other: &ResourceSettings) -> ResourceSettings {
        let allowed_actions = match (&self.allowed_actions, &other.allowed_actions) {
            (Some(a), Some(b)) => Some(a.iter().filter(|k| b.contains(k)).copied().collect()),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        ResourceSettings {
            skip_recovery: self.skip_recovery || other.skip_recovery,
            cooldown_minutes: self.cooldown_minutes.max(other.cooldown_minutes),
            allowed_actions,
        }
    }
}

impl ResourceConfigRecord {
    /// This record's settings.
    pub fn settings(&self) -> ResourceSettings {
        ResourceSettings {
            skip_recovery: self.skip_recovery,
            cooldown_minutes: self.cooldown_minutes,
            allowed_actions: self.allowed_actions.clone(),
        }
    }

    /// Whether this record applies to the resource `id` with `tags`.
    pub fn matches(&self, id: &str, tags: &BTreeMap<String, String>) -> bool {
        match &self.selector {
            ResourceSelector::Id(s) => s == id,
            ResourceSelector::Tag { key, value } => tags.get(key) == Some(value),
        }
    }

    /// The settings that apply to a resource: every matching record (by id and
    /// by tag) combined fail-safe, so a `skip-recovery` on a tag is not lost to
    /// an id record that does not set it. `None` when no record matches.
    pub fn settings_for(
        configs: &[ResourceConfigRecord],
        id: &str,
        tags: &BTreeMap<String, String>,
    ) -> Option<ResourceSettings> {
        configs
            .iter()
            .filter(|c| c.matches(id, tags))
            .map(ResourceConfigRecord::settings)
            .reduce(|a, b| a.combine(&b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LifecycleState::*;

    #[test]
    fn terminal_states_are_final_and_acting_needs_a_decision() {
        for t in [Healed, Escalated, Denied, Ignored] {
            assert!(t.is_terminal());
            for to in [
                Detected, Decided, Acting, Verifying, Healed, Escalated, Denied, Ignored,
            ] {
                assert!(!t.can_move_to(to), "{t} → {to}");
            }
        }
        assert!(!Detected.can_move_to(Acting));
        assert!(Decided.can_move_to(Acting));
        assert!(Acting.can_move_to(Verifying));
        assert!(Verifying.can_move_to(Healed));
        assert_eq!(LifecycleState::parse("verifying"), Some(Verifying));
    }

    #[test]
    fn matching_records_combine_fail_safe() {
        let configs = vec![
            ResourceConfigRecord {
                selector: ResourceSelector::Tag {
                    key: "team".into(),
                    value: "a".into(),
                },
                skip_recovery: true,
                cooldown_minutes: Some(30),
                allowed_actions: Some(vec![ActionKind::RebootInstance, ActionKind::Notify]),
            },
            ResourceConfigRecord {
                selector: ResourceSelector::Id("i-1".into()),
                skip_recovery: false,
                cooldown_minutes: Some(5),
                allowed_actions: Some(vec![
                    ActionKind::ReplaceInstance,
                    ActionKind::RebootInstance,
                ]),
            },
        ];
        let tags = BTreeMap::from([("team".to_owned(), "a".to_owned())]);
        let both = ResourceConfigRecord::settings_for(&configs, "i-1", &tags).expect("matches");
        // Issue 11, item 8: a skip-recovery from any matching record wins.
        assert!(
            both.skip_recovery,
            "the tag record's skip-recovery is not lost"
        );
        assert_eq!(both.cooldown_minutes, Some(30));
        assert_eq!(both.allowed_actions, Some(vec![ActionKind::RebootInstance]));
        let id_only = ResourceConfigRecord::settings_for(&configs, "i-1", &BTreeMap::new());
        assert_eq!(id_only.map(|s| s.skip_recovery), Some(false));
        assert!(
            ResourceConfigRecord::settings_for(&configs, "i-2", &tags)
                .is_some_and(|c| c.skip_recovery)
        );
        assert!(ResourceConfigRecord::settings_for(&configs, "i-2", &BTreeMap::new()).is_none());
    }

    #[test]
    fn typed_states_keep_their_wire_spelling() {
        for (outcome, json) in [
            (Outcome::Running, serde_json::json!("running")),
            (Outcome::Succeeded, serde_json::json!("succeeded")),
            (Outcome::DryRun, serde_json::json!("dry-run")),
            (Outcome::Interrupted, serde_json::json!("interrupted")),
            (
                Outcome::Superseded("already stopped".into()),
                serde_json::json!({"superseded": "already stopped"}),
            ),
            (
                Outcome::Failed("boom".into()),
                serde_json::json!({"failed": "boom"}),
            ),
        ] {
            assert_eq!(serde_json::to_value(&outcome).expect("json"), json);
            assert_eq!(
                serde_json::from_value::<Outcome>(json).expect("reads"),
                outcome
            );
        }
        // A verdict record as earlier versions stored it.
        let old =
            r#"{"step":0,"verdict":"denied","rule":"blast-radius","reason":"storm mode: 3 of 6"}"#;
        let v: VerdictRecord = serde_json::from_str(old).expect("reads");
        assert_eq!(
            (v.verdict, v.rule),
            (VerdictKind::Denied, Some(Rule::BlastRadius))
        );
        assert_eq!(serde_json::to_string(&v).expect("json"), old);
    }
}
