//! A policy compiled against `healer:policy@0.1.0` (as a user's policy built
//! before 0.2.0 was): it reboots the impaired instance and reports, in its
//! summary, the past actions its context shows, so the host's test can check
//! that it loads, decides and never sees an action its world cannot name.

wit_bindgen::generate!({
    path: "../../../wit/0.1.0",
    world: "healing-policy",
});

use healer::policy::types::{Action, ActionKind, IncidentKind, Step};

struct Old;

impl Guest for Old {
    fn metadata() -> Metadata {
        Metadata {
            name: "world-0-1".to_owned(),
            version: "0.1.0".to_owned(),
            handles: vec![IncidentKind::InstanceImpaired],
            proposes: vec![ActionKind::RebootInstance],
            config_schema: Vec::new(),
        }
    }

    fn decide(incident: Incident, context: Context) -> Result<Decision, String> {
        let seen: Vec<String> = context
            .last_actions
            .iter()
            .map(|a| format!("{:?}", a.kind))
            .collect();
        Ok(Decision {
            steps: vec![Step {
                action: Action::RebootInstance(incident.resource.id.clone()),
                reason: "0.1.0 policy".to_owned(),
            }],
            verify: None,
            summary: format!("seen: [{}]", seen.join(",")),
        })
    }
}

export!(Old);
