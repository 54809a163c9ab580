//! Builders for the rule tests: an instance incident in Auto Scaling group
//! `web`, its facts, and one-call judging.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::decision::Action;
use crate::incident::{IncidentKind, IncidentParts, ResourceKind, ResourceRef};
use crate::store::Outcome;

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
        result: if running {
            Outcome::Running
        } else {
            Outcome::Succeeded
        },
        created: Vec::new(),
    }
}

/// Judges one step with the given facts and history.
pub fn judge_one(step: Step, facts: &Facts, history: &History, config: GovernorConfig) -> Verdict {
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
