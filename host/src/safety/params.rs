//! Parameters: what a step may set. A rollback only to an earlier revision of
//! the service's own task-definition family; a desired count within bounds
//! (default 1 to twice the current count); Lambda environment keys only from
//! an allow-list (default `FAILURE_RATE`, per function configurable); SSM
//! documents and commands only by a name listed in config, and never a
//! document that runs free-form commands. A fact the rule needs (the service's
//! task definition or desired count) that is unknown fails safe.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::decision::{Action, NamedKind};

use super::scope::ident;
use super::{Ctx, Rule, Verdict};

/// SSM documents that run whatever command they are given: never allowed,
/// whatever the config lists.
const FREE_FORM_DOCUMENTS: &[&str] = &[
    "AWS-RunShellScript",
    "AWS-RunPowerShellScript",
    "AWS-RunRemoteScript",
    "AWS-RunDocument",
    "AWS-RunAnsiblePlaybook",
    "AWS-RunSaltState",
    "AWS-ApplyAnsiblePlaybooks",
];

/// What steps may set, with the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ParamsConfig {
    /// Lowest desired count `scale-service` may set. Default 1 (never to zero).
    pub scale_min: u32,
    /// Highest desired count `scale-service` may set, as a multiple of the
    /// current one. Default 2.
    pub scale_max_factor: u32,
    /// An absolute cap on the desired count, on top of the factor. Default none.
    pub scale_max: Option<u32>,
    /// Environment keys `update-function-config` may set. Default `["FAILURE_RATE"]`.
    pub env_keys: Vec<String>,
    /// Per function (name): the keys it may have set, instead of `env-keys`.
    pub function_env_keys: BTreeMap<String, Vec<String>>,
    /// SSM documents `run-diagnostics` may run. Default none.
    pub ssm_documents: Vec<String>,
    /// Named commands `run-command` may run (the executor maps a name to its
    /// command). Default none.
    pub commands: Vec<String>,
}

impl Default for ParamsConfig {
    fn default() -> Self {
        ParamsConfig {
            scale_min: 1,
            scale_max_factor: 2,
            scale_max: None,
            env_keys: vec!["FAILURE_RATE".to_owned()],
            function_env_keys: BTreeMap::new(),
            ssm_documents: Vec::new(),
            commands: Vec::new(),
        }
    }
}

pub(crate) fn check(ctx: &Ctx<'_>) -> Option<Verdict> {
    let deny = |reason: String| Some(Verdict::deny(Rule::Parameters, reason));
    let p = &ctx.config.params;
    match &ctx.step.action {
        Action::RollbackDeployment {
            task_definition: Some(td),
            ..
        } => rollback(ctx, td).and_then(deny),
        Action::ScaleService { desired_count, .. } => scale(ctx, *desired_count).and_then(deny),
        Action::UpdateFunctionConfig {
            function_name,
            environment,
        } => env(p, function_name, environment).and_then(deny),
        Action::RunDiagnostics { document, .. } => {
            if FREE_FORM_DOCUMENTS.contains(&document.as_str()) {
                deny(format!("{document} runs free-form commands; never allowed"))
            } else if !p.ssm_documents.contains(document) {
                deny(format!(
                    "SSM document {document:?} is not in params.ssm-documents"
                ))
            } else {
                None
            }
        }
        Action::RunCommand { command, .. } => {
            let named = !command.is_empty()
                && command
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !named || !p.commands.contains(command) {
                deny(format!(
                    "command {command:?} is not a named command in params.commands"
                ))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// `family` and `revision` of a task definition (`None` without a revision).
fn family_revision(td: &str) -> Option<(&str, u64)> {
    let name = ident(NamedKind::TaskDefinition, td, None)?.name;
    let (family, rev) = name.rsplit_once(':')?;
    Some((family, rev.parse().ok()?))
}

/// Why rolling back to `td` is not allowed, if it is not.
fn rollback(ctx: &Ctx<'_>, td: &str) -> Option<String> {
    let Some(current) = ctx.target_facts().service.as_ref() else {
        return Some(format!(
            "the service's current task definition could not be read{}; failing safe",
            ctx.target_facts().why_unknown()
        ));
    };
    let Some((family, rev)) = family_revision(td) else {
        return Some(format!("task definition {td:?} names no family:revision"));
    };
    let Some((own, now)) = family_revision(&current.task_definition) else {
        return Some(format!(
            "the service's task definition {:?} names no family:revision; failing safe",
            current.task_definition
        ));
    };
    // A task definition ARN must be in the service's own account and region.
    let foreign = match (
        ident(NamedKind::TaskDefinition, td, None),
        ident(NamedKind::TaskDefinition, &current.task_definition, None),
    ) {
        (Some(p), Some(c)) => {
            let differ = |a: Option<&str>, b: Option<&str>| a.zip(b).is_some_and(|(a, b)| a != b);
            differ(p.region, c.region) || differ(p.account, c.account)
        }
        _ => true,
    };
    if family != own || foreign {
        return Some(format!(
            "{td} is not in the service's own task-definition family {own} (runs {})",
            current.task_definition
        ));
    }
    (rev >= now)
        .then(|| format!("{family}:{rev} is not an earlier revision than the running {own}:{now}"))
}

/// Why `desired` is out of bounds, if it is.
fn scale(ctx: &Ctx<'_>, desired: u32) -> Option<String> {
    let p = &ctx.config.params;
    let Some(current) = ctx.target_facts().service.as_ref().map(|s| s.desired_count) else {
        return Some(format!(
            "the service's desired count could not be read{}; failing safe",
            ctx.target_facts().why_unknown()
        ));
    };
    let mut max = current.saturating_mul(p.scale_max_factor);
    if let Some(cap) = p.scale_max {
        max = max.min(cap);
    }
    (desired < p.scale_min || desired > max).then(|| {
        format!(
            "desired count {desired} is outside {}..={max} (current {current}, params.scale-min, scale-max-factor {})",
            p.scale_min, p.scale_max_factor
        )
    })
}

/// Why setting `environment` on `function` is not allowed, if it is not.
fn env(p: &ParamsConfig, function: &str, environment: &[(String, String)]) -> Option<String> {
    let name = ident(NamedKind::LambdaFunction, function, None).map_or(function, |i| i.name);
    let allowed = p.function_env_keys.get(name).unwrap_or(&p.env_keys);
    if environment.is_empty() {
        return Some("the step sets no environment variable".to_owned());
    }
    let denied: Vec<&str> = environment
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !allowed.iter().any(|a| a == k))
        .collect();
    (!denied.is_empty()).then(|| {
        format!("environment keys {denied:?} are not allowed for {name} (allowed: {allowed:?})")
    })
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;
    use crate::decision::{Action, Step};

    fn step(action: Action) -> Step {
        Step {
            action,
            reason: "t".into(),
        }
    }

    fn denied_by_params(v: &Verdict) -> bool {
        matches!(
            v,
            Verdict::Denied {
                rule: Rule::Parameters,
                ..
            }
        )
    }

    #[test]
    fn rollback_only_to_an_earlier_revision_of_the_own_family() {
        let facts = service_facts("arn:aws:ecs:eu-west-1:111:task-definition/api:7", 4);
        let rollback = |td: Option<&str>| {
            let s = step(Action::RollbackDeployment {
                cluster: "prod".into(),
                service: "api".into(),
                task_definition: td.map(str::to_owned),
            });
            judge_service(s, &facts, GovernorConfig::default())
        };
        assert!(rollback(None).is_approved(), "the previous one");
        assert!(rollback(Some("api:6")).is_approved());
        assert!(rollback(Some("arn:aws:ecs:eu-west-1:111:task-definition/api:3")).is_approved());
        for bad in [
            "api:7",
            "api:8",
            "api",
            "miner:1",
            "arn:aws:ecs:eu-west-1:222:task-definition/api:3",
            "arn:aws:ecs:us-east-1:111:task-definition/api:3",
        ] {
            let v = rollback(Some(bad));
            assert!(denied_by_params(&v), "{bad}: {v:?}");
        }
        let v = judge_service(
            step(Action::RollbackDeployment {
                cluster: "prod".into(),
                service: "api".into(),
                task_definition: Some("api:6".into()),
            }),
            &Facts::default(),
            GovernorConfig::default(),
        );
        assert!(
            matches!(&v, Verdict::Denied { rule: Rule::Parameters, reason, .. } if reason.contains("failing safe")),
            "{v:?}"
        );
    }

    #[test]
    fn scale_within_bounds() {
        let facts = service_facts("api:7", 3);
        let scale = |n: u32, cfg: GovernorConfig| {
            let s = step(Action::ScaleService {
                cluster: "prod".into(),
                service: "api".into(),
                desired_count: n,
            });
            judge_service(s, &facts, cfg)
        };
        assert!(scale(1, GovernorConfig::default()).is_approved());
        assert!(scale(6, GovernorConfig::default()).is_approved());
        assert!(denied_by_params(&scale(0, GovernorConfig::default())));
        assert!(denied_by_params(&scale(7, GovernorConfig::default())));
        let capped = GovernorConfig {
            params: ParamsConfig {
                scale_max: Some(4),
                scale_min: 2,
                ..ParamsConfig::default()
            },
            ..GovernorConfig::default()
        };
        assert!(denied_by_params(&scale(5, capped.clone())));
        assert!(denied_by_params(&scale(1, capped.clone())));
        assert!(scale(4, capped).is_approved());
    }

    #[test]
    fn environment_keys_from_the_allow_list_only() {
        let update = |keys: &[&str], cfg: GovernorConfig| {
            let s = step(Action::UpdateFunctionConfig {
                function_name: "fragile-fn".into(),
                environment: keys
                    .iter()
                    .map(|k| ((*k).to_owned(), "0".to_owned()))
                    .collect(),
            });
            judge_function(s, cfg)
        };
        assert!(update(&["FAILURE_RATE"], GovernorConfig::default()).is_approved());
        assert!(denied_by_params(&update(
            &["FAILURE_RATE", "AWS_LAMBDA_EXEC_WRAPPER"],
            GovernorConfig::default()
        )));
        assert!(denied_by_params(&update(&[], GovernorConfig::default())));
        let per_function = GovernorConfig {
            params: ParamsConfig {
                function_env_keys: [("fragile-fn".to_owned(), vec!["CHAOS".to_owned()])].into(),
                ..ParamsConfig::default()
            },
            ..GovernorConfig::default()
        };
        assert!(update(&["CHAOS"], per_function.clone()).is_approved());
        assert!(denied_by_params(&update(&["FAILURE_RATE"], per_function)));
    }

    #[test]
    fn ssm_documents_and_commands_by_configured_name_only() {
        let cfg = GovernorConfig {
            params: ParamsConfig {
                ssm_documents: vec![
                    "AWSSupport-CollectEC2Logs".into(),
                    "AWS-RunShellScript".into(),
                ],
                commands: vec!["restart-nginx".into()],
                ..ParamsConfig::default()
            },
            ..GovernorConfig::default()
        };
        let diag = |d: &str, cfg: GovernorConfig| {
            let s = step(Action::RunDiagnostics {
                instance_id: "i-1".into(),
                document: d.into(),
            });
            judge_one(s, &tagged(), &History::default(), cfg)
        };
        let run = |c: &str, cfg: GovernorConfig| {
            let s = step(Action::RunCommand {
                instance_id: "i-1".into(),
                command: c.into(),
            });
            judge_one(s, &tagged(), &History::default(), cfg)
        };
        assert!(diag("AWSSupport-CollectEC2Logs", cfg.clone()).is_approved());
        assert!(denied_by_params(&diag(
            "AWSSupport-CollectEC2Logs",
            GovernorConfig::default()
        )));
        assert!(
            denied_by_params(&diag("AWS-RunShellScript", cfg.clone())),
            "free-form, even when listed"
        );
        assert!(run("restart-nginx", cfg.clone()).is_approved());
        assert!(denied_by_params(&run("rm -rf /", cfg.clone())));
        assert!(denied_by_params(&run(
            "restart-nginx",
            GovernorConfig::default()
        )));
    }
}
