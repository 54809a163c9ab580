//! The plan a policy returns: ordered steps, each an action with an explicit target
//! and a reason, an optional verify spec and a summary.
//!
//! These are the host's own types (serde, kebab-case), converted from the WIT values
//! at the policy edge, so later stages (governor, executors, store) never see Wasm types.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::incident::ResourceKind;

/// Every action kind a policy may propose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    /// Stop one ECS task so its service replaces it.
    RestartTask,
    /// Force a new deployment of an ECS service.
    ForceNewDeployment,
    /// Roll an ECS service back to an earlier task definition.
    RollbackDeployment,
    /// Change an ECS service's desired count.
    ScaleService,
    /// Reboot an EC2 instance.
    RebootInstance,
    /// Replace an EC2 instance with a twin.
    ReplaceInstance,
    /// Recover an EBS-backed EC2 instance by stop and start (new hardware, same
    /// id, volumes and Elastic IP). World 0.2.0 and later.
    RecoverInstance,
    /// Mark an instance Unhealthy in its Auto Scaling group.
    SetInstanceUnhealthy,
    /// Deregister a load-balancer target.
    DeregisterTarget,
    /// Register a load-balancer target.
    RegisterTarget,
    /// Run an SSM diagnostics document.
    RunDiagnostics,
    /// Run an allow-listed SSM command.
    RunCommand,
    /// Update a Lambda function's environment.
    UpdateFunctionConfig,
    /// Send a notification.
    Notify,
    /// Hand the incident to humans.
    Escalate,
    /// Do nothing.
    NoOp,
}

impl ActionKind {
    /// The wire name (`restart-task`).
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::RestartTask => "restart-task",
            ActionKind::ForceNewDeployment => "force-new-deployment",
            ActionKind::RollbackDeployment => "rollback-deployment",
            ActionKind::ScaleService => "scale-service",
            ActionKind::RebootInstance => "reboot-instance",
            ActionKind::ReplaceInstance => "replace-instance",
            ActionKind::RecoverInstance => "recover-instance",
            ActionKind::SetInstanceUnhealthy => "set-instance-unhealthy",
            ActionKind::DeregisterTarget => "deregister-target",
            ActionKind::RegisterTarget => "register-target",
            ActionKind::RunDiagnostics => "run-diagnostics",
            ActionKind::RunCommand => "run-command",
            ActionKind::UpdateFunctionConfig => "update-function-config",
            ActionKind::Notify => "notify",
            ActionKind::Escalate => "escalate",
            ActionKind::NoOp => "no-op",
        }
    }

    /// Whether the action changes an AWS resource (notify, escalate and no-op do not).
    pub fn is_mutating(self) -> bool {
        !matches!(
            self,
            ActionKind::Notify | ActionKind::Escalate | ActionKind::NoOp
        )
    }

    /// Whether the action touches every member of its group at once: a new
    /// deployment, a rollback or a new desired count replaces or changes every
    /// task of the service, so the blast radius counts it as the whole group.
    pub fn is_group_wide(self) -> bool {
        matches!(
            self,
            ActionKind::ForceNewDeployment
                | ActionKind::RollbackDeployment
                | ActionKind::ScaleService
        )
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of a resource an action names (wider than [`ResourceKind`]: an
/// action also names clusters and task definitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NamedKind {
    /// An ECS cluster (name or ARN).
    EcsCluster,
    /// An ECS service (name or ARN), in a cluster.
    EcsService,
    /// An ECS task (id or ARN), in a cluster.
    EcsTask,
    /// An ECS task definition (`family:revision` or ARN).
    TaskDefinition,
    /// An EC2 instance (`i-…` or ARN).
    Ec2Instance,
    /// A load-balancer target (instance id, IP or Lambda ARN), in a target group.
    Target,
    /// A target group (ARN).
    TargetGroup,
    /// An Auto Scaling group (name or ARN).
    AutoscalingGroup,
    /// A Lambda function (name or ARN).
    LambdaFunction,
}

impl NamedKind {
    /// The wire name (`ecs-cluster`).
    pub fn as_str(self) -> &'static str {
        match self {
            NamedKind::EcsCluster => "ecs-cluster",
            NamedKind::EcsService => "ecs-service",
            NamedKind::EcsTask => "ecs-task",
            NamedKind::TaskDefinition => "task-definition",
            NamedKind::Ec2Instance => "ec2-instance",
            NamedKind::Target => "target",
            NamedKind::TargetGroup => "target-group",
            NamedKind::AutoscalingGroup => "autoscaling-group",
            NamedKind::LambdaFunction => "lambda-function",
        }
    }
}

impl fmt::Display for NamedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One resource an action names, exactly as the policy wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Named<'a> {
    /// What it is.
    pub kind: NamedKind,
    /// The name, id or ARN as written.
    pub id: &'a str,
    /// The container a bare name lives in, as written: a service's or task's
    /// cluster (so `api` in `prod` is not `api` in `staging`).
    pub parent: Option<&'a str>,
    /// It is the action's target ([`Action::target`]).
    pub is_target: bool,
}

impl<'a> Named<'a> {
    fn new(kind: NamedKind, id: &'a str) -> Self {
        Named {
            kind,
            id,
            parent: None,
            is_target: false,
        }
    }

    fn in_cluster(mut self, cluster: &'a str) -> Self {
        self.parent = Some(cluster);
        self
    }

    fn target(mut self) -> Self {
        self.is_target = true;
        self
    }
}

/// A key/value pair kept in order (environment variables).
pub type Pairs = Vec<(String, String)>;

/// One proposed action with its explicit target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum Action {
    /// Stop one ECS task; its service starts a replacement.
    RestartTask {
        /// Cluster name or ARN.
        cluster: String,
        /// Task ARN.
        task: String,
    },
    /// Force a new deployment of a service.
    ForceNewDeployment {
        /// Cluster name or ARN.
        cluster: String,
        /// Service name or ARN.
        service: String,
    },
    /// Roll a service back.
    RollbackDeployment {
        /// Cluster name or ARN.
        cluster: String,
        /// Service name or ARN.
        service: String,
        /// Task definition to roll back to; `None` = the previous one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task_definition: Option<String>,
    },
    /// Set a service's desired count.
    ScaleService {
        /// Cluster name or ARN.
        cluster: String,
        /// Service name or ARN.
        service: String,
        /// New desired count.
        desired_count: u32,
    },
    /// Reboot an instance.
    RebootInstance {
        /// Instance id.
        instance_id: String,
    },
    /// Recover an EBS-backed instance by stop and start.
    RecoverInstance {
        /// Instance id.
        instance_id: String,
    },
    /// Replace an instance with a twin.
    ReplaceInstance {
        /// Instance id.
        instance_id: String,
        /// Move the Elastic IP to the replacement.
        move_elastic_ip: bool,
    },
    /// Mark an instance Unhealthy in its ASG.
    SetInstanceUnhealthy {
        /// ASG name.
        group: String,
        /// Instance id.
        instance_id: String,
    },
    /// Deregister a target.
    DeregisterTarget {
        /// Target group ARN.
        target_group: String,
        /// Target id.
        target_id: String,
        /// Port.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u32>,
    },
    /// Register a target.
    RegisterTarget {
        /// Target group ARN.
        target_group: String,
        /// Target id.
        target_id: String,
        /// Port.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u32>,
    },
    /// Run an SSM diagnostics document.
    RunDiagnostics {
        /// Instance id.
        instance_id: String,
        /// Document name.
        document: String,
    },
    /// Run an allow-listed command.
    RunCommand {
        /// Instance id.
        instance_id: String,
        /// Allow-listed command name.
        command: String,
    },
    /// Update a function's environment.
    UpdateFunctionConfig {
        /// Function name or ARN.
        function_name: String,
        /// Variables to set.
        environment: Pairs,
    },
    /// Notify humans.
    Notify {
        /// Channel name from config.
        channel: String,
        /// Subject line.
        subject: String,
        /// Body.
        message: String,
    },
    /// Escalate to humans.
    Escalate {
        /// Message.
        message: String,
    },
    /// Do nothing.
    NoOp,
}

impl Action {
    /// This action's kind.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::RestartTask { .. } => ActionKind::RestartTask,
            Action::ForceNewDeployment { .. } => ActionKind::ForceNewDeployment,
            Action::RollbackDeployment { .. } => ActionKind::RollbackDeployment,
            Action::ScaleService { .. } => ActionKind::ScaleService,
            Action::RebootInstance { .. } => ActionKind::RebootInstance,
            Action::ReplaceInstance { .. } => ActionKind::ReplaceInstance,
            Action::RecoverInstance { .. } => ActionKind::RecoverInstance,
            Action::SetInstanceUnhealthy { .. } => ActionKind::SetInstanceUnhealthy,
            Action::DeregisterTarget { .. } => ActionKind::DeregisterTarget,
            Action::RegisterTarget { .. } => ActionKind::RegisterTarget,
            Action::RunDiagnostics { .. } => ActionKind::RunDiagnostics,
            Action::RunCommand { .. } => ActionKind::RunCommand,
            Action::UpdateFunctionConfig { .. } => ActionKind::UpdateFunctionConfig,
            Action::Notify { .. } => ActionKind::Notify,
            Action::Escalate { .. } => ActionKind::Escalate,
            Action::NoOp => ActionKind::NoOp,
        }
    }

    /// The resource this action touches, as (kind, id); `None` for actions that
    /// touch no AWS resource (notify, escalate, no-op).
    pub fn target(&self) -> Option<(ResourceKind, &str)> {
        match self {
            Action::RestartTask { task, .. } => Some((ResourceKind::EcsTask, task)),
            Action::ForceNewDeployment { service, .. }
            | Action::RollbackDeployment { service, .. }
            | Action::ScaleService { service, .. } => Some((ResourceKind::EcsService, service)),
            Action::RebootInstance { instance_id }
            | Action::RecoverInstance { instance_id }
            | Action::ReplaceInstance { instance_id, .. }
            | Action::SetInstanceUnhealthy { instance_id, .. }
            | Action::RunDiagnostics { instance_id, .. }
            | Action::RunCommand { instance_id, .. } => {
                Some((ResourceKind::Ec2Instance, instance_id))
            }
            Action::DeregisterTarget { target_id, .. }
            | Action::RegisterTarget { target_id, .. } => Some((ResourceKind::Target, target_id)),
            Action::UpdateFunctionConfig { function_name, .. } => {
                Some((ResourceKind::LambdaFunction, function_name))
            }
            Action::Notify { .. } | Action::Escalate { .. } | Action::NoOp => None,
        }
    }

    /// Every resource this action names, its target first: cluster, service,
    /// task definition, task, instance, target group, group, function. The
    /// governor checks each one, not only the target.
    pub fn resources(&self) -> Vec<Named<'_>> {
        use NamedKind as K;
        let n = Named::new;
        match self {
            Action::RestartTask { cluster, task } => vec![
                n(K::EcsTask, task).in_cluster(cluster).target(),
                n(K::EcsCluster, cluster),
            ],
            Action::ForceNewDeployment { cluster, service }
            | Action::ScaleService {
                cluster, service, ..
            } => vec![
                n(K::EcsService, service).in_cluster(cluster).target(),
                n(K::EcsCluster, cluster),
            ],
            Action::RollbackDeployment {
                cluster,
                service,
                task_definition,
            } => {
                let mut v = vec![
                    n(K::EcsService, service).in_cluster(cluster).target(),
                    n(K::EcsCluster, cluster),
                ];
                v.extend(task_definition.as_deref().map(|t| n(K::TaskDefinition, t)));
                v
            }
            Action::RebootInstance { instance_id }
            | Action::RecoverInstance { instance_id }
            | Action::ReplaceInstance { instance_id, .. }
            | Action::RunDiagnostics { instance_id, .. }
            | Action::RunCommand { instance_id, .. } => {
                vec![n(K::Ec2Instance, instance_id).target()]
            }
            Action::SetInstanceUnhealthy { group, instance_id } => vec![
                n(K::Ec2Instance, instance_id).target(),
                n(K::AutoscalingGroup, group),
            ],
            Action::DeregisterTarget {
                target_group,
                target_id,
                ..
            }
            | Action::RegisterTarget {
                target_group,
                target_id,
                ..
            } => vec![
                n(K::Target, target_id).target(),
                n(K::TargetGroup, target_group),
            ],
            Action::UpdateFunctionConfig { function_name, .. } => {
                vec![n(K::LambdaFunction, function_name).target()]
            }
            Action::Notify { .. } | Action::Escalate { .. } | Action::NoOp => Vec::new(),
        }
    }

    /// Total bytes of the strings this action carries (for the output size cap).
    pub fn payload_len(&self) -> usize {
        let s = |v: &String| v.len();
        match self {
            Action::RestartTask { cluster, task } => s(cluster) + s(task),
            Action::ForceNewDeployment { cluster, service }
            | Action::ScaleService {
                cluster, service, ..
            } => s(cluster) + s(service),
            Action::RollbackDeployment {
                cluster,
                service,
                task_definition,
            } => s(cluster) + s(service) + task_definition.as_ref().map_or(0, s),
            Action::RebootInstance { instance_id }
            | Action::RecoverInstance { instance_id }
            | Action::ReplaceInstance { instance_id, .. } => s(instance_id),
            Action::SetInstanceUnhealthy { group, instance_id } => s(group) + s(instance_id),
            Action::DeregisterTarget {
                target_group,
                target_id,
                ..
            }
            | Action::RegisterTarget {
                target_group,
                target_id,
                ..
            } => s(target_group) + s(target_id),
            Action::RunDiagnostics {
                instance_id,
                document: name,
            }
            | Action::RunCommand {
                instance_id,
                command: name,
            } => s(instance_id) + s(name),
            Action::UpdateFunctionConfig {
                function_name,
                environment,
            } => {
                s(function_name)
                    + environment
                        .iter()
                        .map(|(k, v)| k.len() + v.len())
                        .sum::<usize>()
            }
            Action::Notify {
                channel,
                subject,
                message,
            } => s(channel) + s(subject) + s(message),
            Action::Escalate { message } => s(message),
            Action::NoOp => 0,
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Step {
    /// What to do (flattened: `{"action":"restart-task","cluster":…,"reason":…}`).
    #[serde(flatten)]
    pub action: Action,
    /// Why.
    pub reason: String,
}

/// How recovery is proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyMethod {
    /// Wait for a recovery signal.
    RecoverySignal,
    /// Poll the resource's state.
    Poll,
}

/// The verify spec of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct VerifySpec {
    /// How recovery is proven.
    pub method: VerifyMethod,
    /// Escalate after this many seconds without recovery.
    pub deadline_secs: u32,
}

/// A policy's plan for one incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Decision {
    /// Ordered steps; empty = do nothing.
    pub steps: Vec<Step>,
    /// How recovery is proven.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySpec>,
    /// One-line summary.
    pub summary: String,
}

impl Decision {
    /// Approximate size of the decision in bytes (strings plus a fixed cost per step).
    pub fn size(&self) -> usize {
        self.summary.len()
            + self
                .steps
                .iter()
                .map(|s| 32 + s.reason.len() + s.action.payload_len())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_resource_is_listed_target_first() {
        let rollback = Action::RollbackDeployment {
            cluster: "prod".into(),
            service: "api".into(),
            task_definition: Some("api:6".into()),
        };
        let named = rollback.resources();
        let kinds: Vec<_> = named.iter().map(|n| n.kind).collect();
        assert_eq!(
            kinds,
            [
                NamedKind::EcsService,
                NamedKind::EcsCluster,
                NamedKind::TaskDefinition
            ]
        );
        assert!(named[0].is_target && named[0].parent == Some("prod"));
        assert!(named[1..].iter().all(|n| !n.is_target));
        let deregister = Action::DeregisterTarget {
            target_group: "arn:tg".into(),
            target_id: "i-1".into(),
            port: None,
        };
        let named = deregister.resources();
        assert_eq!(
            (named[0].kind, named[0].id, named[1].kind),
            (NamedKind::Target, "i-1", NamedKind::TargetGroup)
        );
        assert!(Action::NoOp.resources().is_empty());
        // The target is the one `target()` names.
        for a in [rollback, deregister] {
            assert_eq!(
                a.resources().first().map(|n| n.id),
                a.target().map(|(_, id)| id)
            );
        }
        assert!(ActionKind::ScaleService.is_group_wide());
        assert!(!ActionKind::RestartTask.is_group_wide());
    }
}
