//! The EC2 executor: `reboot-instance` (RebootInstances), `recover-instance`
//! (stop and start, in [`recover`]) and `replace-instance`, the self-healing seed: launch a twin of the instance,
//! wait until it runs, move its Elastic IP, terminate the original last.
//!
//! Exactly once without trusting `ClientToken` (moto ignores it, and a token
//! only protects one request): before launching, the twin is looked up by the
//! `HealerIncident`/`HealerStep` tags it is launched with, so a redelivered or
//! resumed step continues from the twin an earlier attempt launched. It never
//! touches the original before the twin runs, and it never retries by hand:
//! every call keeps the SDK's retry and timeout config from [`crate::aws`].

use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_ec2::operation::RequestId;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, IamInstanceProfileSpecification, Instance,
    InstanceStateName, ResourceType, Tag, TagSpecification, VolumeType,
};
use serde_json::json;

use crate::aws::{AwsErrorClass, classify};
use crate::decision::{Action, ActionKind};

use super::progress::{Progress, send};
use super::{ExecOutcome, Execution, Executor, PlannedCall, StepRequest};

mod recover;
pub use recover::RECOVERY_TAG;

/// How long a replacement waits for its twin to run, by default: a new
/// instance usually runs within a minute; five leave room for a slow AMI.
pub const DEFAULT_LAUNCH_DEADLINE: Duration = Duration::from_secs(300);

/// How often the wait reads the twin's state, by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// The tag naming the incident a twin heals.
pub const INCIDENT_TAG: &str = "HealerIncident";
/// The tag naming the step that launched a twin.
pub const STEP_TAG: &str = "HealerStep";

/// The API operations [`Ec2Executor`] calls, as IAM actions.
pub const EC2_ACTIONS: &[&str] = &[
    "ec2:AssociateAddress",
    "ec2:CreateTags",
    "ec2:DescribeAddresses",
    "ec2:DescribeInstanceAttribute",
    "ec2:DescribeInstances",
    "ec2:DescribeVolumes",
    "ec2:RebootInstances",
    "ec2:RunInstances",
    "ec2:StartInstances",
    "ec2:StopInstances",
    "ec2:TerminateInstances",
];

/// Carries out `reboot-instance` and `replace-instance` with one EC2 client.
#[derive(Debug, Clone)]
pub struct Ec2Executor {
    ec2: aws_sdk_ec2::Client,
    launch_deadline: Duration,
    poll_interval: Duration,
}

impl Ec2Executor {
    /// An executor with the client `shared` configures (region, endpoint,
    /// credentials, retries and timeouts), waiting at most
    /// [`DEFAULT_LAUNCH_DEADLINE`] for a twin.
    pub fn new(shared: &aws_config::SdkConfig) -> Self {
        Ec2Executor {
            ec2: aws_sdk_ec2::Client::new(shared),
            launch_deadline: DEFAULT_LAUNCH_DEADLINE,
            poll_interval: DEFAULT_POLL_INTERVAL,
        }
    }

    /// How long a replacement waits for its twin to run before failing
    /// (default [`DEFAULT_LAUNCH_DEADLINE`]).
    pub fn with_launch_deadline(mut self, deadline: Duration) -> Self {
        self.launch_deadline = deadline;
        self
    }

    /// How often the wait reads the twin's state (default
    /// [`DEFAULT_POLL_INTERVAL`]).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }
}

fn call(operation: &str, params: serde_json::Value) -> PlannedCall {
    PlannedCall {
        operation: operation.to_owned(),
        params,
    }
}

fn twin_filter(req: &StepRequest<'_>) -> serde_json::Value {
    json!({ "Filters": [
        { "Name": format!("tag:{INCIDENT_TAG}"), "Values": [req.incident.id.as_str()] },
        { "Name": format!("tag:{STEP_TAG}"), "Values": [req.step.to_string()] },
        { "Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"] },
    ]})
}

/// The calls of a replacement, in order. The launch copies the original's
/// settings, read by the calls before it.
fn replace_plan(req: &StepRequest<'_>, old: &str, move_eip: bool) -> Vec<PlannedCall> {
    let mut calls = vec![
        call("ec2:DescribeInstances", twin_filter(req)),
        call("ec2:DescribeInstances", json!({ "InstanceIds": [old] })),
        call(
            "ec2:DescribeInstanceAttribute",
            json!({ "InstanceId": old, "Attribute": "userData" }),
        ),
        call(
            "ec2:DescribeVolumes",
            json!({ "VolumeIds": ["<the original's EBS volumes>"] }),
        ),
        call(
            "ec2:RunInstances",
            json!({
                "ClientToken": req.token(),
                "MinCount": 1,
                "MaxCount": 1,
                "CopiedFrom": old,
                "TagSpecifications": [{ "ResourceType": "instance", "Tags": [
                    { "Key": "SelfHealed", "Value": "true" },
                    { "Key": "ReplacedInstance", "Value": old },
                    { "Key": "HealedAt", "Value": "<UTC launch time>" },
                    { "Key": INCIDENT_TAG, "Value": req.incident.id.as_str() },
                    { "Key": STEP_TAG, "Value": req.step.to_string() },
                ]}],
            }),
        ),
        call(
            "ec2:DescribeInstances",
            json!({ "InstanceIds": ["<twin>"] }),
        ),
    ];
    if move_eip {
        calls.push(call(
            "ec2:DescribeAddresses",
            json!({ "Filters": [{ "Name": "instance-id", "Values": [old] }] }),
        ));
        calls.push(call(
            "ec2:AssociateAddress",
            json!({ "AllocationId": "<the original's>", "InstanceId": "<twin>", "AllowReassociation": true }),
        ));
    }
    calls.push(call(
        "ec2:TerminateInstances",
        json!({ "InstanceIds": [old] }),
    ));
    calls
}

fn first_instance(
    out: &aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput,
) -> Option<&Instance> {
    out.reservations().iter().flat_map(|r| r.instances()).next()
}

impl Ec2Executor {
    async fn reboot(&self, instance_id: &str) -> Result<Execution, Box<Execution>> {
        let planned = call(
            "ec2:RebootInstances",
            json!({ "InstanceIds": [instance_id] }),
        );
        let mut p = Progress::new();
        send!(
            p,
            planned,
            self.ec2.reboot_instances().instance_ids(instance_id),
            "RebootInstances"
        );
        Ok(p.done(format!("rebooted {instance_id}")))
    }

    async fn replace(
        &self,
        req: &StepRequest<'_>,
        old: &str,
        move_eip: bool,
    ) -> Result<Execution, Box<Execution>> {
        let mut p = Progress::new();
        let incident = req.incident.id.as_str().to_owned();
        let step = req.step.to_string();

        // 1. Has an earlier attempt of this step launched the twin already?
        let existing = send!(
            p,
            call("ec2:DescribeInstances", twin_filter(req)),
            self.ec2
                .describe_instances()
                .filters(
                    Filter::builder()
                        .name(format!("tag:{INCIDENT_TAG}"))
                        .values(&incident)
                        .build()
                )
                .filters(
                    Filter::builder()
                        .name(format!("tag:{STEP_TAG}"))
                        .values(&step)
                        .build()
                )
                .filters(
                    Filter::builder()
                        .name("instance-state-name")
                        .values("pending")
                        .values("running")
                        .values("stopping")
                        .values("stopped")
                        .build()
                ),
            "DescribeInstances (an earlier twin)"
        );
        let earlier = first_instance(&existing)
            .and_then(|i| i.instance_id())
            .map(str::to_owned);

        let twin = match earlier {
            Some(twin) => twin,
            None => self.launch(req, old, &mut p).await?,
        };
        p.created.push(twin.clone());

        // 2. Wait, bounded, until the twin runs.
        self.wait_running(&twin, &mut p).await?;

        // 3. Move the Elastic IP.
        let mut moved: Vec<String> = Vec::new();
        if move_eip {
            let addrs = send!(
                p,
                call(
                    "ec2:DescribeAddresses",
                    json!({ "Filters": [{ "Name": "instance-id", "Values": [old] }] })
                ),
                self.ec2
                    .describe_addresses()
                    .filters(Filter::builder().name("instance-id").values(old).build()),
                "DescribeAddresses"
            );
            for addr in addrs.addresses() {
                let Some(allocation) = addr.allocation_id() else {
                    continue;
                };
                send!(
                    p,
                    call(
                        "ec2:AssociateAddress",
                        json!({ "AllocationId": allocation, "InstanceId": twin, "AllowReassociation": true })
                    ),
                    self.ec2
                        .associate_address()
                        .allocation_id(allocation)
                        .instance_id(&twin)
                        .allow_reassociation(true),
                    "AssociateAddress"
                );
                moved.extend(addr.public_ip().map(str::to_owned));
            }
        }

        // 4. Terminate the original, last.
        send!(
            p,
            call("ec2:TerminateInstances", json!({ "InstanceIds": [old] })),
            self.ec2.terminate_instances().instance_ids(old),
            "TerminateInstances"
        );
        let eip = if moved.is_empty() {
            String::new()
        } else {
            format!(", Elastic IP {} moved", moved.join(", "))
        };
        Ok(p.done(format!("{old} → {twin}{eip}")))
    }

    /// Reads the original and launches its twin; returns the twin's id.
    async fn launch(
        &self,
        req: &StepRequest<'_>,
        old: &str,
        p: &mut Progress,
    ) -> Result<String, Box<Execution>> {
        let described = send!(
            p,
            call("ec2:DescribeInstances", json!({ "InstanceIds": [old] })),
            self.ec2.describe_instances().instance_ids(old),
            "DescribeInstances (the original)"
        );
        let Some(orig) = first_instance(&described).cloned() else {
            return Err(p.failed(AwsErrorClass::NotFound, format!("instance {old} not found")));
        };
        // The re-check: stopped, terminated or on its way there (a human, or
        // its Auto Scaling group, acted meanwhile): no twin.
        let state = orig
            .state()
            .and_then(|s| s.name())
            .map_or("unknown", |n| n.as_str());
        if matches!(
            state,
            "shutting-down" | "terminated" | "stopping" | "stopped"
        ) {
            let seen = format!("{old} is already {state}");
            let done = std::mem::take(p).end(ExecOutcome::Superseded { seen: seen.clone() }, seen);
            return Err(Box::new(done));
        }
        let user_data = send!(
            p,
            call(
                "ec2:DescribeInstanceAttribute",
                json!({ "InstanceId": old, "Attribute": "userData" })
            ),
            self.ec2
                .describe_instance_attribute()
                .instance_id(old)
                .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData),
            "DescribeInstanceAttribute"
        );
        let user_data = user_data
            .user_data()
            .and_then(|v| v.value())
            .map(str::to_owned);

        // EBS settings: size, type, IOPS, throughput, encryption per device.
        let mappings = orig.block_device_mappings().to_vec();
        let volume_ids: Vec<String> = mappings
            .iter()
            .filter_map(|m| m.ebs().and_then(|e| e.volume_id()).map(str::to_owned))
            .collect();
        let mut devices = Vec::new();
        if !volume_ids.is_empty() {
            let volumes = send!(
                p,
                call("ec2:DescribeVolumes", json!({ "VolumeIds": volume_ids })),
                self.ec2
                    .describe_volumes()
                    .set_volume_ids(Some(volume_ids.clone())),
                "DescribeVolumes"
            );
            for m in &mappings {
                let (Some(device), Some(ebs)) = (m.device_name(), m.ebs()) else {
                    continue;
                };
                let Some(vol) = volumes
                    .volumes()
                    .iter()
                    .find(|v| v.volume_id().is_some() && v.volume_id() == ebs.volume_id())
                else {
                    continue;
                };
                let kind = vol.volume_type().cloned();
                let provisioned = matches!(
                    kind,
                    Some(VolumeType::Io1 | VolumeType::Io2 | VolumeType::Gp3)
                );
                let mut b = EbsBlockDevice::builder()
                    .set_volume_size(vol.size())
                    .set_volume_type(kind.clone())
                    .set_encrypted(vol.encrypted())
                    .set_kms_key_id(vol.kms_key_id().map(str::to_owned))
                    .set_delete_on_termination(ebs.delete_on_termination());
                if provisioned {
                    b = b.set_iops(vol.iops());
                }
                if kind == Some(VolumeType::Gp3) {
                    b = b.set_throughput(vol.throughput());
                }
                devices.push(
                    BlockDeviceMapping::builder()
                        .device_name(device)
                        .ebs(b.build())
                        .build(),
                );
            }
        }

        let healed_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut tags: Vec<Tag> = orig
            .tags()
            .iter()
            .filter(|t| !t.key().is_some_and(|k| k.starts_with("aws:")))
            .filter(|t| {
                !t.key().is_some_and(|k| {
                    matches!(
                        k,
                        "SelfHealed" | "ReplacedInstance" | "HealedAt" | INCIDENT_TAG | STEP_TAG
                    )
                })
            })
            .cloned()
            .collect();
        for (k, v) in [
            ("SelfHealed", "true".to_owned()),
            ("ReplacedInstance", old.to_owned()),
            ("HealedAt", healed_at.clone()),
            (INCIDENT_TAG, req.incident.id.as_str().to_owned()),
            (STEP_TAG, req.step.to_string()),
        ] {
            tags.push(Tag::builder().key(k).value(v).build());
        }
        let security_groups: Vec<String> = orig
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_owned))
            .collect();
        let profile = orig
            .iam_instance_profile()
            .and_then(|p| p.arn())
            .map(|arn| IamInstanceProfileSpecification::builder().arn(arn).build());
        let tag_json: Vec<serde_json::Value> = tags
            .iter()
            .map(|t| json!({ "Key": t.key(), "Value": t.value() }))
            .collect();
        let planned = call(
            "ec2:RunInstances",
            json!({
                "ClientToken": req.token(),
                "MinCount": 1,
                "MaxCount": 1,
                "ImageId": orig.image_id(),
                "InstanceType": orig.instance_type().map(|t| t.as_str()),
                "SubnetId": orig.subnet_id(),
                "SecurityGroupIds": security_groups,
                "KeyName": orig.key_name(),
                "IamInstanceProfile": profile.as_ref().and_then(|p| p.arn()),
                "UserData": user_data.is_some(),
                "BlockDeviceMappings": devices.iter().map(|d| d.device_name()).collect::<Vec<_>>(),
                "TagSpecifications": [{ "ResourceType": "instance", "Tags": tag_json }],
            }),
        );
        let launched = send!(
            p,
            planned,
            self.ec2
                .run_instances()
                .client_token(req.token())
                .min_count(1)
                .max_count(1)
                .set_image_id(orig.image_id().map(str::to_owned))
                .set_instance_type(orig.instance_type().cloned())
                .set_subnet_id(orig.subnet_id().map(str::to_owned))
                .set_security_group_ids((!security_groups.is_empty()).then_some(security_groups))
                .set_key_name(orig.key_name().map(str::to_owned))
                .set_iam_instance_profile(profile)
                .set_user_data(user_data)
                .set_block_device_mappings((!devices.is_empty()).then_some(devices))
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::Instance)
                        .set_tags(Some(tags))
                        .build()
                ),
            "RunInstances"
        );
        match launched.instances().first().and_then(|i| i.instance_id()) {
            Some(id) => Ok(id.to_owned()),
            None => Err(p.failed(
                AwsErrorClass::Retryable,
                "RunInstances answered without an instance",
            )),
        }
    }

    /// Reads the twin until it runs, at most `launch_deadline`. A twin still
    /// unknown to DescribeInstances is waited out (eventual consistency).
    async fn wait_running(&self, twin: &str, p: &mut Progress) -> Result<(), Box<Execution>> {
        let wait = Wait {
            id: twin,
            planned: call("ec2:DescribeInstances", json!({ "InstanceIds": [twin] })),
            what: "DescribeInstances (the twin)",
            new: true,
        };
        self.wait_for(
            wait,
            p,
            |state| match state {
                Some(InstanceStateName::Running) => Judged::Done,
                Some(InstanceStateName::Pending) | None => Judged::Wait,
                Some(other) => Judged::Failed(
                    AwsErrorClass::Permanent,
                    format!(
                        "the twin {twin} is {} instead of running; the original is untouched",
                        other.as_str()
                    ),
                ),
            },
            |_| {
                format!(
                    "the twin {twin} did not run within {:?}; the original is untouched",
                    self.launch_deadline
                )
            },
        )
        .await
    }

    /// Reads an instance every poll interval until `judge` decides, at most
    /// `launch_deadline`; `timed_out` says why when the deadline passes. The
    /// last read is recorded as the wait's call.
    async fn wait_for(
        &self,
        wait: Wait<'_>,
        p: &mut Progress,
        judge: impl Fn(Option<&InstanceStateName>) -> Judged,
        timed_out: impl Fn(Option<&InstanceStateName>) -> String,
    ) -> Result<(), Box<Execution>> {
        let deadline = Instant::now() + self.launch_deadline;
        loop {
            let out = match self
                .ec2
                .describe_instances()
                .instance_ids(wait.id)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e)
                    if wait.new
                        && classify(&e) == AwsErrorClass::NotFound
                        && Instant::now() + self.poll_interval <= deadline =>
                {
                    tokio::time::sleep(self.poll_interval).await;
                    continue;
                }
                Err(e) => {
                    p.calls.push(wait.planned);
                    return Err(p.failed(
                        classify(&e),
                        format!(
                            "{} failed: {}",
                            wait.what,
                            aws_smithy_types::error::display::DisplayErrorContext(&e)
                        ),
                    ));
                }
            };
            let state = first_instance(&out)
                .and_then(|i| i.state())
                .and_then(|s| s.name())
                .cloned();
            let judged = match judge(state.as_ref()) {
                Judged::Wait if Instant::now() + self.poll_interval > deadline => {
                    Judged::Failed(AwsErrorClass::TimedOut, timed_out(state.as_ref()))
                }
                judged => judged,
            };
            match judged {
                Judged::Wait => tokio::time::sleep(self.poll_interval).await,
                Judged::Done => {
                    p.sent(wait.planned, out.request_id());
                    return Ok(());
                }
                Judged::Failed(class, reason) => {
                    p.sent(wait.planned, out.request_id());
                    return Err(p.failed(class, reason));
                }
            }
        }
    }
}

/// One instance to wait for: its id, the call the wait records, the name of
/// that call in an error, and whether it was just launched (so may be briefly
/// unknown).
struct Wait<'a> {
    id: &'a str,
    planned: PlannedCall,
    what: &'a str,
    new: bool,
}

/// What a wait makes of one read of the instance's state.
enum Judged {
    /// Not there yet: read again.
    Wait,
    /// The state waited for.
    Done,
    /// It will not get there: fail the step.
    Failed(AwsErrorClass, String),
}

#[async_trait]
impl Executor for Ec2Executor {
    /// A replacement finds the twin an earlier attempt launched (by its
    /// incident and step tags), a recovery its own stop by the recovery tag;
    /// a reboot would reboot twice.
    fn resumable(&self, kind: ActionKind) -> bool {
        matches!(
            kind,
            ActionKind::ReplaceInstance | ActionKind::RecoverInstance
        )
    }

    fn handles(&self, kind: ActionKind) -> bool {
        matches!(
            kind,
            ActionKind::RebootInstance | ActionKind::RecoverInstance | ActionKind::ReplaceInstance
        )
    }

    fn plan(&self, req: &StepRequest<'_>) -> Vec<PlannedCall> {
        match req.action {
            Action::RebootInstance { instance_id } => vec![call(
                "ec2:RebootInstances",
                json!({ "InstanceIds": [instance_id] }),
            )],
            Action::RecoverInstance { instance_id } => recover::plan(req, instance_id),
            Action::ReplaceInstance {
                instance_id,
                move_elastic_ip,
            } => replace_plan(req, instance_id, *move_elastic_ip),
            _ => Vec::new(),
        }
    }

    async fn execute(&self, req: &StepRequest<'_>) -> Execution {
        match req.action {
            Action::RebootInstance { instance_id } => {
                self.reboot(instance_id).await.unwrap_or_else(|e| *e)
            }
            Action::RecoverInstance { instance_id } => {
                self.recover(req, instance_id).await.unwrap_or_else(|e| *e)
            }
            Action::ReplaceInstance {
                instance_id,
                move_elastic_ip,
            } => self
                .replace(req, instance_id, *move_elastic_ip)
                .await
                .unwrap_or_else(|e| *e),
            other => Execution::failed(
                Vec::new(),
                AwsErrorClass::Permanent,
                format!("the EC2 executor does not carry out {}", other.kind()),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::Incident;

    fn incident() -> Incident {
        Incident::from_json(
            br#"{"kind":"instance-impaired","resource":{"kind":"ec2-instance","id":"i-1"},"detected-at":"2024-05-01T10:00:00Z"}"#,
        )
        .expect("incident")
    }

    async fn executor() -> Ec2Executor {
        let shared = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        Ec2Executor::new(&shared)
    }

    #[tokio::test]
    async fn reboot_plans_one_reboot_instances() {
        let incident = incident();
        let action = Action::RebootInstance {
            instance_id: "i-1".into(),
        };
        let req = StepRequest {
            incident: &incident,
            step: 0,
            action: &action,
        };
        let e = executor().await;
        assert!(e.handles(ActionKind::RebootInstance));
        assert!(e.handles(ActionKind::ReplaceInstance));
        assert!(!e.handles(ActionKind::RestartTask));
        assert_eq!(
            e.plan(&req),
            vec![call(
                "ec2:RebootInstances",
                json!({ "InstanceIds": ["i-1"] })
            )]
        );
    }

    #[tokio::test]
    async fn replace_plans_lookup_launch_wait_eip_then_terminate() {
        let incident = incident();
        let action = Action::ReplaceInstance {
            instance_id: "i-1".into(),
            move_elastic_ip: true,
        };
        let req = StepRequest {
            incident: &incident,
            step: 2,
            action: &action,
        };
        let plan = executor().await.plan(&req);
        let ops: Vec<&str> = plan.iter().map(|c| c.operation.as_str()).collect();
        assert_eq!(
            ops,
            [
                "ec2:DescribeInstances",
                "ec2:DescribeInstances",
                "ec2:DescribeInstanceAttribute",
                "ec2:DescribeVolumes",
                "ec2:RunInstances",
                "ec2:DescribeInstances",
                "ec2:DescribeAddresses",
                "ec2:AssociateAddress",
                "ec2:TerminateInstances",
            ]
        );
        assert_eq!(plan[0].params, twin_filter(&req));
        assert_eq!(plan[0].params["Filters"][1]["Values"][0], "2");
        assert_eq!(plan[4].params["ClientToken"], req.token());
        assert_eq!(plan[4].params["CopiedFrom"], "i-1");
        assert_eq!(plan[7].params["AllowReassociation"], true);
        assert_eq!(plan[8].params, json!({ "InstanceIds": ["i-1"] }));
        for op in ops {
            assert!(EC2_ACTIONS.contains(&op), "{op}");
        }
        let without_eip = Action::ReplaceInstance {
            instance_id: "i-1".into(),
            move_elastic_ip: false,
        };
        let plan = executor().await.plan(&StepRequest {
            action: &without_eip,
            ..req
        });
        assert!(plan.iter().all(|c| !c.operation.contains("Address")));
    }
}
