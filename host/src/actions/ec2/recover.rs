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

use std::time::Instant;

use aws_sdk_ec2::operation::RequestId;
use aws_sdk_ec2::types::{DeviceType, InstanceStateName, Tag};
use serde_json::json;

use super::{Ec2Executor, call, first_instance};
use crate::actions::progress::{Progress, send};
use crate::actions::{ExecOutcome, Execution, PlannedCall, StepRequest};
use crate::aws::{AwsErrorClass, classify};

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

    /// Reads `id` until it is in `want`, at most the launch deadline.
    async fn wait_state(
        &self,
        id: &str,
        want: InstanceStateName,
        p: &mut Progress,
    ) -> Result<(), Box<Execution>> {
        let deadline = Instant::now() + self.launch_deadline;
        let planned = || {
            call(
                "ec2:DescribeInstances",
                json!({ "InstanceIds": [id], "Until": want.as_str() }),
            )
        };
        loop {
            let out = match self.ec2.describe_instances().instance_ids(id).send().await {
                Ok(out) => out,
                Err(e) => {
                    p.calls.push(planned());
                    return Err(p.failed(
                        classify(&e),
                        format!(
                            "DescribeInstances failed: {}",
                            aws_smithy_types::error::display::DisplayErrorContext(&e)
                        ),
                    ));
                }
            };
            let state = first_instance(&out)
                .and_then(|i| i.state())
                .and_then(|s| s.name())
                .cloned();
            if state.as_ref() == Some(&want) {
                p.sent(planned(), out.request_id());
                return Ok(());
            }
            if matches!(
                state,
                Some(InstanceStateName::ShuttingDown | InstanceStateName::Terminated)
            ) || Instant::now() + self.poll_interval > deadline
            {
                p.sent(planned(), out.request_id());
                let seen = state.as_ref().map_or("unknown", |s| s.as_str());
                return Err(p.failed(
                    AwsErrorClass::TimedOut,
                    format!(
                        "{id} is {seen}, not {} within {:?}",
                        want.as_str(),
                        self.launch_deadline
                    ),
                ));
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }
}
