//! The SSM executor: `run-diagnostics` (SendCommand of a configured
//! diagnostics document, a bounded wait for the invocation, its output kept
//! bounded and classified by the diagnose rules) and `run-command` (only
//! commands named in config: a document with fixed parameters). A policy
//! names a document or a command; the host decides what runs: any other
//! document, or an unknown command name, fails the step without a call.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ssm::operation::RequestId;
use aws_smithy_types::error::display::DisplayErrorContext;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::aws::{AwsErrorClass, classify};
use crate::decision::{Action, ActionKind};
use crate::diagnose::{CommandOutput, CommandStatus, Diagnosis, Rules};

use super::{ExecOutcome, Execution, Executor, PlannedCall, StepRequest};

/// The API operations [`SsmExecutor`] calls, as IAM actions.
pub const SSM_ACTIONS: &[&str] = &["ssm:SendCommand", "ssm:GetCommandInvocation"];

/// Bytes of stdout and of stderr kept on the record.
pub const MAX_KEPT_OUTPUT: usize = 4096;

/// The diagnostics document healer ships (`infra/ssm/healer-diagnose.yaml`).
pub const DIAGNOSE_DOCUMENT: &str = "healer-diagnose";

/// A command a policy may run by name (`[diagnose.commands.NAME]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NamedCommand {
    /// The SSM document (`AWS-RunShellScript`, or one of the operator's).
    pub document: String,
    /// Its parameters, fixed here: a policy cannot change them.
    #[serde(default)]
    pub parameters: BTreeMap<String, Vec<String>>,
}

/// What the SSM executor may run and how long it waits.
#[derive(Debug, Clone)]
pub struct SsmConfig {
    /// Documents `run-diagnostics` may send (default: `healer-diagnose`).
    pub documents: Vec<String>,
    /// Parameters every diagnostics document is sent with
    /// (`healer-diagnose` takes `Service` and `HealthPort`).
    pub parameters: BTreeMap<String, Vec<String>>,
    /// Commands `run-command` may run, by name.
    pub commands: BTreeMap<String, NamedCommand>,
    /// Longest wait for an invocation to end (default 120 s).
    pub wait: Duration,
    /// Between two reads of the invocation (default 2 s).
    pub poll: Duration,
    /// How a diagnostics output is classified.
    pub rules: Rules,
}

impl Default for SsmConfig {
    fn default() -> Self {
        SsmConfig {
            documents: vec![DIAGNOSE_DOCUMENT.to_owned()],
            parameters: BTreeMap::new(),
            commands: BTreeMap::new(),
            wait: Duration::from_secs(120),
            poll: Duration::from_secs(2),
            rules: Rules::builtin(),
        }
    }
}

/// `[diagnose]` (`HEALER_DIAGNOSE_JSON`): what the SSM steps may run and how
/// diagnostics are classified.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DiagnoseConfig {
    /// Documents `run-diagnostics` may send (default `["healer-diagnose"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documents: Option<Vec<String>>,
    /// Parameters of the diagnostics documents (`{"Service": ["nginx"]}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, Vec<String>>,
    /// Longest wait for an invocation, seconds (default 120).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_secs: Option<u64>,
    /// Between two reads of an invocation, milliseconds (default 2000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_ms: Option<u64>,
    /// Ordered classification rules, replacing the built-in ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<crate::diagnose::RuleSpec>>,
    /// Commands `run-command` may run, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub commands: BTreeMap<String, NamedCommand>,
}

impl DiagnoseConfig {
    /// The executor's configuration; a rule that does not compile is an error.
    pub fn build(&self) -> Result<SsmConfig, crate::diagnose::RuleError> {
        let d = SsmConfig::default();
        Ok(SsmConfig {
            documents: self.documents.clone().unwrap_or(d.documents),
            parameters: self.parameters.clone(),
            commands: self.commands.clone(),
            wait: self.wait_secs.map_or(d.wait, Duration::from_secs),
            poll: self.poll_ms.map_or(d.poll, Duration::from_millis),
            rules: match &self.rules {
                Some(specs) => Rules::new(specs)?,
                None => d.rules,
            },
        })
    }
}

/// What an SSM command reported, as recorded on the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CommandReport {
    /// The document sent.
    pub document: String,
    /// SSM's command id.
    pub command_id: String,
    /// How the invocation ended.
    pub status: CommandStatus,
    /// Its exit code, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The first [`MAX_KEPT_OUTPUT`] bytes of standard output.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stdout: String,
    /// The first [`MAX_KEPT_OUTPUT`] bytes of standard error.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr: String,
    /// For `run-diagnostics`: the classification of the whole output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<Diagnosis>,
}

/// Carries out `run-diagnostics` and `run-command` with one SSM client.
#[derive(Debug, Clone)]
pub struct SsmExecutor {
    ssm: aws_sdk_ssm::Client,
    config: std::sync::Arc<SsmConfig>,
}

impl SsmExecutor {
    /// An executor with the client `shared` configures.
    pub fn new(shared: &aws_config::SdkConfig, config: SsmConfig) -> Self {
        SsmExecutor {
            ssm: aws_sdk_ssm::Client::new(shared),
            config: std::sync::Arc::new(config),
        }
    }

    /// The instance, document and parameters a step runs, or why it may not.
    fn command_of<'a>(&'a self, action: &'a Action) -> Result<Command<'a>, String> {
        match action {
            Action::RunDiagnostics {
                instance_id,
                document,
            } => {
                if self.config.documents.iter().any(|d| d == document) {
                    Ok(Command {
                        instance: instance_id,
                        document,
                        parameters: Some(&self.config.parameters),
                        diagnose: true,
                    })
                } else {
                    Err(format!(
                        "document {document:?} is not a configured diagnostics document ({})",
                        self.config.documents.join(", ")
                    ))
                }
            }
            Action::RunCommand {
                instance_id,
                command,
            } => match self.config.commands.get(command) {
                Some(named) => Ok(Command {
                    instance: instance_id,
                    document: &named.document,
                    parameters: Some(&named.parameters),
                    diagnose: false,
                }),
                None => Err(format!(
                    "no command named {command:?} is configured ([diagnose.commands])"
                )),
            },
            other => Err(format!(
                "the SSM executor does not carry out {}",
                other.kind()
            )),
        }
    }

    /// Reads the invocation until it ends or the wait is over.
    async fn wait_for(
        &self,
        command_id: &str,
        instance: &str,
        request_ids: &mut Vec<String>,
    ) -> Result<CommandOutput, (AwsErrorClass, String)> {
        let deadline = tokio::time::Instant::now() + self.config.wait;
        loop {
            let read = self
                .ssm
                .get_command_invocation()
                .command_id(command_id)
                .instance_id(instance)
                .send()
                .await;
            match read {
                Ok(out) => {
                    if let Some(id) = out.request_id() {
                        request_ids.push(id.to_owned());
                    }
                    let status = out.status().map(|s| s.as_str()).unwrap_or("Pending");
                    if !matches!(status, "Pending" | "InProgress" | "Delayed" | "Cancelling") {
                        let details = out.status_details().unwrap_or_default();
                        return Ok(CommandOutput {
                            status: CommandStatus::from_ssm(status, details),
                            exit_code: (out.response_code() != -1).then_some(out.response_code()),
                            stdout: out.standard_output_content().unwrap_or_default().to_owned(),
                            stderr: out.standard_error_content().unwrap_or_default().to_owned(),
                        });
                    }
                }
                // Just after SendCommand the invocation may not exist yet.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_invocation_does_not_exist()) => {}
                Err(e) if classify(&e).is_retryable() => {}
                Err(e) => return Err((classify(&e), DisplayErrorContext(&e).to_string())),
            }
            if tokio::time::Instant::now() + self.config.poll > deadline {
                return Ok(CommandOutput {
                    status: CommandStatus::ExecutionTimedOut,
                    exit_code: None,
                    stdout: String::new(),
                    stderr: format!(
                        "no end of the invocation within {} s",
                        self.config.wait.as_secs()
                    ),
                });
            }
            tokio::time::sleep(self.config.poll).await;
        }
    }
}

/// What one step sends.
struct Command<'a> {
    instance: &'a str,
    document: &'a str,
    parameters: Option<&'a BTreeMap<String, Vec<String>>>,
    diagnose: bool,
}

fn comment(req: &StepRequest<'_>) -> String {
    // SSM allows 100 characters.
    let c = format!("healer {}", req.incident.id.as_str());
    c.chars().take(100).collect()
}

fn planned(req: &StepRequest<'_>, c: &Command<'_>) -> Vec<PlannedCall> {
    let mut send = json!({
        "InstanceIds": [c.instance],
        "DocumentName": c.document,
        "Comment": comment(req),
    });
    if let Some(p) = c.parameters.filter(|p| !p.is_empty()) {
        send["Parameters"] = json!(p);
    }
    vec![
        PlannedCall {
            operation: "ssm:SendCommand".into(),
            params: send,
        },
        PlannedCall {
            operation: "ssm:GetCommandInvocation".into(),
            params: json!({ "CommandId": "(from SendCommand)", "InstanceId": c.instance }),
        },
    ]
}

/// `s`, cut to [`MAX_KEPT_OUTPUT`] bytes on a character boundary.
fn kept(s: &str) -> String {
    let mut end = s.len().min(MAX_KEPT_OUTPUT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[async_trait]
impl Executor for SsmExecutor {
    fn handles(&self, kind: ActionKind) -> bool {
        matches!(kind, ActionKind::RunDiagnostics | ActionKind::RunCommand)
    }

    /// Diagnostics only read: running them again is harmless. A named
    /// command (a restart) is not repeated.
    fn resumable(&self, kind: ActionKind) -> bool {
        kind == ActionKind::RunDiagnostics
    }

    fn plan(&self, req: &StepRequest<'_>) -> Vec<PlannedCall> {
        self.command_of(req.action)
            .map(|c| planned(req, &c))
            .unwrap_or_default()
    }

    async fn execute(&self, req: &StepRequest<'_>) -> Execution {
        let c = match self.command_of(req.action) {
            Ok(c) => c,
            Err(why) => return Execution::failed(Vec::new(), AwsErrorClass::Permanent, why),
        };
        let calls = planned(req, &c);
        let parameters = c.parameters.filter(|p| !p.is_empty()).map(|p| {
            p.iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<std::collections::HashMap<_, _>>()
        });
        let sent = self
            .ssm
            .send_command()
            .instance_ids(c.instance)
            .document_name(c.document)
            .comment(comment(req))
            .set_parameters(parameters)
            .send()
            .await;
        let (command_id, mut request_ids) = match sent {
            Ok(out) => (
                out.command()
                    .and_then(|cmd| cmd.command_id())
                    .unwrap_or_default()
                    .to_owned(),
                out.request_id().map(str::to_owned).into_iter().collect(),
            ),
            Err(e) => {
                return Execution::failed(
                    calls,
                    classify(&e),
                    format!("SendCommand failed: {}", DisplayErrorContext(&e)),
                );
            }
        };
        let output = match self
            .wait_for(&command_id, c.instance, &mut request_ids)
            .await
        {
            Ok(o) => o,
            Err((class, error)) => {
                return Execution {
                    request_ids,
                    ..Execution::failed(
                        calls,
                        class,
                        format!("GetCommandInvocation failed: {error}"),
                    )
                };
            }
        };
        let diagnosis = c.diagnose.then(|| self.config.rules.classify(&output));
        let outcome = if c.diagnose || output.status == CommandStatus::Success {
            ExecOutcome::Succeeded
        } else {
            ExecOutcome::Failed {
                class: AwsErrorClass::Permanent,
                reason: format!(
                    "{} on {} ended {:?} (exit code {}): {}",
                    c.document,
                    c.instance,
                    output.status,
                    output.exit_code.unwrap_or(-1),
                    output.stderr.lines().next().unwrap_or_default()
                ),
            }
        };
        let note = match &diagnosis {
            Some(d) => format!("diagnosis of {}: {}", c.instance, d.class.as_str()),
            None => format!("{} ran on {}: {:?}", c.document, c.instance, output.status),
        };
        Execution {
            outcome,
            calls,
            request_ids,
            created: Vec::new(),
            note: Some(note),
            command: Some(CommandReport {
                document: c.document.to_owned(),
                command_id,
                status: output.status,
                exit_code: output.exit_code,
                stdout: kept(&output.stdout),
                stderr: kept(&output.stderr),
                diagnosis,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::Incident;

    fn executor(config: SsmConfig) -> SsmExecutor {
        let shared = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        SsmExecutor::new(&shared, config)
    }

    #[test]
    fn only_configured_documents_and_named_commands_are_planned() {
        let incident = Incident::from_json(
            br#"{"kind":"target-unhealthy","resource":{"kind":"ec2-instance","id":"i-1"},"detected-at":"2024-05-01T10:00:00Z"}"#,
        )
        .expect("incident");
        let mut config = SsmConfig::default();
        config.commands.insert(
            "restart-service".into(),
            NamedCommand {
                document: "AWS-RunShellScript".into(),
                parameters: [("commands".into(), vec!["systemctl restart web".into()])].into(),
            },
        );
        let e = executor(config);
        let req = |action| StepRequest {
            incident: &incident,
            step: 0,
            action,
        };
        let diagnose = Action::RunDiagnostics {
            instance_id: "i-1".into(),
            document: DIAGNOSE_DOCUMENT.into(),
        };
        let plan = e.plan(&req(&diagnose));
        assert_eq!(plan[0].operation, "ssm:SendCommand");
        assert_eq!(plan[0].params["DocumentName"], DIAGNOSE_DOCUMENT);
        assert!(
            plan[0].params["Comment"]
                .as_str()
                .is_some_and(|c| c.len() <= 100)
        );
        let restart = Action::RunCommand {
            instance_id: "i-1".into(),
            command: "restart-service".into(),
        };
        let plan = e.plan(&req(&restart));
        assert_eq!(plan[0].params["DocumentName"], "AWS-RunShellScript");
        assert_eq!(
            plan[0].params["Parameters"]["commands"][0],
            "systemctl restart web"
        );
        let other = Action::RunDiagnostics {
            instance_id: "i-1".into(),
            document: "AWS-RunShellScript".into(),
        };
        assert!(
            e.plan(&req(&other)).is_empty(),
            "not a diagnostics document"
        );
        let unknown = Action::RunCommand {
            instance_id: "i-1".into(),
            command: "rm-rf".into(),
        };
        assert!(e.plan(&req(&unknown)).is_empty());
        for c in e.plan(&req(&diagnose)) {
            assert!(SSM_ACTIONS.contains(&c.operation.as_str()));
        }
        assert!(e.resumable(ActionKind::RunDiagnostics));
        assert!(!e.resumable(ActionKind::RunCommand));
    }

    #[test]
    fn kept_output_is_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_KEPT_OUTPUT);
        let k = kept(&long);
        assert!(k.len() <= MAX_KEPT_OUTPUT);
        assert!(k.chars().all(|c| c == 'é'));
    }
}
