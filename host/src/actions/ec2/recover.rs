//! `recover-instance`: an EBS-backed instance on failing hardware is stopped
//! and started again, which moves it to new hardware while it keeps its id,
//! volumes, private addresses and Elastic IP (AWS's advice for a failed
//! system status check and for a scheduled retirement).
//!
//! Exactly once across restarts and replicas: before StopInstances the
//! instance is tagged `HealerRecovery=<step token>`. A resumed step that finds
//! it stopping or stopped with that tag starts it; one that finds it stopped
//! without the tag leaves it (a human stopped it: superseded). An
//! instance-store backed instance is never stopped (its data would be lost):
//! the step fails and the ladder replaces it instead.

use aws_sdk_ec2::operation::RequestId;
use aws_sdk_ec2::types::{DeviceType, InstanceStateName, Tag};
use serde_json::json;

use super::{Ec2Executor, Judged, Wait, call, first_instance};
use crate::actions::progress::{Progress, send};
use crate::actions::{ExecOutcome, Execution, PlannedCall, StepRequest};
use crate::aws::AwsErrorClass;

/// The tag that marks an instance a recovery step stopped, valued with the
/// step's token.
pub const RECOVERY_TAG: &str = "HealerRecovery";

/// The calls of a recovery, in order (what the dry run records).
pub(super) fn plan(req: &StepRequest<'_>, id: &str) -> Vec<PlannedCall> {
    vec![
        call("ec2:DescribeInstances", json!({ "InstanceIds": [id] })),
        call(
            "ec2:CreateTags",
            json!({ "Resources": [id], "Tags": [{ "Key": RECOVERY_TAG, "Value": req.token() }] }),
        ),
        call("ec2:StopInstances", json!({ "InstanceIds": [id] })),
        call(
            "ec2:DescribeInstances",
            json!({ "InstanceIds": [id], "Until": "stopped" }),
        ),
        call("ec2:StartInstances", json!({ "InstanceIds": [id] })),
        call(
            "ec2:DescribeInstances",
            json!({ "InstanceIds": [id], "Until": "running" }),
        ),
    ]
}

impl Ec2Executor {
    /// Stops and starts `id` (see the module doc for the resume rules).
    pub(super) async fn recover(
        &self,
        req: &StepRequest<'_>,
        id: &str,
    ) -> Result<Execution, Box<Execution>> {
        let mut p = Progress::new();
        let token = req.token();
        let out = send!(
            p,
            call("ec2:DescribeInstances", json!({ "InstanceIds": [id] })),
            self.ec2.describe_instances().instance_ids(id),
            "DescribeInstances"
        );
        let Some(inst) = first_instance(&out) else {
            return Err(p.failed(AwsErrorClass::NotFound, format!("instance {id} not found")));
        };
        if inst.root_device_type() == Some(&DeviceType::InstanceStore) {
            return Err(p.failed(
                AwsErrorClass::Permanent,
                format!(
                    "{id} is instance-store backed: a stop would lose its data; replace it instead"
                ),
            ));
        }
        let ours = inst
            .tags()
            .iter()
            .any(|t| t.key() == Some(RECOVERY_TAG) && t.value() == Some(token.as_str()));
        let state = inst.state().and_then(|s| s.name()).cloned();
        match (state, ours) {
            (Some(InstanceStateName::Running), false) => {
                send!(
                    p,
                    call(
                        "ec2:CreateTags",
                        json!({ "Resources": [id], "Tags": [{ "Key": RECOVERY_TAG, "Value": token }] })
                    ),
                    self.ec2
                        .create_tags()
                        .resources(id)
                        .tags(Tag::builder().key(RECOVERY_TAG).value(&token).build()),
                    "CreateTags"
                );
                send!(
                    p,
                    call("ec2:StopInstances", json!({ "InstanceIds": [id] })),
                    self.ec2.stop_instances().instance_ids(id),
                    "StopInstances"
                );
            }
            (Some(InstanceStateName::Stopping | InstanceStateName::Stopped), true) => {}
            (Some(InstanceStateName::Pending | InstanceStateName::Running), true) => {
                let note =
                    format!("{id} was stopped and started by an earlier attempt of this step");
                return Ok(p.done(note));
            }
            (other, _) => {
                let seen = format!(
                    "{id} is already {}",
                    other.as_ref().map_or("unknown", |s| s.as_str())
                );
                return Ok(p.end(ExecOutcome::Superseded { seen: seen.clone() }, seen));
            }
        }
        self.wait_state(id, InstanceStateName::Stopped, &mut p)
            .await?;
        send!(
            p,
            call("ec2:StartInstances", json!({ "InstanceIds": [id] })),
            self.ec2.start_instances().instance_ids(id),
            "StartInstances"
        );
        self.wait_state(id, InstanceStateName::Running, &mut p)
            .await?;
        Ok(p.done(format!(
            "recovered {id}: stopped and started on new hardware"
        )))
    }

    /// Reads `id` until it is in `want`, at most the launch deadline; an
    /// instance shutting down or terminated will never get there.
    async fn wait_state(
        &self,
        id: &str,
        want: InstanceStateName,
        p: &mut Progress,
    ) -> Result<(), Box<Execution>> {
        let wait = Wait {
            id,
            planned: call(
                "ec2:DescribeInstances",
                json!({ "InstanceIds": [id], "Until": want.as_str() }),
            ),
            what: "DescribeInstances",
            new: false,
        };
        let not_there = |state: Option<&InstanceStateName>| {
            format!(
                "{id} is {}, not {} within {:?}",
                state.map_or("unknown", |s| s.as_str()),
                want.as_str(),
                self.launch_deadline
            )
        };
        self.wait_for(
            wait,
            p,
            |state| match state {
                Some(s) if *s == want => Judged::Done,
                Some(InstanceStateName::ShuttingDown | InstanceStateName::Terminated) => {
                    Judged::Failed(AwsErrorClass::TimedOut, not_there(state))
                }
                _ => Judged::Wait,
            },
            not_there,
        )
        .await
    }
}
