//! The ELBv2 executor: `deregister-target` (DeregisterTargets) and
//! `register-target` (RegisterTargets), one target of one target group. It
//! does not wait for draining: the verify step judges the result.

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::operation::RequestId;
use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
use aws_smithy_types::error::display::DisplayErrorContext;
use serde_json::json;

use crate::aws::{AwsErrorClass, classify};
use crate::decision::{Action, ActionKind};

use super::{ExecOutcome, Execution, Executor, PlannedCall, StepRequest};

/// The API operations [`Elbv2Executor`] calls, as IAM actions.
pub const ELBV2_ACTIONS: &[&str] = &[
    "elasticloadbalancing:DeregisterTargets",
    "elasticloadbalancing:RegisterTargets",
];

/// Carries out `deregister-target` and `register-target` with one ELBv2 client.
#[derive(Debug, Clone)]
pub struct Elbv2Executor {
    elbv2: aws_sdk_elasticloadbalancingv2::Client,
}

impl Elbv2Executor {
    /// An executor with the client `shared` configures (region, endpoint,
    /// credentials, retries and timeouts).
    pub fn new(shared: &aws_config::SdkConfig) -> Self {
        Elbv2Executor {
            elbv2: aws_sdk_elasticloadbalancingv2::Client::new(shared),
        }
    }
}

/// The target of a (de)registration: `(register, group, id, port)`.
fn target(action: &Action) -> Option<(bool, &str, &str, Option<u32>)> {
    match action {
        Action::RegisterTarget {
            target_group,
            target_id,
            port,
        } => Some((true, target_group, target_id, *port)),
        Action::DeregisterTarget {
            target_group,
            target_id,
            port,
        } => Some((false, target_group, target_id, *port)),
        _ => None,
    }
}

fn planned(register: bool, group: &str, id: &str, port: Option<u32>) -> PlannedCall {
    let mut t = json!({ "Id": id });
    if let Some(port) = port {
        t["Port"] = json!(port);
    }
    PlannedCall {
        operation: if register {
            "elasticloadbalancing:RegisterTargets"
        } else {
            "elasticloadbalancing:DeregisterTargets"
        }
        .into(),
        params: json!({ "TargetGroupArn": group, "Targets": [t] }),
    }
}

#[async_trait]
impl Executor for Elbv2Executor {
    /// Registering or deregistering a target is a state, not an event.
    fn resumable(&self, kind: ActionKind) -> bool {
        matches!(
            kind,
            ActionKind::RegisterTarget | ActionKind::DeregisterTarget
        )
    }

    fn handles(&self, kind: ActionKind) -> bool {
        matches!(
            kind,
            ActionKind::RegisterTarget | ActionKind::DeregisterTarget
        )
    }

    fn plan(&self, req: &StepRequest<'_>) -> Vec<PlannedCall> {
        target(req.action)
            .map(|(r, g, id, port)| planned(r, g, id, port))
            .into_iter()
            .collect()
    }

    async fn execute(&self, req: &StepRequest<'_>) -> Execution {
        let Some((register, group, id, port)) = target(req.action) else {
            return Execution::failed(
                Vec::new(),
                AwsErrorClass::Permanent,
                format!(
                    "the ELBv2 executor does not carry out {}",
                    req.action.kind()
                ),
            );
        };
        let calls = vec![planned(register, group, id, port)];
        let port = port.and_then(|p| i32::try_from(p).ok());
        let description = TargetDescription::builder().id(id).set_port(port).build();
        let (sent, what) = if register {
            let sent = self
                .elbv2
                .register_targets()
                .target_group_arn(group)
                .targets(description)
                .send()
                .await
                .map(|out| out.request_id().map(str::to_owned))
                .map_err(|e| (classify(&e), DisplayErrorContext(&e).to_string()));
            (sent, "RegisterTargets")
        } else {
            let sent = self
                .elbv2
                .deregister_targets()
                .target_group_arn(group)
                .targets(description)
                .send()
                .await
                .map(|out| out.request_id().map(str::to_owned))
                .map_err(|e| (classify(&e), DisplayErrorContext(&e).to_string()));
            (sent, "DeregisterTargets")
        };
        match sent {
            Ok(request_id) => Execution {
                outcome: ExecOutcome::Succeeded,
                calls,
                request_ids: request_id.into_iter().collect(),
                created: Vec::new(),
                note: Some(format!(
                    "{id} {} {group}",
                    if register {
                        "registered in"
                    } else {
                        "deregistered from"
                    }
                )),
                command: None,
            },
            Err((class, error)) => {
                Execution::failed(calls, class, format!("{what} failed: {error}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::Incident;

    #[test]
    fn register_and_deregister_plan_one_call_with_the_target_and_port() {
        let incident = Incident::from_json(
            br#"{"kind":"instance-impaired","resource":{"kind":"ec2-instance","id":"i-1"},"detected-at":"2024-05-01T10:00:00Z"}"#,
        )
        .expect("incident");
        let shared = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let e = Elbv2Executor::new(&shared);
        assert!(e.handles(ActionKind::RegisterTarget));
        assert!(e.handles(ActionKind::DeregisterTarget));
        assert!(!e.handles(ActionKind::RebootInstance));
        let tg = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/1";
        let deregister = Action::DeregisterTarget {
            target_group: tg.into(),
            target_id: "i-1".into(),
            port: Some(8080),
        };
        let register = Action::RegisterTarget {
            target_group: tg.into(),
            target_id: "i-1".into(),
            port: None,
        };
        let req = |action| StepRequest {
            incident: &incident,
            step: 0,
            action,
        };
        assert_eq!(
            e.plan(&req(&deregister)),
            vec![PlannedCall {
                operation: "elasticloadbalancing:DeregisterTargets".into(),
                params: json!({ "TargetGroupArn": tg, "Targets": [{ "Id": "i-1", "Port": 8080 }] }),
            }]
        );
        assert_eq!(
            e.plan(&req(&register)),
            vec![PlannedCall {
                operation: "elasticloadbalancing:RegisterTargets".into(),
                params: json!({ "TargetGroupArn": tg, "Targets": [{ "Id": "i-1" }] }),
            }]
        );
        for action in [&register, &deregister] {
            assert!(ELBV2_ACTIONS.contains(&e.plan(&req(action))[0].operation.as_str()));
        }
    }
}
