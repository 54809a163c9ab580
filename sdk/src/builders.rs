//! Ergonomic constructors and accessors on the WIT types, so a policy reads like
//! its intent rather than like nested records.

use crate::{
    Action, ActionKind, AsgInstanceTarget, Attribute, ConfigField, Context, Decision,
    FunctionConfigTarget, Incident, IncidentKind, LbTarget, Metadata, Notification, ReplaceTarget,
    ResourceConfig, RollbackTarget, ScaleTarget, ServiceTarget, SsmTarget, Step, TaskTarget,
    VerifyMethod, VerifySpec,
};

fn find<'a>(list: &'a [Attribute], key: &str) -> Option<&'a str> {
    list.iter().find(|a| a.key == key).map(|a| a.value.as_str())
}

/// Splits an ECS ARN's resource part: `arn:aws:ecs:r:a:service/cluster/name` →
/// `["service", "cluster", "name"]`.
fn ecs_arn_parts(arn: &str) -> Option<Vec<&str>> {
    let resource = arn.splitn(6, ':').nth(5)?;
    Some(resource.split('/').collect())
}

impl Metadata {
    /// Metadata with a name and version; add kinds with [`Metadata::handles`].
    pub fn new(name: &str, version: &str) -> Self {
        Metadata {
            name: name.to_owned(),
            version: version.to_owned(),
            handles: Vec::new(),
            proposes: Vec::new(),
            config_schema: Vec::new(),
        }
    }

    /// Incident kinds this policy decides on.
    pub fn handles(mut self, kinds: impl IntoIterator<Item = IncidentKind>) -> Self {
        self.handles.extend(kinds);
        self
    }

    /// Action kinds this policy may propose (the governor denies any other).
    pub fn proposes(mut self, kinds: impl IntoIterator<Item = ActionKind>) -> Self {
        self.proposes.extend(kinds);
        self
    }

    /// Declares a config value the policy reads from [`Context::config`].
    pub fn config(mut self, name: &str, description: &str, default: Option<&str>) -> Self {
        self.config_schema.push(ConfigField {
            name: name.to_owned(),
            description: description.to_owned(),
            default_value: default.map(str::to_owned),
        });
        self
    }
}

impl Decision {
    /// An empty plan with a summary; add steps with [`Decision::step`].
    pub fn new(summary: impl Into<String>) -> Self {
        Decision {
            steps: Vec::new(),
            verify: None,
            summary: summary.into(),
        }
    }

    /// A plan that does nothing, with the reason as summary.
    pub fn nothing(summary: impl Into<String>) -> Self {
        Decision::new(summary)
    }

    /// Appends a step.
    pub fn step(mut self, action: Action, reason: impl Into<String>) -> Self {
        self.steps.push(Step {
            action,
            reason: reason.into(),
        });
        self
    }

    /// Says how recovery is proven and how long to wait before escalating.
    pub fn verify(mut self, method: VerifyMethod, deadline_secs: u32) -> Self {
        self.verify = Some(VerifySpec {
            method,
            deadline_secs,
        });
        self
    }
}

impl Action {
    /// Stop an ECS task so its service replaces it.
    pub fn restart_task(cluster: &str, task: &str) -> Self {
        Action::RestartTask(TaskTarget {
            cluster: cluster.to_owned(),
            task: task.to_owned(),
        })
    }

    /// Force a new deployment of an ECS service.
    pub fn force_new_deployment(cluster: &str, service: &str) -> Self {
        Action::ForceNewDeployment(ServiceTarget {
            cluster: cluster.to_owned(),
            service: service.to_owned(),
        })
    }

    /// Roll an ECS service back to its previous task definition.
    pub fn rollback_deployment(cluster: &str, service: &str) -> Self {
        Action::RollbackDeployment(RollbackTarget {
            cluster: cluster.to_owned(),
            service: service.to_owned(),
            task_definition: None,
        })
    }

    /// Set an ECS service's desired count.
    pub fn scale_service(cluster: &str, service: &str, desired_count: u32) -> Self {
        Action::ScaleService(ScaleTarget {
            cluster: cluster.to_owned(),
            service: service.to_owned(),
            desired_count,
        })
    }

    /// Reboot an EC2 instance.
    pub fn reboot_instance(instance_id: &str) -> Self {
        Action::RebootInstance(instance_id.to_owned())
    }

    /// Recover an EBS-backed EC2 instance by stop and start: new hardware,
    /// same id, volumes and Elastic IP (world 0.2.0).
    pub fn recover_instance(instance_id: &str) -> Self {
        Action::RecoverInstance(instance_id.to_owned())
    }

    /// Replace an EC2 instance with a twin, moving its Elastic IP.
    pub fn replace_instance(instance_id: &str) -> Self {
        Action::ReplaceInstance(ReplaceTarget {
            instance_id: instance_id.to_owned(),
            move_elastic_ip: true,
        })
    }

    /// Mark an instance Unhealthy in its Auto Scaling group.
    pub fn set_instance_unhealthy(group: &str, instance_id: &str) -> Self {
        Action::SetInstanceUnhealthy(AsgInstanceTarget {
            group: group.to_owned(),
            instance_id: instance_id.to_owned(),
        })
    }

    /// Deregister a load-balancer target.
    pub fn deregister_target(target_group: &str, target_id: &str, port: Option<u32>) -> Self {
        Action::DeregisterTarget(LbTarget {
            target_group: target_group.to_owned(),
            target_id: target_id.to_owned(),
            port,
        })
    }

    /// Run an SSM diagnostics document on an instance.
    pub fn run_diagnostics(instance_id: &str, document: &str) -> Self {
        Action::RunDiagnostics(SsmTarget {
            instance_id: instance_id.to_owned(),
            name: document.to_owned(),
        })
    }

    /// Set environment variables on a Lambda function.
    pub fn update_function_env(function_name: &str, env: &[(&str, &str)]) -> Self {
        Action::UpdateFunctionConfig(FunctionConfigTarget {
            function_name: function_name.to_owned(),
            environment: env
                .iter()
                .map(|(k, v)| Attribute {
                    key: (*k).to_owned(),
                    value: (*v).to_owned(),
                })
                .collect(),
        })
    }

    /// Notify humans on the `default` channel.
    pub fn notify(subject: impl Into<String>, message: impl Into<String>) -> Self {
        Action::Notify(Notification {
            channel: "default".to_owned(),
            subject: subject.into(),
            message: message.into(),
        })
    }

    /// Hand the incident to humans.
    pub fn escalate(message: impl Into<String>) -> Self {
        Action::Escalate(message.into())
    }

    /// The kind of this action.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::RestartTask(_) => ActionKind::RestartTask,
            Action::ForceNewDeployment(_) => ActionKind::ForceNewDeployment,
            Action::RollbackDeployment(_) => ActionKind::RollbackDeployment,
            Action::ScaleService(_) => ActionKind::ScaleService,
            Action::RebootInstance(_) => ActionKind::RebootInstance,
            Action::RecoverInstance(_) => ActionKind::RecoverInstance,
            Action::ReplaceInstance(_) => ActionKind::ReplaceInstance,
            Action::SetInstanceUnhealthy(_) => ActionKind::SetInstanceUnhealthy,
            Action::DeregisterTarget(_) => ActionKind::DeregisterTarget,
            Action::RegisterTarget(_) => ActionKind::RegisterTarget,
            Action::RunDiagnostics(_) => ActionKind::RunDiagnostics,
            Action::RunCommand(_) => ActionKind::RunCommand,
            Action::UpdateFunctionConfig(_) => ActionKind::UpdateFunctionConfig,
            Action::Notify(_) => ActionKind::Notify,
            Action::Escalate(_) => ActionKind::Escalate,
            Action::NoOp => ActionKind::NoOp,
        }
    }
}

impl Incident {
    /// A detail attribute by key.
    pub fn attr(&self, key: &str) -> Option<&str> {
        find(&self.detail, key)
    }

    /// The ECS cluster of an ECS task or service incident: from the resource or
    /// group ARN (`…:task/<cluster>/<id>`, `…:service/<cluster>/<name>`), else the
    /// `cluster` attribute.
    pub fn ecs_cluster(&self) -> Option<&str> {
        [Some(&self.resource.id), self.group.as_ref().map(|g| &g.id)]
            .into_iter()
            .flatten()
            .find_map(|arn| {
                let parts = ecs_arn_parts(arn)?;
                (parts.len() == 3 && !parts[1].is_empty()).then(|| parts[1])
            })
            .or_else(|| self.attr("cluster"))
    }

    /// The ECS service name, from an ECS service resource or group ARN.
    pub fn ecs_service(&self) -> Option<&str> {
        [Some(&self.resource), self.group.as_ref()]
            .into_iter()
            .flatten()
            .filter(|r| r.kind == crate::ResourceKind::EcsService)
            .find_map(|r| match ecs_arn_parts(&r.id)?.as_slice() {
                ["service", _, name] | ["service", name] => Some(*name),
                _ => None,
            })
    }
}

impl Context {
    /// An empty context (no tags, no history, default resource config).
    pub fn empty() -> Self {
        Context {
            tags: Vec::new(),
            recent_incidents_resource: 0,
            recent_incidents_group: 0,
            last_actions: Vec::new(),
            resource_config: ResourceConfig {
                skip_recovery: false,
                cooldown_minutes: None,
                allowed_actions: None,
            },
            config: Vec::new(),
        }
    }

    /// A tag of the resource.
    pub fn tag(&self, key: &str) -> Option<&str> {
        find(&self.tags, key)
    }

    /// A config value of this policy.
    pub fn config(&self, key: &str) -> Option<&str> {
        find(&self.config, key)
    }

    /// A config value or its default.
    pub fn config_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.config(key).unwrap_or(default)
    }
}
