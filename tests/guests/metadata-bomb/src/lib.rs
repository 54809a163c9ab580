//! A policy whose `metadata()` is a bomb: 20 000 config fields with long
//! descriptions, megabytes the host would copy and keep at load. The host must
//! refuse it at load with an invalid-metadata error (issue 11).

use healer_sdk::*;

/// The policy.
pub struct MetadataBomb;

impl Policy for MetadataBomb {
    fn metadata() -> Metadata {
        let mut m = Metadata::new("metadata-bomb", "0.0.1")
            .handles([IncidentKind::Alarm])
            .proposes([ActionKind::Notify]);
        let description = "d".repeat(200);
        for i in 0..20_000 {
            m.config_schema.push(ConfigField {
                name: format!("field-{i}"),
                description: description.clone(),
                default_value: None,
            });
        }
        m
    }

    fn decide(_incident: &Incident, _ctx: &Context) -> Result<Decision, String> {
        Ok(Decision::new("never reached"))
    }
}

export_policy!(MetadataBomb);
