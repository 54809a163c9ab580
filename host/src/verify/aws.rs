//! The poller: reads a [`Probe`] through the AWS SDKs.

use async_trait::async_trait;
use aws_smithy_types::error::display::DisplayErrorContext;

use super::{Check, Probe, Verifier, probe};
use crate::store::IncidentRecord;

/// The API operations [`AwsVerifier`] calls, as IAM actions (all reads).
pub const VERIFY_ACTIONS: &[&str] = &[
    "ec2:DescribeInstanceStatus",
    "ecs:DescribeServices",
    "ecs:DescribeTasks",
    "elasticloadbalancing:DescribeTargetHealth",
];

/// Polls EC2, ECS and ELBv2 with clients from one SDK configuration.
#[derive(Debug, Clone)]
pub struct AwsVerifier {
    ec2: aws_sdk_ec2::Client,
    ecs: aws_sdk_ecs::Client,
    elbv2: aws_sdk_elasticloadbalancingv2::Client,
}

impl AwsVerifier {
    /// A verifier whose clients `shared` configures.
    pub fn new(shared: &aws_config::SdkConfig) -> Self {
        AwsVerifier {
            ec2: aws_sdk_ec2::Client::new(shared),
            ecs: aws_sdk_ecs::Client::new(shared),
            elbv2: aws_sdk_elasticloadbalancingv2::Client::new(shared),
        }
    }

    async fn instance(&self, id: &str) -> Result<Check, String> {
        let out = self
            .ec2
            .describe_instance_status()
            .instance_ids(id)
            .include_all_instances(true)
            .send()
            .await
            .map_err(|e| format!("DescribeInstanceStatus: {}", DisplayErrorContext(&e)))?;
        let Some(s) = out.instance_statuses().first() else {
            return Ok(Check::NotYet(format!("{id} is not found")));
        };
        let state = s
            .instance_state()
            .and_then(|s| s.name())
            .map_or("unknown", |n| n.as_str());
        let status = |s: Option<&aws_sdk_ec2::types::InstanceStatusSummary>| {
            s.and_then(|s| s.status())
                .map_or("unknown", |s| s.as_str())
                .to_owned()
        };
        let (system, instance) = (status(s.system_status()), status(s.instance_status()));
        let seen = format!("{id} {state}, system status {system}, instance status {instance}");
        let ok = state == "running" && system == "ok" && instance == "ok";
        Ok(Check::from_poll(ok, seen))
    }

    async fn service(&self, cluster: &str, service: &str) -> Result<Check, String> {
        let out = self
            .ecs
            .describe_services()
            .cluster(cluster)
            .services(service)
            .send()
            .await
            .map_err(|e| format!("DescribeServices: {}", DisplayErrorContext(&e)))?;
        let Some(s) = out.services().first() else {
            return Ok(Check::NotYet(format!("{service} is not found")));
        };
        let (running, desired) = (s.running_count(), s.desired_count());
        let deployments = s.deployments().len();
        let seen = format!(
            "{} running {running} of {desired}, {deployments} deployment(s), task definition {}",
            s.service_name().unwrap_or(service),
            s.task_definition().unwrap_or("?")
        );
        Ok(Check::from_poll(
            running >= desired && deployments <= 1,
            seen,
        ))
    }

    async fn task(&self, cluster: &str, task: &str) -> Result<Check, String> {
        let out = self
            .ecs
            .describe_tasks()
            .cluster(cluster)
            .tasks(task)
            .send()
            .await
            .map_err(|e| format!("DescribeTasks: {}", DisplayErrorContext(&e)))?;
        let status = out
            .tasks()
            .first()
            .and_then(|t| t.last_status())
            .unwrap_or("not found");
        let seen = format!("{task} {status}");
        Ok(Check::from_poll(status == "RUNNING", seen))
    }

    async fn target(&self, group: &str, target: &str) -> Result<Check, String> {
        let desc = aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
            .id(target)
            .build();
        let out = self
            .elbv2
            .describe_target_health()
            .target_group_arn(group)
            .targets(desc)
            .send()
            .await
            .map_err(|e| format!("DescribeTargetHealth: {}", DisplayErrorContext(&e)))?;
        let state = out
            .target_health_descriptions()
            .first()
            .and_then(|d| d.target_health())
            .and_then(|h| h.state())
            .map_or("unknown", |s| s.as_str())
            .to_owned();
        let seen = format!("{target} {state}");
        Ok(Check::from_poll(state == "healthy", seen))
    }
}

#[async_trait]
impl Verifier for AwsVerifier {
    async fn check(&self, record: &IncidentRecord) -> Check {
        let read = match probe(record) {
            Err(why) => return Check::Unknown(why),
            Ok(Probe::Instance(id)) => self.instance(&id).await,
            Ok(Probe::Service { cluster, service }) => self.service(&cluster, &service).await,
            Ok(Probe::Task { cluster, task }) => self.task(&cluster, &task).await,
            Ok(Probe::Target {
                target_group,
                target,
            }) => self.target(&target_group, &target).await,
        };
        read.unwrap_or_else(Check::Unknown)
    }
}
