//! `healer chaos`: faults injected on purpose, for drills and demos, against
//! a real account or the local AWS (moto).
//!
//! Guard rails, the AWS FIS way:
//! - only a resource tagged [`CHAOS_TAG`]`=true` is touched; anything else
//!   is refused with the reason, before any change;
//! - [`Chaos::preview`] reads and says what would change (the command's
//!   default); [`Chaos::inject`] changes it;
//! - every injection is recorded in a [`Journal`] *before* the change, with
//!   what undoes it ([`Undo`]), so a revert works after a crash;
//! - [`Chaos::revert`] puts back only what is still as the fault left it: a
//!   value someone (healer, say) changed since is left as it is, and said.
//!
//! moto emits no events, so in the local AWS chaos can also play AWS's part
//! ([`emit`]): it delivers to an SQS queue the EventBridge event AWS would
//! send for the change (an alarm state change, an ECS task or deployment
//! state change).

pub mod emit;
mod journal;
mod services;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use journal::{Experiment, ExperimentState, Journal};

/// The tag a resource must carry (value `true`) for chaos to touch it.
pub const CHAOS_TAG: &str = "HealerChaos";

/// What every task stop reason of chaos starts with. AWS records a StopTask
/// as `UserInitiated`, which healer ignores (an operator's stop is not a
/// failure); a stop with this reason is a drill's crash, and is treated as one.
pub const STOP_REASON: &str = "healer-chaos: simulated crash";

/// The image of a bad deployment: a repository that does not exist, so its
/// tasks cannot start.
pub const BAD_IMAGE: &str = "healer-chaos.invalid/does-not-exist:never";

/// One fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum Fault {
    /// Sets the function's `FAILURE_RATE` variable (the fragile-function
    /// seed reads it), other variables kept.
    LambdaFailureRate { function: String, rate: String },
    /// Stops one running task of the service, with [`STOP_REASON`].
    StopTask { cluster: String, service: String },
    /// Deploys a new revision of the service's task definition whose
    /// image cannot be pulled ([`BAD_IMAGE`]).
    BadDeployment { cluster: String, service: String },
    /// Real AWS cannot impair an instance: this sets the instance's
    /// status-check alarms to ALARM (SetAlarmState), as a failed check would.
    ImpairInstance { instance: String },
    /// Stops the instance behind the target (its health check then fails).
    UnhealthyTarget {
        target_group: String,
        target: String,
    },
    /// Sets an alarm's state (SetAlarmState; CloudWatch sets it back at its
    /// next evaluation of real data).
    Alarm { name: String, state: AlarmState },
}

/// An alarm state chaos can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[clap(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlarmState {
    Alarm,
    Ok,
    InsufficientData,
}

impl AlarmState {
    /// CloudWatch's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Alarm => "ALARM",
            AlarmState::Ok => "OK",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }

    /// From CloudWatch's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ALARM" => Some(AlarmState::Alarm),
            "OK" => Some(AlarmState::Ok),
            "INSUFFICIENT_DATA" => Some(AlarmState::InsufficientData),
            _ => None,
        }
    }
}

impl Fault {
    /// The fault's name on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::LambdaFailureRate { .. } => "lambda-failure-rate",
            Fault::StopTask { .. } => "stop-task",
            Fault::BadDeployment { .. } => "bad-deployment",
            Fault::ImpairInstance { .. } => "impair-instance",
            Fault::UnhealthyTarget { .. } => "unhealthy-target",
            Fault::Alarm { .. } => "alarm",
        }
    }
}

/// What undoes an injection, recorded before the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "kebab-case")]
pub enum Undo {
    /// The function's variables: each back to its previous value (`None`:
    /// removed), where it still has the value chaos set.
    FunctionEnvironment {
        function: String,
        previous: BTreeMap<String, Option<String>>,
        injected: BTreeMap<String, String>,
    },
    /// Nothing to put back (the service's scheduler replaces a stopped task).
    Nothing { why: String },
    /// The service back on `previous` while it is still on `bad`; `bad`
    /// deregistered either way.
    Deployment {
        cluster: String,
        service: String,
        previous: String,
        bad: String,
    },
    /// Each alarm back to its previous state while it is still in `injected`.
    AlarmStates {
        previous: BTreeMap<String, AlarmState>,
        injected: AlarmState,
    },
    /// The instance started again while it is stopped.
    StartInstance { instance: String },
}

/// What a fault would change, read from the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    /// The resource the guard checked (ARN or id).
    pub target: String,
    /// One line per change: what from, what to.
    pub changes: Vec<String>,
    /// How the change will be undone.
    pub undo: Undo,
}

/// How a revert went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Reverted {
    /// Put back: one line per change.
    Restored { changes: Vec<String> },
    /// Changed since by someone else (healer, say): left as it is.
    Superseded { why: String },
    /// There was nothing to put back.
    NothingToDo { why: String },
}

/// Errors of chaos.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// The guard rail: the resource lacks the chaos tag.
    #[error(
        "refused: {resource} is not tagged {CHAOS_TAG}=true (chaos touches only resources that opt in)"
    )]
    NotTagged { resource: String },
    /// The resource (or what the fault needs of it) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// An AWS call failed.
    #[error("{operation}: {message}")]
    Aws {
        operation: &'static str,
        message: String,
    },
    /// The journal could not be read or written.
    #[error("chaos journal {path}: {source}")]
    Journal {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A journal entry is not valid JSON.
    #[error("chaos journal {path}: {source}")]
    Entry {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The AWS clients chaos needs.
#[derive(Debug, Clone)]
pub struct Chaos {
    lambda: aws_sdk_lambda::Client,
    elbv2: aws_sdk_elasticloadbalancingv2::Client,
    ecs: aws_sdk_ecs::Client,
    ec2: aws_sdk_ec2::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
}

impl Chaos {
    /// Clients from `config`.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Chaos {
            lambda: aws_sdk_lambda::Client::new(config),
            elbv2: aws_sdk_elasticloadbalancingv2::Client::new(config),
            ecs: aws_sdk_ecs::Client::new(config),
            ec2: aws_sdk_ec2::Client::new(config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(config),
        }
    }

    /// Reads what `fault` would change and checks the guard rail; changes
    /// nothing.
    pub async fn preview(&self, fault: &Fault) -> Result<Preview, ChaosError> {
        match fault {
            Fault::LambdaFailureRate { function, rate } => {
                self.preview_failure_rate(function, rate).await
            }
            Fault::StopTask { cluster, service } => self.preview_stop(cluster, service).await,
            Fault::BadDeployment { cluster, service } => {
                self.preview_deployment(cluster, service).await
            }
            Fault::ImpairInstance { instance } => self.preview_impair(instance).await,
            Fault::UnhealthyTarget {
                target_group,
                target,
            } => self.preview_unhealthy(target_group, target).await,
            Fault::Alarm { name, state } => self.preview_alarm(name, *state).await,
        }
    }

    /// Makes the change `preview` described (read again, so it is checked
    /// against the account as it is now). `journal` is called with the undo
    /// before anything changes, and again before each change that grows it. Returns the undo as it stands after the
    /// change and the ids of what was touched.
    pub async fn inject(
        &self,
        fault: &Fault,
        experiment: &str,
        journal: &mut dyn FnMut(&Undo) -> Result<(), ChaosError>,
    ) -> Result<Injected, ChaosError> {
        let preview = self.preview(fault).await?;
        journal(&preview.undo)?;
        self.apply(fault, experiment, preview, journal).await
    }

    /// Undoes what `undo` describes, where the resource is still as the
    /// fault left it.
    pub async fn revert(&self, undo: &Undo) -> Result<Reverted, ChaosError> {
        match undo {
            Undo::FunctionEnvironment {
                function,
                previous,
                injected,
            } => self.revert_environment(function, previous, injected).await,
            Undo::Nothing { why } => Ok(Reverted::NothingToDo { why: why.clone() }),
            Undo::Deployment {
                cluster,
                service,
                previous,
                bad,
            } => {
                self.revert_deployment(cluster, service, previous, bad)
                    .await
            }
            Undo::AlarmStates { previous, injected } => {
                self.revert_alarms(previous, *injected).await
            }
            Undo::StartInstance { instance } => self.revert_instance(instance).await,
        }
    }

    /// The current state of the alarm `name`, for a stop condition.
    pub async fn alarm_state(&self, name: &str) -> Result<AlarmState, ChaosError> {
        services::alarm_state(&self.cloudwatch, name).await
    }
}

/// What an injection did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    /// The resource the guard checked.
    pub target: String,
    /// The undo, completed with what only the change could know (a new
    /// revision's ARN).
    pub undo: Undo,
    /// One line per change made.
    pub changes: Vec<String>,
    /// What AWS itself would do and send after the change (for [`emit`]).
    pub aws_part: Vec<emit::AwsPart>,
}

/// `true` when `tags` hold [`CHAOS_TAG`]`=true`.
fn opted_in<'a>(mut tags: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
    tags.any(|(k, v)| k == CHAOS_TAG && v.eq_ignore_ascii_case("true"))
}

/// Maps an SDK error to [`ChaosError::Aws`] for `operation`.
fn aws<E: std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &'static str,
) -> impl FnOnce(aws_smithy_runtime_api::client::result::SdkError<E, R>) -> ChaosError {
    move |e| ChaosError::Aws {
        operation,
        message: aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_tag_with_true_opts_in() {
        assert!(opted_in([("HealerChaos", "true")].into_iter()));
        assert!(opted_in([("a", "b"), ("HealerChaos", "TRUE")].into_iter()));
        assert!(!opted_in([("HealerChaos", "false")].into_iter()));
        assert!(!opted_in([("healerchaos", "true")].into_iter()));
        assert!(!opted_in(std::iter::empty()));
    }

    #[test]
    fn faults_and_undos_round_trip_through_the_journal_format() {
        let f = Fault::Alarm {
            name: "a".into(),
            state: AlarmState::Alarm,
        };
        let j = serde_json::to_string(&f).expect("json");
        assert_eq!(j, r#"{"fault":"alarm","name":"a","state":"ALARM"}"#);
        assert_eq!(serde_json::from_str::<Fault>(&j).expect("back"), f);
        let u = Undo::AlarmStates {
            previous: BTreeMap::from([("a".into(), AlarmState::Ok)]),
            injected: AlarmState::Alarm,
        };
        let j = serde_json::to_string(&u).expect("json");
        assert_eq!(serde_json::from_str::<Undo>(&j).expect("back"), u);
    }
}
