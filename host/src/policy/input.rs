//! The exact input of one decision: the incident and the context the policy
//! saw, as canonical JSON, and its hash. A policy is a pure function of this
//! input (virtual clock and seeded randomness come from it), so a recorded
//! input replays a decision bit for bit.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::PolicyContext;
use crate::incident::Incident;

/// What `decide` was called with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PolicyInput {
    /// The incident.
    pub incident: Incident,
    /// The context the host built for it.
    pub context: PolicyContext,
    /// The decision's virtual time (the policy's clocks read it).
    pub now: DateTime<Utc>,
}

impl PolicyInput {
    /// The input of deciding `incident` in `context`.
    pub fn new(incident: &Incident, context: &PolicyContext, now: DateTime<Utc>) -> Self {
        PolicyInput {
            incident: incident.clone(),
            context: context.clone(),
            now,
        }
    }

    /// Canonical JSON: object keys sorted, no whitespace. Equal inputs give
    /// equal bytes.
    pub fn canonical_json(&self) -> String {
        // serde_json's map is ordered (no `preserve_order` feature), so going
        // through a `Value` sorts every object's keys.
        serde_json::to_value(self)
            .map(|v| v.to_string())
            .unwrap_or_default()
    }

    /// sha256 of the canonical JSON, hex: the key inputs are stored under.
    pub fn hash(&self) -> String {
        self.encoded().1
    }

    /// The canonical JSON and its hash, serialized once (what the store keeps).
    pub fn encoded(&self) -> (String, String) {
        let json = self.canonical_json();
        let hash = hex::encode(Sha256::digest(json.as_bytes()));
        (json, hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(tags: &[(&str, &str)]) -> PolicyInput {
        let incident = Incident::from_json(
            br#"{"kind":"alarm","resource":{"kind":"alarm","id":"a"},"detected-at":"2024-05-01T10:00:00Z"}"#,
        )
        .expect("incident");
        let mut context = PolicyContext::default();
        for (k, v) in tags {
            context.tags.insert((*k).to_owned(), (*v).to_owned());
        }
        let now = incident.detected_at;
        PolicyInput::new(&incident, &context, now)
    }

    #[test]
    fn the_hash_covers_the_context_and_round_trips() {
        let a = input(&[("SelfHeal", "true")]);
        let b = input(&[("SelfHeal", "false")]);
        assert_ne!(a.hash(), b.hash(), "the context is part of the input");
        let back: PolicyInput = serde_json::from_str(&a.canonical_json()).expect("parses");
        assert_eq!(back, a);
        assert_eq!(back.hash(), a.hash());
    }
}
