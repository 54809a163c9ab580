//! The Lambda executor: `update-function-config` sets some environment
//! variables of a function (the serverless seeds reset `FAILURE_RATE`) and
//! keeps every other variable. It reads the configuration, merges, and writes
//! it back with the `RevisionId` it read, so a change made in between fails
//! the step instead of being overwritten. It records the previous values
//! ([`PreviousEnvironment`], in [`Execution::note`]) for a later revert. It
//! does not decide whether the change is wise (the governor did) and sends no
//! update when every variable already has its target value.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_lambda::error::DisplayErrorContext;
use aws_sdk_lambda::operation::RequestId;
use aws_sdk_lambda::types::Environment;
use serde_json::json;

use super::{ExecOutcome, Execution, Executor, PlannedCall, StepRequest};
use crate::aws::classify;
use crate::decision::{Action, ActionKind};

/// `lambda:GetFunctionConfiguration`.
const GET: &str = "lambda:GetFunctionConfiguration";
/// `lambda:UpdateFunctionConfiguration`.
const UPDATE: &str = "lambda:UpdateFunctionConfiguration";
/// Where the previous values start in [`Execution::note`].
const PREVIOUS: &str = "; previous: ";

/// Carries out `update-function-config` through the Lambda API.
#[derive(Debug, Clone)]
pub struct LambdaExecutor {
    client: aws_sdk_lambda::Client,
}

/// The values an update replaced, by variable: `None` for a variable the
/// function did not have. Restoring them (and removing the `None` ones)
/// reverts the step.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PreviousEnvironment(pub BTreeMap<String, Option<String>>);

impl PreviousEnvironment {
    /// The previous values recorded in an [`Execution::note`] of this
    /// executor, if the note carries them.
    pub fn from_note(note: &str) -> Option<Self> {
        let (_, json) = note.rsplit_once(PREVIOUS)?;
        serde_json::from_str(json).ok().map(PreviousEnvironment)
    }
}

impl LambdaExecutor {
    /// An executor whose client comes from `config` (its retries and
    /// timeouts: [`crate::aws::sdk_config`]).
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        LambdaExecutor {
            client: aws_sdk_lambda::Client::new(config),
        }
    }

    /// Reads the function's configuration: its variables, its revision id
    /// and the request id; on error, the failed execution.
    async fn read(
        &self,
        function: &str,
        calls: &mut Vec<PlannedCall>,
    ) -> Result<(HashMap<String, String>, Option<String>, Vec<String>), Box<Execution>> {
        calls.push(get_call(function));
        match self
            .client
            .get_function_configuration()
            .function_name(function)
            .send()
            .await
        {
            Ok(read) => Ok((
                read.environment()
                    .and_then(|e| e.variables())
                    .cloned()
                    .unwrap_or_default(),
                read.revision_id().map(str::to_owned),
                read.request_id().map(str::to_owned).into_iter().collect(),
            )),
            Err(e) => {
                let reason = format!("{GET} {function}: {}", DisplayErrorContext(&e));
                Err(Box::new(Execution::failed(
                    std::mem::take(calls),
                    classify(&e),
                    reason,
                )))
            }
        }
    }

    async fn update(&self, function: &str, targets: &[(String, String)]) -> Execution {
        let mut calls = Vec::new();
        let (current, revision, mut request_ids) = match self.read(function, &mut calls).await {
            Ok(read) => read,
            Err(failed) => return *failed,
        };
        // AWS always returns a revision; an emulator that does not (moto)
        // gets an unconditioned update.
        let previous: BTreeMap<String, Option<String>> = targets
            .iter()
            .filter(|(k, v)| current.get(k) != Some(v))
            .map(|(k, _)| (k.clone(), current.get(k).cloned()))
            .collect();
        if previous.is_empty() {
            let seen = targets
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Execution {
                outcome: ExecOutcome::Superseded {
                    seen: format!("{function} already has {seen}"),
                },
                calls,
                request_ids,
                created: Vec::new(),
                note: None,
                command: None,
            };
        }
        let mut merged = current.clone();
        merged.extend(targets.iter().cloned());
        calls.push(update_call(function, targets, revision.as_deref()));
        let sent = self
            .client
            .update_function_configuration()
            .function_name(function)
            .environment(Environment::builder().set_variables(Some(merged)).build())
            .set_revision_id(revision.clone())
            .send()
            .await;
        match sent {
            Ok(out) => {
                request_ids.extend(out.request_id().map(str::to_owned));
                Execution {
                    outcome: ExecOutcome::Succeeded,
                    calls,
                    request_ids,
                    created: Vec::new(),
                    note: Some(note(function, &previous, targets)),
                    command: None,
                }
            }
            Err(e) => {
                let conflict = e
                    .as_service_error()
                    .is_some_and(|s| s.is_precondition_failed_exception());
                let reason = if conflict {
                    format!(
                        "{UPDATE} {function}: the function changed since it was read (revision {}); not overwritten: {}",
                        revision.as_deref().unwrap_or("none"),
                        DisplayErrorContext(&e)
                    )
                } else {
                    format!("{UPDATE} {function}: {}", DisplayErrorContext(&e))
                };
                let mut failed = Execution::failed(calls, classify(&e), reason);
                failed.request_ids = request_ids;
                failed
            }
        }
    }
}

impl LambdaExecutor {
    /// Reverts an `update-function-config` step: restores the variables it
    /// changed to their previous values and removes those it added, keeping
    /// every other variable, with the `RevisionId` read (a change in between
    /// fails instead of being overwritten). This is `healer revert`.
    pub async fn restore(&self, function: &str, previous: &PreviousEnvironment) -> Execution {
        let mut calls = Vec::new();
        let (mut merged, revision, mut request_ids) = match self.read(function, &mut calls).await {
            Ok(read) => read,
            Err(failed) => return *failed,
        };
        for (k, v) in &previous.0 {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        let mut params =
            json!({ "FunctionName": function, "Environment": { "Variables": previous.0 } });
        if let Some(r) = &revision {
            params["RevisionId"] = json!(r);
        }
        calls.push(PlannedCall {
            operation: UPDATE.into(),
            params,
        });
        let sent = self
            .client
            .update_function_configuration()
            .function_name(function)
            .environment(Environment::builder().set_variables(Some(merged)).build())
            .set_revision_id(revision)
            .send()
            .await;
        match sent {
            Ok(out) => {
                request_ids.extend(out.request_id().map(str::to_owned));
                let restored = previous
                    .0
                    .iter()
                    .map(|(k, v)| match v {
                        Some(v) => format!("{k}={v}"),
                        None => format!("{k} removed"),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                Execution {
                    outcome: ExecOutcome::Succeeded,
                    calls,
                    request_ids,
                    created: Vec::new(),
                    note: Some(format!("{function}: restored {restored}")),
                    command: None,
                }
            }
            Err(e) => {
                let reason = format!("{UPDATE} {function}: {}", DisplayErrorContext(&e));
                let mut failed = Execution::failed(calls, classify(&e), reason);
                failed.request_ids = request_ids;
                failed
            }
        }
    }
}

fn get_call(function: &str) -> PlannedCall {
    PlannedCall {
        operation: GET.into(),
        params: json!({ "FunctionName": function }),
    }
}

/// The update as recorded: the variables it sets (the function's other
/// variables are sent back unchanged and not recorded: they may hold
/// secrets) and the revision it must still be at.
fn update_call(
    function: &str,
    targets: &[(String, String)],
    revision: Option<&str>,
) -> PlannedCall {
    let variables: serde_json::Map<String, serde_json::Value> =
        targets.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let mut params = json!({
        "FunctionName": function,
        "Environment": { "Variables": variables },
    });
    if let Some(revision) = revision {
        params["RevisionId"] = json!(revision);
    }
    PlannedCall {
        operation: UPDATE.into(),
        params,
    }
}

/// `fn: FAILURE_RATE 1 → 0; previous: {"FAILURE_RATE":"1"}`: readable, and
/// [`PreviousEnvironment::from_note`] reads the previous values back.
fn note(
    function: &str,
    previous: &BTreeMap<String, Option<String>>,
    targets: &[(String, String)],
) -> String {
    let changes = targets
        .iter()
        .filter_map(|(k, v)| {
            let old = previous.get(k)?;
            Some(format!("{k} {} → {v}", old.as_deref().unwrap_or("(unset)")))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let json = serde_json::to_string(previous).unwrap_or_else(|_| "{}".into());
    format!("{function}: {changes}{PREVIOUS}{json}")
}

#[async_trait]
impl Executor for LambdaExecutor {
    /// The re-check sees the variables already set and supersedes the step.
    fn resumable(&self, kind: ActionKind) -> bool {
        kind == ActionKind::UpdateFunctionConfig
    }

    fn handles(&self, kind: ActionKind) -> bool {
        kind == ActionKind::UpdateFunctionConfig
    }

    /// Read the configuration, then update the variables with the revision
    /// read (`RevisionId` is only known once read, so the plan omits it).
    fn plan(&self, req: &StepRequest<'_>) -> Vec<PlannedCall> {
        match req.action {
            Action::UpdateFunctionConfig {
                function_name,
                environment,
            } => vec![
                get_call(function_name),
                update_call(function_name, environment, None),
            ],
            _ => Vec::new(),
        }
    }

    async fn execute(&self, req: &StepRequest<'_>) -> Execution {
        match req.action {
            Action::UpdateFunctionConfig {
                function_name,
                environment,
            } => self.update(function_name, environment).await,
            other => Execution::failed(
                Vec::new(),
                crate::aws::AwsErrorClass::Permanent,
                format!("the Lambda executor does not carry out {}", other.kind()),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::Incident;

    async fn executor() -> LambdaExecutor {
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        LambdaExecutor::new(&config)
    }

    #[tokio::test]
    async fn the_plan_reads_then_updates_the_variables() {
        let incident = Incident::from_json(
            br#"{"kind":"function-errors","resource":{"kind":"lambda-function","id":"orders"},"detected-at":"2024-05-01T10:00:00Z"}"#,
        )
        .expect("incident");
        let action = Action::UpdateFunctionConfig {
            function_name: "orders".into(),
            environment: vec![("FAILURE_RATE".into(), "0".into())],
        };
        let req = StepRequest {
            incident: &incident,
            step: 0,
            action: &action,
        };
        let e = executor().await;
        assert!(e.handles(ActionKind::UpdateFunctionConfig));
        assert!(!e.handles(ActionKind::Notify));
        assert_eq!(
            e.plan(&req),
            vec![
                PlannedCall {
                    operation: "lambda:GetFunctionConfiguration".into(),
                    params: json!({ "FunctionName": "orders" }),
                },
                PlannedCall {
                    operation: "lambda:UpdateFunctionConfiguration".into(),
                    params: json!({
                        "FunctionName": "orders",
                        "Environment": { "Variables": { "FAILURE_RATE": "0" } },
                    }),
                },
            ]
        );
    }

    #[test]
    fn the_note_carries_the_previous_values() {
        let previous = BTreeMap::from([
            ("FAILURE_RATE".to_owned(), Some("1".to_owned())),
            ("NEW".to_owned(), None),
        ]);
        let targets = vec![
            ("FAILURE_RATE".to_owned(), "0".to_owned()),
            ("NEW".to_owned(), "x".to_owned()),
        ];
        let n = note("orders", &previous, &targets);
        assert!(
            n.starts_with("orders: FAILURE_RATE 1 → 0, NEW (unset) → x"),
            "{n}"
        );
        assert_eq!(
            PreviousEnvironment::from_note(&n),
            Some(PreviousEnvironment(previous))
        );
        assert_eq!(PreviousEnvironment::from_note("revision 7 → 6"), None);
    }
}
