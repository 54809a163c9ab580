//! The governor's limits (`GovernorConfig`, JSON via `--governor`), with their
//! documented defaults. Parsing validates (unknown keys are errors); the rules
//! only read it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::Duration;
use serde::{Deserialize, Serialize};

use crate::decision::ActionKind;

use super::params::ParamsConfig;

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
    /// How long a held step may wait for its approval, minutes; past it an
    /// answer is refused and the step is denied. Default 60.
    pub approval_ttl_minutes: u32,
    /// What a step may set: rollback targets, scale bounds, environment keys,
    /// SSM documents and commands (see [`ParamsConfig`] for the defaults).
    pub params: ParamsConfig,
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
            approval_ttl_minutes: 60,
            params: ParamsConfig::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_optional_and_unknown_keys_are_errors() {
        let c: GovernorConfig = serde_json::from_str("{}").expect("empty config");
        assert_eq!(c, GovernorConfig::default());
        let c: GovernorConfig =
            serde_json::from_str(r#"{"params": {"scale-max-factor": 3}}"#).expect("params");
        assert_eq!(c.params.scale_max_factor, 3);
        assert_eq!(
            c.params.env_keys,
            ["FAILURE_RATE"],
            "the other defaults stay"
        );
        assert!(serde_json::from_str::<GovernorConfig>(r#"{"dry-rn": true}"#).is_err());
        assert!(serde_json::from_str::<GovernorConfig>(r#"{"params": {"x": 1}}"#).is_err());
    }
}
