//! What the host tells a policy about an incident's surroundings: tags, recent
//! history, per-resource config and the policy's own config values.
//!
//! This is the `--context` JSON of `healer policy eval`; the pipeline fills it from
//! the store and AWS. Every field defaults to empty.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::decision::ActionKind;

/// An action the host took earlier on the resource or its group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PastAction {
    /// The action kind.
    pub kind: ActionKind,
    /// The target resource id.
    pub target: String,
    /// When it ran.
    pub at: DateTime<Utc>,
    /// `succeeded`, `failed`, `denied` or `dry-run`.
    pub outcome: String,
}

/// Operator configuration for one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ResourceConfig {
    /// Never act on this resource automatically.
    pub skip_recovery: bool,
    /// Cooldown override in minutes.
    pub cooldown_minutes: Option<u32>,
    /// When set, only these actions may be taken.
    pub allowed_actions: Option<Vec<ActionKind>>,
}

/// The decision context handed to `decide`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct PolicyContext {
    /// The resource's tags.
    pub tags: BTreeMap<String, String>,
    /// Incidents on this resource in the recent window (this one excluded).
    pub recent_incidents_resource: u32,
    /// Incidents on the group in the recent window (this one excluded).
    pub recent_incidents_group: u32,
    /// Last actions on the resource or group, newest first.
    pub last_actions: Vec<PastAction>,
    /// Per-resource operator config.
    pub resource_config: ResourceConfig,
    /// The policy's own config values.
    pub config: BTreeMap<String, String>,
}
