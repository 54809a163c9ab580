//! The Auto Scaling executor: `set-instance-unhealthy` (SetInstanceHealth,
//! respecting the group's grace period), so the group itself replaces the
//! instance by its own rules. It never terminates or launches anything.

use async_trait::async_trait;
use aws_sdk_autoscaling::operation::RequestId;
use aws_smithy_types::error::display::DisplayErrorContext;
use serde_json::json;

use crate::aws::{AwsErrorClass, classify};
use crate::decision::{Action, ActionKind};

use super::{ExecOutcome, Execution, Executor, PlannedCall, StepRequest};

/// The API operations [`AutoscalingExecutor`] calls, as IAM actions.
pub const AUTOSCALING_ACTIONS: &[&str] = &["autoscaling:SetInstanceHealth"];

/// Carries out `set-instance-unhealthy` with one Auto Scaling client.
#[derive(Debug, Clone)]
pub struct AutoscalingExecutor {
    autoscaling: aws_sdk_autoscaling::Client,
}

impl AutoscalingExecutor {
    /// An executor with the client `shared` configures (region, endpoint,
    /// credentials, retries and timeouts).
    pub fn new(shared: &aws_config::SdkConfig) -> Self {
        AutoscalingExecutor {
            autoscaling: aws_sdk_autoscaling::Client::new(shared),
        }
    }
}

fn set_health(instance_id: &str) -> PlannedCall {
    PlannedCall {
        operation: "autoscaling:SetInstanceHealth".into(),
        params: json!({
            "InstanceId": instance_id,
            "HealthStatus": "Unhealthy",
            "ShouldRespectGracePeriod": true,
        }),
    }
}

#[async_trait]
impl Executor for AutoscalingExecutor {
    /// Setting an instance's health is a state, not an event.
    fn resumable(&self, kind: ActionKind) -> bool {
        kind == ActionKind::SetInstanceUnhealthy
    }

    fn handles(&self, kind: ActionKind) -> bool {
        kind == ActionKind::SetInstanceUnhealthy
    }

    fn plan(&self, req: &StepRequest<'_>) -> Vec<PlannedCall> {
        match req.action {
            Action::SetInstanceUnhealthy { instance_id, .. } => vec![set_health(instance_id)],
            _ => Vec::new(),
        }
    }

    async fn execute(&self, req: &StepRequest<'_>) -> Execution {
        let Action::SetInstanceUnhealthy { group, instance_id } = req.action else {
            return Execution::failed(
                Vec::new(),
                AwsErrorClass::Permanent,
                format!(
                    "the Auto Scaling executor does not carry out {}",
                    req.action.kind()
                ),
            );
        };
        let calls = vec![set_health(instance_id)];
        let sent = self
            .autoscaling
            .set_instance_health()
            .instance_id(instance_id)
            .health_status("Unhealthy")
            .should_respect_grace_period(true)
            .send()
            .await;
        match sent {
            Ok(out) => Execution {
                outcome: ExecOutcome::Succeeded,
                calls,
                request_ids: out.request_id().map(str::to_owned).into_iter().collect(),
                created: Vec::new(),
                note: Some(format!("{instance_id} Unhealthy in {group}")),
                command: None,
            },
            Err(e) => Execution::failed(
                calls,
                classify(&e),
                format!("SetInstanceHealth failed: {}", DisplayErrorContext(&e)),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::Incident;

    #[test]
    fn set_instance_unhealthy_plans_one_set_instance_health_respecting_the_grace_period() {
        let incident = Incident::from_json(
            br#"{"kind":"instance-impaired","resource":{"kind":"ec2-instance","id":"i-1"},"detected-at":"2024-05-01T10:00:00Z"}"#,
        )
        .expect("incident");
        let action = Action::SetInstanceUnhealthy {
            group: "web".into(),
            instance_id: "i-1".into(),
        };
        let shared = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let e = AutoscalingExecutor::new(&shared);
        assert!(e.handles(ActionKind::SetInstanceUnhealthy));
        assert!(!e.handles(ActionKind::ReplaceInstance));
        let plan = e.plan(&StepRequest {
            incident: &incident,
            step: 0,
            action: &action,
        });
        assert_eq!(
            plan,
            vec![PlannedCall {
                operation: "autoscaling:SetInstanceHealth".into(),
                params: json!({
                    "InstanceId": "i-1",
                    "HealthStatus": "Unhealthy",
                    "ShouldRespectGracePeriod": true,
                }),
            }]
        );
        assert!(AUTOSCALING_ACTIONS.contains(&plan[0].operation.as_str()));
    }
}
