//! The persisted policy set's records: one compare-and-set record in the
//! store's shared control state, which every replica follows (see
//! [`super::catalog`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The control-state key holding the [`PolicySet`].
pub const POLICY_SET_KEY: &str = "policy-set";
/// Activations kept per policy (how far rollback can walk back).
const MAX_ACTIVATIONS: usize = 32;

/// The persisted policy set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
// No `deny_unknown_fields` on the persisted records: a newer replica may add
// a field during a rolling deploy, and the older ones must keep following.
#[serde(rename_all = "kebab-case")]
pub struct PolicySet {
    /// Pointers by policy name.
    #[serde(default)]
    pub policies: BTreeMap<String, PolicyPointer>,
    /// A random id of the change that wrote this version: a writer whose
    /// compare-and-set answer was lost (a timeout after DynamoDB applied it,
    /// then the SDK's retry failing the condition) recognizes its own write
    /// instead of applying the change twice.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub change: String,
}

/// What one policy name points at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyPointer {
    /// sha256s activated, oldest first; the last is the active version.
    pub activations: Vec<String>,
    /// The version deciding in shadow, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<String>,
    /// When it last changed.
    pub changed_at: DateTime<Utc>,
    /// Who changed it (`api`, `dir`, `start`).
    pub changed_by: String,
    /// Retired: runs nowhere. Kept (with its history) so a restart does not
    /// bring it back from the image; a push, or a file changed after it was
    /// retired, does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retired: bool,
    /// Limits the operator set for this policy through the admin API
    /// (`memory-bytes` = …); plain pairs, so a key a newer replica adds does
    /// not make the set unreadable here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, u64>,
}

impl PolicyPointer {
    /// The active version's sha256.
    pub fn active(&self) -> Option<&str> {
        self.activations.last().map(String::as_str)
    }

    pub(super) fn activate(&mut self, sha256: &str) {
        self.retired = false;
        if self.active() != Some(sha256) {
            self.activations.push(sha256.to_owned());
        }
        if self.activations.len() > MAX_ACTIVATIONS {
            let excess = self.activations.len() - MAX_ACTIVATIONS;
            self.activations.drain(..excess);
        }
        if self.shadow.as_deref() == Some(sha256) {
            self.shadow = None;
        }
    }
}

/// The pointer of `name`, created empty.
pub(super) fn pointer<'a>(set: &'a mut PolicySet, name: &str) -> &'a mut PolicyPointer {
    set.policies
        .entry(name.to_owned())
        .or_insert_with(|| PolicyPointer {
            activations: Vec::new(),
            shadow: None,
            changed_at: Utc::now(),
            changed_by: String::new(),
            retired: false,
            limits: BTreeMap::new(),
        })
}
