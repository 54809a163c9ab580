//! Executors: the stage that carries out a governor-approved step through the
//! AWS SDKs. One [`Executor`] seam, one module per AWS service. Every executor
//! first says exactly which request a step would send ([`Executor::plan`],
//! pure), which is what the [`DryRun`] executor records; executing sends it
//! and reports an [`Execution`]: the outcome, the AWS request ids, the
//! resources it created. An executor never panics and never decides: the
//! governor already judged the step; AWS errors are outcomes, classified by
//! [`crate::aws::classify`].
//!
//! Exactly once: a step is recorded as started with its idempotency
//! [`StepRequest::token`] before it executes; an executor that creates
//! resources tags them with the incident and step and, when resumed, looks for
//! what an earlier attempt created before creating again.

mod autoscaling;
mod dry_run;
mod ec2;
mod ecs;
mod elbv2;
mod lambda;
mod progress;
mod sns;
mod ssm;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::aws::AwsErrorClass;
use crate::decision::{Action, ActionKind};
use crate::incident::Incident;

pub use autoscaling::{AUTOSCALING_ACTIONS, AutoscalingExecutor};
pub use dry_run::DryRun;
pub use ec2::{EC2_ACTIONS, Ec2Executor, RECOVERY_TAG};
pub use ecs::{ECS_ACTIONS, EcsExecutor};
pub use elbv2::{ELBV2_ACTIONS, Elbv2Executor};
pub use lambda::{LambdaExecutor, PreviousEnvironment};
pub use sns::{DEFAULT_CHANNEL, ESCALATION_CHANNEL, SnsExecutor, sanitize_subject};
pub use ssm::{
    CommandReport, DIAGNOSE_DOCUMENT, DiagnoseConfig, NamedCommand, SSM_ACTIONS, SsmConfig,
    SsmExecutor,
};

/// One approved step to carry out.
#[derive(Debug, Clone, Copy)]
pub struct StepRequest<'a> {
    /// The incident it heals.
    pub incident: &'a Incident,
    /// Its index in the decision.
    pub step: usize,
    /// What to do.
    pub action: &'a Action,
}

impl StepRequest<'_> {
    /// The step's idempotency token: the same for every attempt of this step,
    /// at most 64 characters (EC2 `ClientToken`), derived from the incident id
    /// and the step index.
    pub fn token(&self) -> String {
        let id = self.incident.id.as_str();
        let id = id.get(..id.len().min(56)).unwrap_or(id);
        format!("{id}-{}", self.step)
    }
}

/// The exact AWS call a step makes: the operation and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PlannedCall {
    /// `service:Operation`, e.g. `ecs:UpdateService` (the IAM action).
    pub operation: String,
    /// The request parameters, as the API names them.
    pub params: serde_json::Value,
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum ExecOutcome {
    /// The calls succeeded.
    Succeeded,
    /// Recorded only: dry run.
    DryRun,
    /// Not sent: right before the call, the condition no longer held (what
    /// was seen says why: already stopped, already reset, …).
    Superseded {
        /// What the re-check saw.
        seen: String,
    },
    /// A call failed.
    Failed {
        /// What the error means for a retry.
        class: AwsErrorClass,
        /// Why, for humans.
        reason: String,
    },
}

impl ExecOutcome {
    /// The result as a metric label (`succeeded`, `dry-run`, `superseded`,
    /// `failed-<class>`).
    pub fn label(&self) -> &'static str {
        match self {
            ExecOutcome::Succeeded => "succeeded",
            ExecOutcome::DryRun => "dry-run",
            ExecOutcome::Superseded { .. } => "superseded",
            ExecOutcome::Failed { class, .. } => {
                if class.is_retryable() {
                    "failed-retryable"
                } else {
                    "failed"
                }
            }
        }
    }
}

/// What executing one step did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Execution {
    /// How it ended.
    #[serde(flatten)]
    pub outcome: ExecOutcome,
    /// The calls made (or, in dry run, that would be made), in order.
    pub calls: Vec<PlannedCall>,
    /// AWS request ids of the calls made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_ids: Vec<String>,
    /// Resources the step created (a twin instance, a task).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created: Vec<String>,
    /// What changed, for humans (`revision 7 → 6`, `i-old → i-new`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What an SSM command on the instance reported (bounded), and for
    /// `run-diagnostics` the diagnosis made of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<ssm::CommandReport>,
}

impl Execution {
    /// A failure before or at `call`.
    pub fn failed(
        calls: Vec<PlannedCall>,
        class: AwsErrorClass,
        reason: impl Into<String>,
    ) -> Self {
        Execution {
            outcome: ExecOutcome::Failed {
                class,
                reason: reason.into(),
            },
            calls,
            request_ids: Vec::new(),
            created: Vec::new(),
            note: None,
            command: None,
        }
    }
}

/// Carries out steps of some action kinds against one AWS service.
#[async_trait]
pub trait Executor: Send + Sync {
    /// Whether this executor carries out `kind`.
    fn handles(&self, kind: ActionKind) -> bool;

    /// The calls the step would make, without making them (the dry run
    /// records these). Pure: no client, no clock.
    fn plan(&self, req: &StepRequest<'_>) -> Vec<PlannedCall>;

    /// Carries the step out. Never panics; every AWS error is an outcome.
    async fn execute(&self, req: &StepRequest<'_>) -> Execution;

    /// Whether a step of `kind` that an earlier attempt started (and may
    /// have sent) can be executed again without acting twice: the executor
    /// finds what that attempt created, or re-reads the resource and
    /// supersedes the step when it is done, or the call sets a state rather
    /// than triggering an event. `false` (the default) for calls that would
    /// act twice (a reboot, a new deployment, a message): those are not
    /// repeated.
    fn resumable(&self, kind: ActionKind) -> bool {
        let _ = kind;
        false
    }
}

/// The executors of a host, by action kind: the first that handles a kind
/// carries it out.
#[derive(Default)]
pub struct Executors(Vec<Box<dyn Executor>>);

impl std::fmt::Debug for Executors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Executors").field(&self.0.len()).finish()
    }
}

impl Executors {
    /// No executor.
    pub fn new() -> Self {
        Executors(Vec::new())
    }

    /// Adds an executor.
    pub fn with(mut self, executor: impl Executor + 'static) -> Self {
        self.0.push(Box::new(executor));
        self
    }

    /// The executor of `kind`, if any.
    pub fn of(&self, kind: ActionKind) -> Option<&dyn Executor> {
        self.0.iter().find(|e| e.handles(kind)).map(|e| e.as_ref())
    }

    /// Every executor of a live host, with clients from `shared` (given the
    /// executors' retry configuration, [`crate::aws::action_config`]),
    /// `channels` naming the SNS topic of each notification channel, `ec2`
    /// (its launch deadline is the operator's) and what the SSM steps may run.
    pub fn live_with(
        shared: &aws_config::SdkConfig,
        channels: std::collections::BTreeMap<String, String>,
        ec2: Ec2Executor,
        ssm: SsmConfig,
    ) -> Self {
        let c = crate::aws::action_config(shared);
        Executors::new()
            .with(EcsExecutor::new(&c))
            .with(ec2)
            .with(AutoscalingExecutor::new(&c))
            .with(Elbv2Executor::new(&c))
            .with(LambdaExecutor::new(&c))
            .with(SnsExecutor::new(&c, channels))
            .with(SsmExecutor::new(&c, ssm))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;

    #[async_trait]
    impl Executor for Fake {
        fn handles(&self, kind: ActionKind) -> bool {
            kind == ActionKind::RebootInstance
        }
        fn plan(&self, req: &StepRequest<'_>) -> Vec<PlannedCall> {
            let id = match req.action {
                Action::RebootInstance { instance_id } => instance_id.as_str(),
                _ => "",
            };
            vec![PlannedCall {
                operation: "ec2:RebootInstances".into(),
                params: serde_json::json!({ "InstanceIds": [id] }),
            }]
        }
        async fn execute(&self, _req: &StepRequest<'_>) -> Execution {
            Execution::failed(Vec::new(), AwsErrorClass::Permanent, "not in a unit test")
        }
    }

    #[tokio::test]
    async fn the_dry_run_records_the_exact_calls_and_sends_none() {
        let incident = Incident::from_json(
            br#"{"kind":"instance-impaired","resource":{"kind":"ec2-instance","id":"i-1"},"detected-at":"2024-05-01T10:00:00Z"}"#,
        )
        .expect("incident");
        let action = Action::RebootInstance {
            instance_id: "i-1".into(),
        };
        let req = StepRequest {
            incident: &incident,
            step: 0,
            action: &action,
        };
        let dry = DryRun(Executors::new().with(Fake));
        assert!(dry.handles(ActionKind::RebootInstance));
        assert!(!dry.handles(ActionKind::ReplaceInstance));
        let e = dry.execute(&req).await;
        assert_eq!(e.outcome, ExecOutcome::DryRun);
        assert_eq!(e.calls[0].operation, "ec2:RebootInstances");
        assert_eq!(e.calls[0].params["InstanceIds"][0], "i-1");
        assert!(req.token().len() <= 64);
        assert_eq!(req.token(), StepRequest { step: 0, ..req }.token());
    }
}
