//! Builders for the rule tests: an instance incident in Auto Scaling group
//! `web`, a task incident in service `prod/api`, a function incident, their
//! facts, and one-call judging.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::decision::Action;
use crate::incident::{IncidentKind, IncidentParts, ResourceKind, ResourceRef};
use crate::store::Outcome;

/// The task of [`task_incident`].
pub const TASK: &str = "arn:aws:ecs:eu-west-1:111:task/prod/abc";
/// Its service.
pub const SERVICE: &str = "arn:aws:ecs:eu-west-1:111:service/prod/api";

pub fn now() -> DateTime<Utc> {
    chrono::TimeZone::timestamp_opt(&Utc, 1_714_557_600, 0)
        .single()
        .expect("valid")
}

fn incident(kind: IncidentKind, resource: ResourceRef, group: Option<ResourceRef>) -> Incident {
    Incident::new(IncidentParts {
        kind,
        source: "test".into(),
        dedupe_key: format!("{}#test", resource.id),
        resource,
        group,
        reason: "test".into(),
        detail: BTreeMap::new(),
        detected_at: now(),
    })
}

pub fn instance_incident(id: &str) -> Incident {
    incident(
        IncidentKind::InstanceImpaired,
        ResourceRef::new(ResourceKind::Ec2Instance, id),
        Some(ResourceRef::new(ResourceKind::AutoscalingGroup, "web")),
    )
}

pub fn task_incident() -> Incident {
    incident(
        IncidentKind::TaskCrashed,
        ResourceRef::new(ResourceKind::EcsTask, TASK),
        Some(ResourceRef::new(ResourceKind::EcsService, SERVICE)),
    )
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

/// `i-1` tagged `SelfHeal=true` in group `web` of 6.
pub fn tagged() -> Facts {
    let mut f = Facts::default();
    f.entry("i-1").tags = Some(BTreeMap::from([("SelfHeal".to_owned(), "true".to_owned())]));
    f.entry("web").group_size = Some(6);
    f
}

/// Service [`SERVICE`] running `task_definition` with `desired` tasks.
pub fn service_facts(task_definition: &str, desired: u32) -> Facts {
    let mut f = Facts::default();
    let s = f.entry(SERVICE);
    s.tags = Some(BTreeMap::new());
    s.group_size = Some(desired);
    s.service = Some(ServiceFacts {
        task_definition: task_definition.into(),
        desired_count: desired,
    });
    f
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

/// A finished action in service [`SERVICE`].
pub fn service_action(kind: ActionKind, target: &str, minutes_ago: i64) -> ActionRecord {
    ActionRecord {
        group: Some(SERVICE.into()),
        ..action(kind, target, minutes_ago, false)
    }
}

fn judge_all(
    incident: &Incident,
    steps: Vec<Step>,
    declared: &[ActionKind],
    facts: &Facts,
    history: &History,
    config: GovernorConfig,
) -> Judgement {
    let decision = Decision {
        steps,
        verify: None,
        summary: "t".into(),
    };
    Governor::new(config).judge(incident, &decision, declared, facts, history, now())
}

/// Judges one step of an incident on `i-1` with the given facts and history.
pub fn judge_one(step: Step, facts: &Facts, history: &History, config: GovernorConfig) -> Verdict {
    let declared = [
        ActionKind::ReplaceInstance,
        ActionKind::Notify,
        ActionKind::RebootInstance,
        ActionKind::SetInstanceUnhealthy,
        ActionKind::RunDiagnostics,
        ActionKind::RunCommand,
    ];
    let incident = instance_incident("i-1");
    judge_all(&incident, vec![step], &declared, facts, history, config)
        .verdicts
        .remove(0)
        .verdict
}

const ECS_KINDS: [ActionKind; 5] = [
    ActionKind::RestartTask,
    ActionKind::ForceNewDeployment,
    ActionKind::RollbackDeployment,
    ActionKind::ScaleService,
    ActionKind::Notify,
];

/// Judges steps of the task incident ([`task_incident`]).
pub fn judge_service_steps(steps: Vec<Step>, facts: &Facts, config: GovernorConfig) -> Judgement {
    judge_all(
        &task_incident(),
        steps,
        &ECS_KINDS,
        facts,
        &History::default(),
        config,
    )
}

/// Judges one step of the task incident with a history.
pub fn judge_service_with(
    step: Step,
    facts: &Facts,
    history: &History,
    config: GovernorConfig,
) -> Verdict {
    judge_all(
        &task_incident(),
        vec![step],
        &ECS_KINDS,
        facts,
        history,
        config,
    )
    .verdicts
    .remove(0)
    .verdict
}

/// Judges one step of the task incident.
pub fn judge_service(step: Step, facts: &Facts, config: GovernorConfig) -> Verdict {
    judge_service_with(step, facts, &History::default(), config)
}

/// Judges one step of a function-errors incident on `fragile-fn`.
pub fn judge_function(step: Step, config: GovernorConfig) -> Verdict {
    let incident = incident(
        IncidentKind::FunctionErrors,
        ResourceRef::new(ResourceKind::LambdaFunction, "fragile-fn"),
        None,
    );
    let declared = [ActionKind::UpdateFunctionConfig, ActionKind::Notify];
    judge_all(
        &incident,
        vec![step],
        &declared,
        &Facts::default(),
        &History::default(),
        config,
    )
    .verdicts
    .remove(0)
    .verdict
}
