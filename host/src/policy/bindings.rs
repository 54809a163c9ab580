//! Host-side bindings of the `healer:policy` world and the conversions between
//! WIT values and the host's own types. Nothing outside `policy/` sees WIT types.

use chrono::{DateTime, Utc};

use crate::decision::{Action, ActionKind, Decision, Step, VerifyMethod, VerifySpec};
use crate::incident::{Incident, IncidentKind, ResourceKind, ResourceRef};
use crate::policy::context::PolicyContext;
use crate::policy::{ConfigField, PolicyMetadata};

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "healing-policy",
    });
}

pub(crate) use generated::healer::policy::host::{Host, Level};
use generated::healer::policy::types as wit;
pub(crate) use generated::healer::policy::types::Host as TypesHost;
pub(crate) use generated::{HealingPolicy, HealingPolicyPre};

fn ms(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp_millis()).unwrap_or(0)
}

fn attrs<'a>(it: impl Iterator<Item = (&'a String, &'a String)>) -> Vec<wit::Attribute> {
    it.map(|(k, v)| wit::Attribute {
        key: k.clone(),
        value: v.clone(),
    })
    .collect()
}

impl From<IncidentKind> for wit::IncidentKind {
    fn from(k: IncidentKind) -> Self {
        match k {
            IncidentKind::TaskCrashed => wit::IncidentKind::TaskCrashed,
            IncidentKind::TaskHealthCheckFailed => wit::IncidentKind::TaskHealthCheckFailed,
            IncidentKind::TaskStartFailed => wit::IncidentKind::TaskStartFailed,
            IncidentKind::ServiceImpaired => wit::IncidentKind::ServiceImpaired,
            IncidentKind::DeploymentFailed => wit::IncidentKind::DeploymentFailed,
            IncidentKind::InstanceImpaired => wit::IncidentKind::InstanceImpaired,
            IncidentKind::InstanceRetiring => wit::IncidentKind::InstanceRetiring,
            IncidentKind::SpotInterruption => wit::IncidentKind::SpotInterruption,
            IncidentKind::TargetUnhealthy => wit::IncidentKind::TargetUnhealthy,
            IncidentKind::FunctionErrors => wit::IncidentKind::FunctionErrors,
            IncidentKind::Alarm => wit::IncidentKind::Alarm,
        }
    }
}

impl From<wit::IncidentKind> for IncidentKind {
    fn from(k: wit::IncidentKind) -> Self {
        match k {
            wit::IncidentKind::TaskCrashed => IncidentKind::TaskCrashed,
            wit::IncidentKind::TaskHealthCheckFailed => IncidentKind::TaskHealthCheckFailed,
            wit::IncidentKind::TaskStartFailed => IncidentKind::TaskStartFailed,
            wit::IncidentKind::ServiceImpaired => IncidentKind::ServiceImpaired,
            wit::IncidentKind::DeploymentFailed => IncidentKind::DeploymentFailed,
            wit::IncidentKind::InstanceImpaired => IncidentKind::InstanceImpaired,
            wit::IncidentKind::InstanceRetiring => IncidentKind::InstanceRetiring,
            wit::IncidentKind::SpotInterruption => IncidentKind::SpotInterruption,
            wit::IncidentKind::TargetUnhealthy => IncidentKind::TargetUnhealthy,
            wit::IncidentKind::FunctionErrors => IncidentKind::FunctionErrors,
            wit::IncidentKind::Alarm => IncidentKind::Alarm,
        }
    }
}

impl From<ResourceKind> for wit::ResourceKind {
    fn from(k: ResourceKind) -> Self {
        match k {
            ResourceKind::EcsTask => wit::ResourceKind::EcsTask,
            ResourceKind::EcsService => wit::ResourceKind::EcsService,
            ResourceKind::Ec2Instance => wit::ResourceKind::Ec2Instance,
            ResourceKind::Target => wit::ResourceKind::Target,
            ResourceKind::TargetGroup => wit::ResourceKind::TargetGroup,
            ResourceKind::LambdaFunction => wit::ResourceKind::LambdaFunction,
            ResourceKind::AutoscalingGroup => wit::ResourceKind::AutoscalingGroup,
            ResourceKind::Alarm => wit::ResourceKind::Alarm,
        }
    }
}

impl From<ActionKind> for wit::ActionKind {
    fn from(k: ActionKind) -> Self {
        match k {
            ActionKind::RestartTask => wit::ActionKind::RestartTask,
            ActionKind::ForceNewDeployment => wit::ActionKind::ForceNewDeployment,
            ActionKind::RollbackDeployment => wit::ActionKind::RollbackDeployment,
            ActionKind::ScaleService => wit::ActionKind::ScaleService,
            ActionKind::RebootInstance => wit::ActionKind::RebootInstance,
            ActionKind::ReplaceInstance => wit::ActionKind::ReplaceInstance,
            ActionKind::SetInstanceUnhealthy => wit::ActionKind::SetInstanceUnhealthy,
            ActionKind::DeregisterTarget => wit::ActionKind::DeregisterTarget,
            ActionKind::RegisterTarget => wit::ActionKind::RegisterTarget,
            ActionKind::RunDiagnostics => wit::ActionKind::RunDiagnostics,
            ActionKind::RunCommand => wit::ActionKind::RunCommand,
            ActionKind::UpdateFunctionConfig => wit::ActionKind::UpdateFunctionConfig,
            ActionKind::Notify => wit::ActionKind::Notify,
            ActionKind::Escalate => wit::ActionKind::Escalate,
            ActionKind::NoOp => wit::ActionKind::NoOp,
        }
    }
}

impl From<wit::ActionKind> for ActionKind {
    fn from(k: wit::ActionKind) -> Self {
        match k {
            wit::ActionKind::RestartTask => ActionKind::RestartTask,
            wit::ActionKind::ForceNewDeployment => ActionKind::ForceNewDeployment,
            wit::ActionKind::RollbackDeployment => ActionKind::RollbackDeployment,
            wit::ActionKind::ScaleService => ActionKind::ScaleService,
            wit::ActionKind::RebootInstance => ActionKind::RebootInstance,
            wit::ActionKind::ReplaceInstance => ActionKind::ReplaceInstance,
            wit::ActionKind::SetInstanceUnhealthy => ActionKind::SetInstanceUnhealthy,
            wit::ActionKind::DeregisterTarget => ActionKind::DeregisterTarget,
            wit::ActionKind::RegisterTarget => ActionKind::RegisterTarget,
            wit::ActionKind::RunDiagnostics => ActionKind::RunDiagnostics,
            wit::ActionKind::RunCommand => ActionKind::RunCommand,
            wit::ActionKind::UpdateFunctionConfig => ActionKind::UpdateFunctionConfig,
            wit::ActionKind::Notify => ActionKind::Notify,
            wit::ActionKind::Escalate => ActionKind::Escalate,
            wit::ActionKind::NoOp => ActionKind::NoOp,
        }
    }
}

fn resource_ref(r: &ResourceRef) -> wit::ResourceRef {
    wit::ResourceRef {
        kind: r.kind.into(),
        id: r.id.clone(),
        region: r.region.clone(),
        account: r.account.clone(),
    }
}

/// Lowers a host incident to its WIT form.
pub(crate) fn incident(i: &Incident) -> wit::Incident {
    wit::Incident {
        id: i.id.to_string(),
        kind: i.kind.into(),
        source: i.source.clone(),
        resource: resource_ref(&i.resource),
        group: i.group.as_ref().map(resource_ref),
        reason: i.reason.clone(),
        detail: attrs(i.detail.iter()),
        detected_at: ms(i.detected_at),
        dedupe_key: i.dedupe_key.clone(),
    }
}

/// Lowers a host context to its WIT form.
pub(crate) fn context(c: &PolicyContext) -> wit::Context {
    wit::Context {
        tags: attrs(c.tags.iter()),
        recent_incidents_resource: c.recent_incidents_resource,
        recent_incidents_group: c.recent_incidents_group,
        last_actions: c
            .last_actions
            .iter()
            .map(|a| wit::PastAction {
                kind: a.kind.into(),
                target: a.target.clone(),
                at: ms(a.at),
                outcome: a.outcome.clone(),
            })
            .collect(),
        resource_config: wit::ResourceConfig {
            skip_recovery: c.resource_config.skip_recovery,
            cooldown_minutes: c.resource_config.cooldown_minutes,
            allowed_actions: c
                .resource_config
                .allowed_actions
                .as_ref()
                .map(|v| v.iter().map(|k| (*k).into()).collect()),
        },
        config: attrs(c.config.iter()),
    }
}

fn pairs(list: Vec<wit::Attribute>) -> Vec<(String, String)> {
    list.into_iter().map(|a| (a.key, a.value)).collect()
}

fn action(a: wit::Action) -> Action {
    match a {
        wit::Action::RestartTask(t) => Action::RestartTask {
            cluster: t.cluster,
            task: t.task,
        },
        wit::Action::ForceNewDeployment(t) => Action::ForceNewDeployment {
            cluster: t.cluster,
            service: t.service,
        },
        wit::Action::RollbackDeployment(t) => Action::RollbackDeployment {
            cluster: t.cluster,
            service: t.service,
            task_definition: t.task_definition,
        },
        wit::Action::ScaleService(t) => Action::ScaleService {
            cluster: t.cluster,
            service: t.service,
            desired_count: t.desired_count,
        },
        wit::Action::RebootInstance(id) => Action::RebootInstance { instance_id: id },
        wit::Action::ReplaceInstance(t) => Action::ReplaceInstance {
            instance_id: t.instance_id,
            move_elastic_ip: t.move_elastic_ip,
        },
        wit::Action::SetInstanceUnhealthy(t) => Action::SetInstanceUnhealthy {
            group: t.group,
            instance_id: t.instance_id,
        },
        wit::Action::DeregisterTarget(t) => Action::DeregisterTarget {
            target_group: t.target_group,
            target_id: t.target_id,
            port: t.port,
        },
        wit::Action::RegisterTarget(t) => Action::RegisterTarget {
            target_group: t.target_group,
            target_id: t.target_id,
            port: t.port,
        },
        wit::Action::RunDiagnostics(t) => Action::RunDiagnostics {
            instance_id: t.instance_id,
            document: t.name,
        },
        wit::Action::RunCommand(t) => Action::RunCommand {
            instance_id: t.instance_id,
            command: t.name,
        },
        wit::Action::UpdateFunctionConfig(t) => Action::UpdateFunctionConfig {
            function_name: t.function_name,
            environment: pairs(t.environment),
        },
        wit::Action::Notify(n) => Action::Notify {
            channel: n.channel,
            subject: n.subject,
            message: n.message,
        },
        wit::Action::Escalate(message) => Action::Escalate { message },
        wit::Action::NoOp => Action::NoOp,
    }
}

/// Lifts a WIT decision into the host's type.
pub(crate) fn decision(d: wit::Decision) -> Decision {
    Decision {
        steps: d
            .steps
            .into_iter()
            .map(|s| Step {
                action: action(s.action),
                reason: s.reason,
            })
            .collect(),
        verify: d.verify.map(|v| VerifySpec {
            method: match v.method {
                wit::VerifyMethod::RecoverySignal => VerifyMethod::RecoverySignal,
                wit::VerifyMethod::Poll => VerifyMethod::Poll,
            },
            deadline_secs: v.deadline_secs,
        }),
        summary: d.summary,
    }
}

/// Lifts WIT metadata into the host's type.
pub(crate) fn metadata(m: wit::Metadata) -> PolicyMetadata {
    PolicyMetadata {
        name: m.name,
        version: m.version,
        handles: m.handles.into_iter().map(Into::into).collect(),
        proposes: m.proposes.into_iter().map(Into::into).collect(),
        config_schema: m
            .config_schema
            .into_iter()
            .map(|f| ConfigField {
                name: f.name,
                description: f.description,
                default_value: f.default_value,
            })
            .collect(),
    }
}
