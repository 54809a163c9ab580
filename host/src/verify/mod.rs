//! Verify: proof that an incident healer acted on has recovered. A decision's
//! verify spec says how: a recovery signal (the alarm's OK, the target healthy
//! again, the ECS service steady), which the pipeline's `on_recovery` applies
//! as it arrives, or a poll of the resource's state, which a [`Verifier`]
//! reads here until the spec's deadline. Either way the deadline is the
//! host's: past it, the incident escalates.
//!
//! What is read, per incident:
//! - an EC2 instance: the twin a `replace-instance` step created, else the
//!   instance itself, running with both status checks `ok`;
//! - a task or service of an ECS service: the service running its desired
//!   count with one deployment;
//! - a standalone ECS task: the task a `restart-task` step started, running;
//! - a load-balancer target: healthy in its target group;
//! - anything else (a Lambda function's alarm, an Auto Scaling group): not
//!   pollable here; recovery comes as a signal.

mod aws;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::decision::{Action, ActionKind};
use crate::incident::{IncidentKind, ResourceKind};
use crate::store::{IncidentRecord, Outcome};

pub use aws::{AwsVerifier, VERIFY_ACTIONS};

/// What one look at the resource saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "check", content = "seen")]
pub enum Check {
    /// Recovered: what proves it.
    Recovered(String),
    /// Not recovered yet: what was seen.
    NotYet(String),
    /// This resource cannot be polled (or the read failed): why. Recovery
    /// must come as a signal.
    Unknown(String),
}

impl Check {
    /// What a poll saw: recovered when `recovered`, else not yet.
    pub fn from_poll(recovered: bool, seen: String) -> Check {
        if recovered {
            Check::Recovered(seen)
        } else {
            Check::NotYet(seen)
        }
    }
}

/// Reads whether an incident's resource has recovered.
#[async_trait]
pub trait Verifier: Send + Sync {
    /// One look. Never panics; an AWS error is `Unknown`.
    async fn check(&self, record: &IncidentRecord) -> Check;
}

/// No polling: every incident waits for its recovery signal (dry run, tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct SignalOnly;

#[async_trait]
impl Verifier for SignalOnly {
    async fn check(&self, _record: &IncidentRecord) -> Check {
        Check::Unknown("no poller: waiting for the recovery signal".into())
    }
}

/// What a poll reads for an incident (pure: from the record alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// An instance, running with both status checks ok.
    Instance(String),
    /// A service running its desired count with one deployment.
    Service {
        /// Cluster name or ARN.
        cluster: String,
        /// Service name or ARN.
        service: String,
    },
    /// A task, running.
    Task {
        /// Cluster name or ARN.
        cluster: String,
        /// Task ARN.
        task: String,
    },
    /// A target, healthy in its group.
    Target {
        /// Target group ARN.
        target_group: String,
        /// Target id.
        target: String,
    },
}

/// What to poll for `record`, or why nothing can be.
pub fn probe(record: &IncidentRecord) -> Result<Probe, String> {
    let incident = &record.incident;
    // Every round's steps, latest last: the newest twin or task counts.
    let all = || {
        record
            .rounds
            .iter()
            .flat_map(|r| &r.steps)
            .chain(&record.steps)
    };
    let created = |kind: ActionKind| {
        all()
            .filter(|s| s.result == Outcome::Succeeded && s.action.kind() == kind)
            .filter_map(|s| s.created.first().cloned())
            .next_back()
    };
    let cluster = || {
        all()
            .find_map(|s| match &s.action {
                Action::RestartTask { cluster, .. }
                | Action::ForceNewDeployment { cluster, .. }
                | Action::RollbackDeployment { cluster, .. }
                | Action::ScaleService { cluster, .. } => Some(cluster.clone()),
                _ => None,
            })
            .or_else(|| incident.detail.get("cluster").cloned())
    };
    let service_group = incident
        .group
        .as_ref()
        .filter(|g| g.kind == ResourceKind::EcsService);
    match incident.resource.kind {
        ResourceKind::Ec2Instance => Ok(Probe::Instance(
            created(ActionKind::ReplaceInstance).unwrap_or_else(|| incident.resource.id.clone()),
        )),
        ResourceKind::EcsService => Ok(Probe::Service {
            cluster: cluster().ok_or("the service's cluster is not known")?,
            service: incident.resource.id.clone(),
        }),
        ResourceKind::EcsTask => match (service_group, created(ActionKind::RestartTask)) {
            (Some(g), _) => Ok(Probe::Service {
                cluster: cluster().ok_or("the service's cluster is not known")?,
                service: g.id.clone(),
            }),
            (None, Some(task)) => Ok(Probe::Task {
                cluster: cluster().ok_or("the task's cluster is not known")?,
                task,
            }),
            (None, None) => Err("a standalone task no step restarted".into()),
        },
        ResourceKind::Target => match &incident.group {
            Some(g) if g.kind == ResourceKind::TargetGroup => Ok(Probe::Target {
                target_group: g.id.clone(),
                target: incident.resource.id.clone(),
            }),
            _ => Err("the target's group is not known".into()),
        },
        _ if incident.kind == IncidentKind::FunctionErrors => {
            Err("a function recovers when its alarm says OK".into())
        }
        other => Err(format!("a {other} is not polled")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::Incident;
    use crate::store::StepRecord;

    fn record(json: &str) -> IncidentRecord {
        IncidentRecord::detected(Incident::from_json(json.as_bytes()).expect("incident"))
    }

    #[test]
    fn a_replaced_instance_is_verified_on_its_twin() {
        let mut r = record(
            r#"{"kind":"instance-impaired","resource":{"kind":"ec2-instance","id":"i-old"},"detected-at":"2024-05-01T10:00:00Z"}"#,
        );
        assert_eq!(probe(&r), Ok(Probe::Instance("i-old".into())));
        let action = Action::ReplaceInstance {
            instance_id: "i-old".into(),
            move_elastic_ip: true,
        };
        let at = r.incident.detected_at;
        r.steps.push(StepRecord {
            result: Outcome::Succeeded,
            created: vec!["i-new".into()],
            ..StepRecord::started(0, action, at)
        });
        assert_eq!(probe(&r), Ok(Probe::Instance("i-new".into())));
    }

    #[test]
    fn a_service_task_is_verified_on_its_service() {
        let r = record(
            r#"{"kind":"task-crashed","resource":{"kind":"ecs-task","id":"arn:aws:ecs:us-east-1:1:task/c/t1"},
                "group":{"kind":"ecs-service","id":"arn:aws:ecs:us-east-1:1:service/c/web"},
                "detail":{"cluster":"arn:aws:ecs:us-east-1:1:cluster/c"},
                "detected-at":"2024-05-01T10:00:00Z"}"#,
        );
        assert_eq!(
            probe(&r),
            Ok(Probe::Service {
                cluster: "arn:aws:ecs:us-east-1:1:cluster/c".into(),
                service: "arn:aws:ecs:us-east-1:1:service/c/web".into(),
            })
        );
        let f = record(
            r#"{"kind":"function-errors","resource":{"kind":"lambda-function","id":"fragile"},"detected-at":"2024-05-01T10:00:00Z"}"#,
        );
        assert!(probe(&f).is_err());
    }
}
