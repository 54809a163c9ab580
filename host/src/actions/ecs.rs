//! The ECS executor: `restart-task` (StopTask a running task, RunTask a
//! stopped standalone one, nothing for a stopped task of a service: its
//! scheduler replaces it), `force-new-deployment` and `scale-service`
//! (UpdateService), `rollback-deployment` (UpdateService to the named
//! revision, else to the newest earlier ACTIVE revision of the service's own
//! family).
//!
//! Exactly once: a re-run task is started by the step's token
//! ([`StepRequest::token`] as `startedBy`) and looked up by it before
//! running, so a redelivered step does not start a second copy. Every call
//! keeps the SDK's retry and timeout config from [`crate::aws`].

use async_trait::async_trait;
use aws_sdk_ecs::operation::RequestId;
use aws_sdk_ecs::types::{
    AwsVpcConfiguration, CapacityProviderStrategyItem, LaunchType, NetworkConfiguration, Task,
    TaskDefinitionStatus,
};
use serde_json::json;

use crate::aws::AwsErrorClass;
use crate::decision::{Action, ActionKind};

use super::progress::{Progress, send};
use super::{ExecOutcome, Execution, Executor, PlannedCall, StepRequest};

/// The API operations [`EcsExecutor`] calls, as IAM actions.
pub const ECS_ACTIONS: &[&str] = &[
    "ecs:DescribeServices",
    "ecs:DescribeTasks",
    "ecs:ListTaskDefinitions",
    "ecs:ListTasks",
    "ecs:RunTask",
    "ecs:StopTask",
    "ecs:UpdateService",
];

/// Carries out the ECS actions with one ECS client.
#[derive(Debug, Clone)]
pub struct EcsExecutor {
    ecs: aws_sdk_ecs::Client,
}

impl EcsExecutor {
    /// An executor with the client `shared` configures (region, endpoint,
    /// credentials, retries and timeouts).
    pub fn new(shared: &aws_config::SdkConfig) -> Self {
        EcsExecutor {
            ecs: aws_sdk_ecs::Client::new(shared),
        }
    }
}

fn call(operation: &str, params: serde_json::Value) -> PlannedCall {
    PlannedCall {
        operation: operation.to_owned(),
        params,
    }
}

/// `healer <incident id>`: why healer stopped a task, as ECS shows it.
fn stop_reason(req: &StepRequest<'_>) -> String {
    format!("healer {}", req.incident.id.as_str())
}

/// `family` and revision of a task definition ARN or `family:revision`.
fn family_revision(task_definition: &str) -> Option<(&str, u32)> {
    let name = task_definition
        .rsplit_once("task-definition/")
        .map_or(task_definition, |(_, n)| n);
    let (family, revision) = name.rsplit_once(':')?;
    Some((family, revision.parse().ok()?))
}

/// Why a rollback of the failed deployment `failed` is superseded, if the
/// service moved on: the deployment is listed but no longer `PRIMARY`.
fn superseded_deployment(
    svc: &aws_sdk_ecs::types::Service,
    failed: Option<&String>,
) -> Option<String> {
    let failed = failed.filter(|f| !f.is_empty())?;
    let deployment = svc
        .deployments()
        .iter()
        .find(|d| d.id() == Some(failed.as_str()))?;
    let status = deployment.status().unwrap_or_default();
    (status != "PRIMARY").then(|| {
        format!(
            "deployment {failed} is {status}, no longer the primary: the service already runs {}",
            svc.task_definition().unwrap_or("another revision")
        )
    })
}

/// The newest ACTIVE revision earlier than `failing`, of `failing`'s family.
fn previous_revision<'a>(failing: &str, active: &'a [String]) -> Option<&'a str> {
    let (family, current) = family_revision(failing)?;
    active
        .iter()
        .filter_map(|arn| family_revision(arn).map(|(f, r)| (f, r, arn)))
        .filter(|(f, r, _)| *f == family && *r < current)
        .max_by_key(|(_, r, _)| *r)
        .map(|(_, _, arn)| arn.as_str())
}

/// What a stopped standalone task ran with, to run it again.
struct Rerun {
    task_definition: String,
    launch_type: Option<LaunchType>,
    capacity_provider: Option<String>,
    subnets: Vec<String>,
    group: Option<String>,
    platform_version: Option<String>,
}

impl Rerun {
    fn of(task: &Task) -> Option<Self> {
        let subnets = task
            .attachments()
            .iter()
            .filter(|a| a.r#type() == Some("ElasticNetworkInterface"))
            .flat_map(|a| a.details())
            .filter(|d| d.name() == Some("subnetId"))
            .filter_map(|d| d.value().map(str::to_owned))
            .collect();
        Some(Rerun {
            task_definition: task.task_definition_arn()?.to_owned(),
            launch_type: task.launch_type().cloned(),
            capacity_provider: task.capacity_provider_name().map(str::to_owned),
            subnets,
            group: task.group().map(str::to_owned),
            platform_version: task.platform_version().map(str::to_owned),
        })
    }

    fn planned(&self, cluster: &str, token: &str) -> PlannedCall {
        call(
            "ecs:RunTask",
            json!({
                "cluster": cluster,
                "taskDefinition": self.task_definition,
                "count": 1,
                "startedBy": token,
                "clientToken": token,
                "group": self.group,
                "launchType": self.launch_type.as_ref().map(|l| l.as_str()),
                "capacityProviderStrategy": self.capacity_provider.as_ref()
                    .map(|c| json!([{ "capacityProvider": c }])),
                "networkConfiguration": (!self.subnets.is_empty()).then(|| json!({
                    "awsvpcConfiguration": { "subnets": self.subnets }
                })),
            }),
        )
    }
}

impl EcsExecutor {
    async fn update_service(
        &self,
        cluster: &str,
        service: &str,
        action: &Action,
    ) -> Result<Execution, Box<Execution>> {
        let mut p = Progress::new();
        let mut update = self.ecs.update_service().cluster(cluster).service(service);
        let (planned, note) = match action {
            Action::ScaleService { desired_count, .. } => {
                let count = i32::try_from(*desired_count).unwrap_or(i32::MAX);
                update = update.desired_count(count);
                (
                    call(
                        "ecs:UpdateService",
                        json!({ "cluster": cluster, "service": service, "desiredCount": desired_count }),
                    ),
                    format!("{service} desired count → {desired_count}"),
                )
            }
            _ => {
                update = update.force_new_deployment(true);
                (
                    call(
                        "ecs:UpdateService",
                        json!({ "cluster": cluster, "service": service, "forceNewDeployment": true }),
                    ),
                    format!("{service}: new deployment"),
                )
            }
        };
        send!(p, planned, update, "UpdateService");
        Ok(p.done(note))
    }

    async fn rollback(
        &self,
        req: &StepRequest<'_>,
        cluster: &str,
        service: &str,
        named: Option<&str>,
    ) -> Result<Execution, Box<Execution>> {
        let mut p = Progress::new();
        let described = send!(
            p,
            call(
                "ecs:DescribeServices",
                json!({ "cluster": cluster, "services": [service] })
            ),
            self.ecs
                .describe_services()
                .cluster(cluster)
                .services(service),
            "DescribeServices"
        );
        let Some(svc) = described.services().first() else {
            return Err(p.failed(
                AwsErrorClass::NotFound,
                format!("service {service} not found in {cluster}"),
            ));
        };
        // The re-check: the deployment that failed (the incident names it) is
        // no longer the service's primary: ECS's circuit breaker, a human or
        // an earlier attempt already moved the service on. Rolling back again
        // would go one revision too far.
        if let Some(seen) = superseded_deployment(svc, req.incident.detail.get("deployment-id")) {
            return Ok(p.end(ExecOutcome::Superseded { seen: seen.clone() }, seen));
        }
        let Some(failing) = svc.task_definition().map(str::to_owned) else {
            return Err(p.failed(
                AwsErrorClass::NotFound,
                format!("service {service} runs no task definition"),
            ));
        };
        let target = match named {
            Some(named) => named.to_owned(),
            None => {
                let Some((family, _)) = family_revision(&failing) else {
                    return Err(p.failed(
                        AwsErrorClass::Permanent,
                        format!("{service} runs {failing}, which names no revision"),
                    ));
                };
                let family = family.to_owned();
                let mut active = Vec::new();
                let mut next: Option<String> = None;
                loop {
                    let page = send!(
                        p,
                        call(
                            "ecs:ListTaskDefinitions",
                            json!({ "familyPrefix": family, "status": "ACTIVE", "nextToken": next })
                        ),
                        self.ecs
                            .list_task_definitions()
                            .family_prefix(&family)
                            .status(TaskDefinitionStatus::Active)
                            .set_next_token(next.clone()),
                        "ListTaskDefinitions"
                    );
                    active.extend(page.task_definition_arns().iter().cloned());
                    next = page.next_token().map(str::to_owned);
                    if next.is_none() {
                        break;
                    }
                }
                match previous_revision(&failing, &active) {
                    Some(previous) => previous.to_owned(),
                    None => {
                        return Err(p.failed(
                            AwsErrorClass::Permanent,
                            format!("no ACTIVE revision of {family} earlier than {failing}"),
                        ));
                    }
                }
            }
        };
        send!(
            p,
            call(
                "ecs:UpdateService",
                json!({ "cluster": cluster, "service": service, "taskDefinition": target })
            ),
            self.ecs
                .update_service()
                .cluster(cluster)
                .service(service)
                .task_definition(&target),
            "UpdateService"
        );
        let short =
            |td: &str| family_revision(td).map_or(td.to_owned(), |(f, r)| format!("{f}:{r}"));
        let note = format!("{} → {}", short(&failing), short(&target));
        Ok(p.done(note))
    }

    async fn restart(
        &self,
        req: &StepRequest<'_>,
        cluster: &str,
        task_arn: &str,
    ) -> Result<Execution, Box<Execution>> {
        let mut p = Progress::new();
        let described = send!(
            p,
            call(
                "ecs:DescribeTasks",
                json!({ "cluster": cluster, "tasks": [task_arn] })
            ),
            self.ecs.describe_tasks().cluster(cluster).tasks(task_arn),
            "DescribeTasks"
        );
        let Some(task) = described.tasks().first() else {
            return Err(p.failed(
                AwsErrorClass::NotFound,
                format!("task {task_arn} not found in {cluster}"),
            ));
        };
        let status = task.last_status().unwrap_or_default().to_owned();
        let group = task.group().unwrap_or_default().to_owned();
        let standalone = group.is_empty() || group.starts_with("family:");
        if status != "STOPPED" {
            let reason = stop_reason(req);
            send!(
                p,
                call(
                    "ecs:StopTask",
                    json!({ "cluster": cluster, "task": task_arn, "reason": reason })
                ),
                self.ecs
                    .stop_task()
                    .cluster(cluster)
                    .task(task_arn)
                    .reason(&reason),
                "StopTask"
            );
            return Ok(p.done(format!("stopped {task_arn} ({status})")));
        }
        if !standalone {
            let seen = format!(
                "task {task_arn} of {group} is already STOPPED; the ECS scheduler replaces it"
            );
            return Ok(p.end(ExecOutcome::Superseded { seen: seen.clone() }, seen));
        }
        let Some(rerun) = Rerun::of(task) else {
            return Err(p.failed(
                AwsErrorClass::Permanent,
                format!("task {task_arn} names no task definition"),
            ));
        };
        let token = req.token();
        // Has an earlier attempt of this step run the task already?
        let earlier = send!(
            p,
            call(
                "ecs:ListTasks",
                json!({ "cluster": cluster, "startedBy": token })
            ),
            self.ecs.list_tasks().cluster(cluster).started_by(&token),
            "ListTasks"
        );
        if let Some(earlier) = earlier.task_arns().first() {
            p.created.push(earlier.clone());
            return Ok(p.done(format!(
                "{task_arn} → {earlier} (run by an earlier attempt)"
            )));
        }
        let mut run = self
            .ecs
            .run_task()
            .cluster(cluster)
            .task_definition(&rerun.task_definition)
            .count(1)
            .started_by(&token)
            // ECS deduplicates a retried RunTask by it (the lookup by
            // `startedBy` covers a resumed step; this covers a race).
            .client_token(&token)
            .set_group(rerun.group.clone())
            .set_platform_version(rerun.platform_version.clone());
        match (&rerun.capacity_provider, &rerun.launch_type) {
            (Some(provider), _) => {
                if let Ok(item) = CapacityProviderStrategyItem::builder()
                    .capacity_provider(provider)
                    .build()
                {
                    run = run.capacity_provider_strategy(item);
                }
            }
            (None, Some(launch)) => run = run.launch_type(launch.clone()),
            (None, None) => {}
        }
        if !rerun.subnets.is_empty() {
            // DescribeTasks names the subnets but not the security groups (the
            // ENI that had them is gone with the stopped task): ECS applies
            // the VPC's default group.
            let vpc = AwsVpcConfiguration::builder()
                .set_subnets(Some(rerun.subnets.clone()))
                .build();
            match vpc {
                Ok(vpc) => {
                    run = run.network_configuration(
                        NetworkConfiguration::builder()
                            .awsvpc_configuration(vpc)
                            .build(),
                    );
                }
                Err(e) => {
                    return Err(p.failed(AwsErrorClass::Permanent, e.to_string()));
                }
            }
        }
        let out = send!(p, rerun.planned(cluster, &token), run, "RunTask");
        if let Some(failure) = out.failures().first() {
            let reason = format!(
                "RunTask failed: {} {}",
                failure.reason().unwrap_or_default(),
                failure.detail().unwrap_or_default()
            );
            return Err(p.failed(AwsErrorClass::Permanent, reason));
        }
        let created: Vec<String> = out
            .tasks()
            .iter()
            .filter_map(|t| t.task_arn().map(str::to_owned))
            .collect();
        let note = format!("{task_arn} → {}", created.join(", "));
        p.created = created;
        Ok(p.done(note))
    }
}

#[async_trait]
impl Executor for EcsExecutor {
    /// A restart finds the task an earlier attempt started (`startedBy`) or
    /// sees the task already stopped; a desired count is a state. A forced
    /// new deployment would deploy twice, and a rollback can only tell it was
    /// done when the incident names its failed deployment (the emulators
    /// list none), so neither is repeated.
    fn resumable(&self, kind: ActionKind) -> bool {
        matches!(kind, ActionKind::RestartTask | ActionKind::ScaleService)
    }

    fn handles(&self, kind: ActionKind) -> bool {
        matches!(
            kind,
            ActionKind::RestartTask
                | ActionKind::ForceNewDeployment
                | ActionKind::ScaleService
                | ActionKind::RollbackDeployment
        )
    }

    fn plan(&self, req: &StepRequest<'_>) -> Vec<PlannedCall> {
        match req.action {
            Action::RestartTask { cluster, task } => vec![
                call(
                    "ecs:DescribeTasks",
                    json!({ "cluster": cluster, "tasks": [task] }),
                ),
                // Running: stop it. Stopped and standalone: run it again, once.
                call(
                    "ecs:StopTask",
                    json!({ "cluster": cluster, "task": task, "reason": stop_reason(req) }),
                ),
                call(
                    "ecs:ListTasks",
                    json!({ "cluster": cluster, "startedBy": req.token() }),
                ),
                call(
                    "ecs:RunTask",
                    json!({ "cluster": cluster, "taskDefinition": "<the stopped task's>", "count": 1, "startedBy": req.token() }),
                ),
            ],
            Action::ForceNewDeployment { cluster, service } => vec![call(
                "ecs:UpdateService",
                json!({ "cluster": cluster, "service": service, "forceNewDeployment": true }),
            )],
            Action::ScaleService {
                cluster,
                service,
                desired_count,
            } => vec![call(
                "ecs:UpdateService",
                json!({ "cluster": cluster, "service": service, "desiredCount": desired_count }),
            )],
            Action::RollbackDeployment {
                cluster,
                service,
                task_definition,
            } => {
                let mut calls = vec![call(
                    "ecs:DescribeServices",
                    json!({ "cluster": cluster, "services": [service] }),
                )];
                let target = match task_definition {
                    Some(named) => named.clone(),
                    None => {
                        calls.push(call(
                            "ecs:ListTaskDefinitions",
                            json!({ "familyPrefix": "<the service's family>", "status": "ACTIVE", "nextToken": null }),
                        ));
                        "<the newest earlier ACTIVE revision>".to_owned()
                    }
                };
                calls.push(call(
                    "ecs:UpdateService",
                    json!({ "cluster": cluster, "service": service, "taskDefinition": target }),
                ));
                calls
            }
            _ => Vec::new(),
        }
    }

    async fn execute(&self, req: &StepRequest<'_>) -> Execution {
        let done = match req.action {
            Action::RestartTask { cluster, task } => self.restart(req, cluster, task).await,
            Action::ForceNewDeployment { cluster, service }
            | Action::ScaleService {
                cluster, service, ..
            } => self.update_service(cluster, service, req.action).await,
            Action::RollbackDeployment {
                cluster,
                service,
                task_definition,
            } => {
                self.rollback(req, cluster, service, task_definition.as_deref())
                    .await
            }
            other => {
                return Execution::failed(
                    Vec::new(),
                    AwsErrorClass::Permanent,
                    format!("the ECS executor does not carry out {}", other.kind()),
                );
            }
        };
        done.unwrap_or_else(|e| *e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::Incident;

    #[test]
    fn a_rollback_of_a_deployment_no_longer_primary_is_superseded() {
        use aws_sdk_ecs::types::{Deployment, Service};
        let svc = |status: &str| {
            Service::builder()
                .task_definition("arn:aws:ecs:us-east-1:1:task-definition/api:2")
                .deployments(
                    Deployment::builder()
                        .id("ecs-svc/new")
                        .status("PRIMARY")
                        .build(),
                )
                .deployments(Deployment::builder().id("ecs-svc/1").status(status).build())
                .build()
        };
        let failed = "ecs-svc/1".to_owned();
        let seen = superseded_deployment(&svc("ACTIVE"), Some(&failed)).expect("superseded");
        assert!(seen.contains("api:2"), "{seen}");
        assert_eq!(superseded_deployment(&svc("PRIMARY"), Some(&failed)), None);
        // Not listed (an emulator), or not named: decided by the revision.
        let other = "ecs-svc/9".to_owned();
        assert_eq!(superseded_deployment(&svc("ACTIVE"), Some(&other)), None);
        assert_eq!(superseded_deployment(&svc("ACTIVE"), None), None);
    }

    fn incident() -> Incident {
        Incident::from_json(
            br#"{"kind":"instance-impaired","resource":{"kind":"ec2-instance","id":"i-1"},"detected-at":"2024-05-01T10:00:00Z"}"#,
        )
        .expect("incident")
    }

    fn executor() -> EcsExecutor {
        let shared = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        EcsExecutor::new(&shared)
    }

    fn plan(action: &Action) -> Vec<PlannedCall> {
        let incident = incident();
        executor().plan(&StepRequest {
            incident: &incident,
            step: 0,
            action,
        })
    }

    #[test]
    fn service_updates_plan_one_update_service() {
        let force = Action::ForceNewDeployment {
            cluster: "prod".into(),
            service: "api".into(),
        };
        assert_eq!(
            plan(&force),
            vec![call(
                "ecs:UpdateService",
                json!({ "cluster": "prod", "service": "api", "forceNewDeployment": true })
            )]
        );
        let scale = Action::ScaleService {
            cluster: "prod".into(),
            service: "api".into(),
            desired_count: 4,
        };
        assert_eq!(
            plan(&scale),
            vec![call(
                "ecs:UpdateService",
                json!({ "cluster": "prod", "service": "api", "desiredCount": 4 })
            )]
        );
        let named = Action::RollbackDeployment {
            cluster: "prod".into(),
            service: "api".into(),
            task_definition: Some("api:3".into()),
        };
        assert_eq!(
            plan(&named),
            vec![
                call(
                    "ecs:DescribeServices",
                    json!({ "cluster": "prod", "services": ["api"] })
                ),
                call(
                    "ecs:UpdateService",
                    json!({ "cluster": "prod", "service": "api", "taskDefinition": "api:3" })
                ),
            ]
        );
        let previous = Action::RollbackDeployment {
            cluster: "prod".into(),
            service: "api".into(),
            task_definition: None,
        };
        let ops: Vec<String> = plan(&previous).into_iter().map(|c| c.operation).collect();
        assert_eq!(
            ops,
            [
                "ecs:DescribeServices",
                "ecs:ListTaskDefinitions",
                "ecs:UpdateService"
            ]
        );
    }

    #[test]
    fn restart_task_plans_describe_then_stop_or_a_single_run() {
        let incident = incident();
        let action = Action::RestartTask {
            cluster: "prod".into(),
            task: "arn:aws:ecs:us-east-1:1:task/prod/abc".into(),
        };
        let req = StepRequest {
            incident: &incident,
            step: 1,
            action: &action,
        };
        let calls = executor().plan(&req);
        let ops: Vec<&str> = calls.iter().map(|c| c.operation.as_str()).collect();
        assert_eq!(
            ops,
            [
                "ecs:DescribeTasks",
                "ecs:StopTask",
                "ecs:ListTasks",
                "ecs:RunTask"
            ]
        );
        assert_eq!(
            calls[1].params["reason"],
            format!("healer {}", incident.id.as_str())
        );
        assert_eq!(calls[3].params["startedBy"], req.token());
        for op in ops {
            assert!(ECS_ACTIONS.contains(&op), "{op}");
        }
    }

    #[test]
    fn the_previous_revision_is_the_newest_earlier_one_of_the_same_family() {
        let arn = |r: &str| format!("arn:aws:ecs:us-east-1:1:task-definition/{r}");
        // Unsorted, as moto answers; another family with a longer name.
        let active = [
            arn("api:2"),
            arn("api:7"),
            arn("api:5"),
            arn("api-canary:6"),
            arn("api:9"),
        ];
        assert_eq!(
            previous_revision(&arn("api:7"), &active),
            Some(arn("api:5").as_str())
        );
        assert_eq!(
            previous_revision("api:3", &active),
            Some(arn("api:2").as_str())
        );
        assert_eq!(previous_revision(&arn("api:2"), &active), None);
        assert_eq!(previous_revision("api", &active), None);
        assert_eq!(
            family_revision(&arn("api-canary:6")),
            Some(("api-canary", 6))
        );
    }
}
