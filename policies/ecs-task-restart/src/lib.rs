//! Example policy `ecs-task-restart`.
//!
//! - task-crashed / task-health-check-failed in a service: the task is
//!   already STOPPED and the service scheduler is starting its replacement,
//!   so nothing is done but verify that the service is back at its desired
//!   running count; asked again by the host because it was not back by the
//!   deadline (a crash loop), a new deployment; a new deployment too when
//!   several tasks of the service failed recently
//!   (`redeploy-after`) or when `restart-mode = force-new-deployment`; with
//!   `notify-replaced = true` the team is told of the crash too;
//! - a standalone task (no service would replace it) → restart it (the host
//!   runs the stopped task's definition again, once) and notify;
//! - task-start-failed → notify and escalate (a restart cannot fix an image pull
//!   or a missing secret);
//! - deployment-failed → roll back to the previous task definition, unless ECS is
//!   already rolling back, and notify.
//!
//! An OOM kill adds a notification suggesting a larger memory reservation.

use healer_sdk::*;

/// The policy.
pub struct EcsTaskRestart;

const VERIFY_SECS: u32 = 600;

impl Policy for EcsTaskRestart {
    fn metadata() -> Metadata {
        Metadata::new("ecs-task-restart", "1.2.0")
            .handles([
                IncidentKind::TaskCrashed,
                IncidentKind::TaskHealthCheckFailed,
                IncidentKind::TaskStartFailed,
                IncidentKind::DeploymentFailed,
            ])
            .proposes([
                ActionKind::RestartTask,
                ActionKind::ForceNewDeployment,
                ActionKind::RollbackDeployment,
                ActionKind::Notify,
                ActionKind::Escalate,
            ])
            .config(
                "restart-mode",
                "`wait` (default: verify the scheduler's replacement), `stop-task` (stop the task: for signals about tasks still running, a load-balancer health check) or `force-new-deployment`",
                Some("wait"),
            )
            .config(
                "notify-replaced",
                "`true` to tell the team of a service's crashed task that ECS replaces on its own (default: only of what healer does)",
                Some("false"),
            )
            .config(
                "redeploy-after",
                "Recent failures of the same service from which a new deployment replaces single-task restarts",
                Some("3"),
            )
    }

    fn decide(incident: &Incident, ctx: &Context) -> Result<Decision, String> {
        match incident.kind {
            IncidentKind::TaskCrashed | IncidentKind::TaskHealthCheckFailed => {
                restart(incident, ctx)
            }
            IncidentKind::TaskStartFailed => Ok(start_failed(incident)),
            IncidentKind::DeploymentFailed => rollback(incident),
            other => Ok(Decision::nothing(format!(
                "ecs-task-restart does not handle {other:?}."
            ))),
        }
    }
}

fn restart(incident: &Incident, ctx: &Context) -> Result<Decision, String> {
    let task = incident.resource.id.as_str();
    let Some(cluster) = incident.ecs_cluster() else {
        return Err(format!("cannot tell the cluster of task {task}"));
    };
    let Some(service) = incident.ecs_service() else {
        return Ok(Decision::new("Standalone task failed; run it again.")
            .step(
                Action::restart_task(cluster, task),
                "No service scheduler would start a replacement.",
            )
            .step(
                Action::notify(
                    format!("ECS task failed outside a service in {cluster}"),
                    format!("{task}: {}", incident.reason),
                ),
                "Humans should know a standalone task failed.",
            )
            .verify(VerifyMethod::Poll, VERIFY_SECS));
    };
    let mode = ctx.config_or("restart-mode", "wait");
    let redeploy_after: u32 = ctx
        .config_or("redeploy-after", "3")
        .parse()
        .map_err(|_| "config `redeploy-after` must be a number".to_owned())?;
    let many = ctx.recent_incidents_group + 1 >= redeploy_after;
    // Asked again by the host: the scheduler did not bring the service back
    // by the verify deadline (a crash loop), so waiting longer will not help.
    let retried = ctx
        .config_or("healer.attempt", "1")
        .parse::<u32>()
        .is_ok_and(|n| n >= 2);
    log(
        Level::Info,
        &format!(
            "service {service}: {} recent failures",
            ctx.recent_incidents_group
        ),
    );
    let mut d = if mode == "force-new-deployment" || many || retried {
        let why = if retried {
            format!(
                "{service} did not return to its desired count after the task stopped; a fresh deployment replaces the crash-looping tasks."
            )
        } else if many {
            format!(
                "{} tasks of {service} failed recently; a fresh deployment replaces them all.",
                ctx.recent_incidents_group + 1
            )
        } else {
            "restart-mode is force-new-deployment.".to_owned()
        };
        Decision::new(format!("Force a new deployment of {service}."))
            .step(Action::force_new_deployment(cluster, service), why)
    } else if mode == "stop-task" {
        Decision::new(format!("Stop the failing task of {service}.")).step(
            Action::restart_task(cluster, task),
            "restart-mode is stop-task: the scheduler replaces a stopped task.",
        )
    } else {
        Decision::new(format!(
            "The stopped task of {service} is being replaced by ECS; verify the service is back at its desired count."
        ))
    };
    let oom = incident.attr("oom") == Some("true");
    if d.steps.is_empty() && !oom && ctx.config_or("notify-replaced", "false") == "true" {
        d = d.step(
            Action::notify(
                format!("A task of {service} crashed; ECS is replacing it"),
                format!("{task}: {}", incident.reason),
            ),
            "notify-replaced is true: the team hears of every crash.",
        );
    }
    if oom {
        d = d.step(
            Action::notify(
                format!("OOM kill in {service}"),
                format!(
                    "{task} was killed for memory: {}. Consider a larger memory reservation.",
                    incident.reason
                ),
            ),
            "Restarting does not fix an undersized task.",
        );
    }
    Ok(d.verify(VerifyMethod::Poll, VERIFY_SECS))
}

fn start_failed(incident: &Incident) -> Decision {
    let what = incident
        .ecs_service()
        .unwrap_or(incident.resource.id.as_str());
    Decision::new(format!("Tasks of {what} cannot start; humans must fix it."))
        .step(
            Action::notify(
                format!("ECS tasks of {what} fail to start"),
                incident.reason.clone(),
            ),
            "Start failures (image pull, secrets, resources) are not fixed by restarting.",
        )
        .step(
            Action::escalate(format!("{what}: {}", incident.reason)),
            "No automatic remedy.",
        )
}

fn rollback(incident: &Incident) -> Result<Decision, String> {
    let service = incident
        .ecs_service()
        .ok_or_else(|| format!("cannot tell the service of {}", incident.resource.id))?;
    let cluster = incident
        .ecs_cluster()
        .ok_or_else(|| format!("cannot tell the cluster of {}", incident.resource.id))?;
    let notify = Action::notify(
        format!("ECS deployment of {service} failed"),
        incident.reason.clone(),
    );
    if incident.attr("rollback") == Some("true") {
        return Ok(
            Decision::new(format!("ECS is already rolling back {service}."))
                .step(
                    notify,
                    "The deployment circuit breaker is rolling back on its own.",
                )
                .verify(VerifyMethod::RecoverySignal, VERIFY_SECS),
        );
    }
    Ok(Decision::new(format!(
        "Roll {service} back to its previous task definition."
    ))
    .step(
        Action::rollback_deployment(cluster, service),
        "The new deployment failed; the previous task definition was healthy.",
    )
    .step(notify, "Humans should know a deployment was rolled back.")
    .verify(VerifyMethod::Poll, VERIFY_SECS))
}

export_policy!(EcsTaskRestart);

#[cfg(test)]
mod tests {
    use super::*;
    use healer_sdk::testing::{self, incident};

    const TASK: &str =
        "arn:aws:ecs:eu-central-1:111111111111:task/test/a6eaf0150a4248dAA1bcbd688121014e";
    const SERVICE: &str = "arn:aws:ecs:eu-central-1:111111111111:service/test/example-api-v1";

    fn crashed() -> Incident {
        incident(IncidentKind::TaskCrashed, ResourceKind::EcsTask, TASK)
            .with_group(ResourceKind::EcsService, SERVICE)
            .with_reason("Essential container in task exited")
    }

    #[test]
    fn crashed_task_in_service_is_left_to_the_scheduler_and_verified() {
        let d = testing::decide::<EcsTaskRestart>(&crashed(), &Context::empty()).unwrap();
        assert!(d.steps.is_empty(), "{:?}", d.steps);
        assert!(matches!(
            d.verify.map(|v| v.method),
            Some(VerifyMethod::Poll)
        ));
        assert!(!testing::take_logs().is_empty());
    }

    #[test]
    fn notify_replaced_tells_the_team_of_a_crash_the_scheduler_handles() {
        let ctx = Context::empty().with_config("notify-replaced", "true");
        let d = testing::decide::<EcsTaskRestart>(&crashed(), &ctx).unwrap();
        let kinds: Vec<_> = d.steps.iter().map(|s| s.action.kind()).collect();
        assert_eq!(kinds, [ActionKind::Notify]);
        // When healer acts itself, the notice (for crashes left to ECS) is not added.
        let ctx = ctx.with_config("restart-mode", "force-new-deployment");
        let d = testing::decide::<EcsTaskRestart>(&crashed(), &ctx).unwrap();
        let kinds: Vec<_> = d.steps.iter().map(|s| s.action.kind()).collect();
        assert_eq!(kinds, [ActionKind::ForceNewDeployment]);
    }

    #[test]
    fn many_failures_force_a_new_deployment() {
        let ctx = Context::empty().with_recent_incidents(0, 2);
        let d = testing::decide::<EcsTaskRestart>(&crashed(), &ctx).unwrap();
        match &d.steps[0].action {
            Action::ForceNewDeployment(s) => assert_eq!(s.service, "example-api-v1"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn asked_again_after_the_scheduler_failed_it_redeploys() {
        let ctx = Context::empty().with_config("healer.attempt", "2");
        let d = testing::decide::<EcsTaskRestart>(&crashed(), &ctx).unwrap();
        assert_eq!(d.steps[0].action.kind(), ActionKind::ForceNewDeployment);
    }

    #[test]
    fn stop_task_mode_restarts_the_task() {
        let ctx = Context::empty().with_config("restart-mode", "stop-task");
        let d = testing::decide::<EcsTaskRestart>(&crashed(), &ctx).unwrap();
        assert_eq!(d.steps[0].action.kind(), ActionKind::RestartTask);
    }

    #[test]
    fn restart_mode_config_is_honoured() {
        let ctx = Context::empty().with_config("restart-mode", "force-new-deployment");
        let d = testing::decide::<EcsTaskRestart>(&crashed(), &ctx).unwrap();
        assert_eq!(d.steps[0].action.kind(), ActionKind::ForceNewDeployment);
    }

    #[test]
    fn oom_adds_a_notification() {
        let inc = crashed().with_detail("oom", "true");
        let d = testing::decide::<EcsTaskRestart>(&inc, &Context::empty()).unwrap();
        let kinds: Vec<_> = d.steps.iter().map(|s| s.action.kind()).collect();
        assert_eq!(kinds, [ActionKind::Notify]);
    }

    #[test]
    fn standalone_task_is_run_again() {
        let inc = incident(IncidentKind::TaskCrashed, ResourceKind::EcsTask, TASK);
        let d = testing::decide::<EcsTaskRestart>(&inc, &Context::empty()).unwrap();
        match &d.steps[0].action {
            Action::RestartTask(t) => {
                assert_eq!(t.cluster, "test");
                assert_eq!(t.task, TASK);
            }
            other => panic!("unexpected {other:?}"),
        }
        let kinds: Vec<_> = d.steps.iter().map(|s| s.action.kind()).collect();
        assert_eq!(kinds, [ActionKind::RestartTask, ActionKind::Notify]);
    }

    #[test]
    fn failed_deployment_rolls_back() {
        let inc = incident(
            IncidentKind::DeploymentFailed,
            ResourceKind::EcsService,
            SERVICE,
        );
        let d = testing::decide::<EcsTaskRestart>(&inc, &Context::empty()).unwrap();
        match &d.steps[0].action {
            Action::RollbackDeployment(r) => {
                assert_eq!(r.cluster, "test");
                assert_eq!(r.service, "example-api-v1");
            }
            other => panic!("unexpected {other:?}"),
        }
        let inc = inc.with_detail("rollback", "true");
        let d = testing::decide::<EcsTaskRestart>(&inc, &Context::empty()).unwrap();
        let kinds: Vec<_> = d.steps.iter().map(|s| s.action.kind()).collect();
        assert_eq!(kinds, [ActionKind::Notify]);
    }

    #[test]
    fn start_failure_escalates() {
        let inc = incident(IncidentKind::TaskStartFailed, ResourceKind::EcsTask, TASK)
            .with_reason("CannotPullContainerError: not found");
        let d = testing::decide::<EcsTaskRestart>(&inc, &Context::empty()).unwrap();
        let kinds: Vec<_> = d.steps.iter().map(|s| s.action.kind()).collect();
        assert_eq!(kinds, [ActionKind::Notify, ActionKind::Escalate]);
    }

    #[test]
    fn bad_config_is_a_policy_error() {
        let ctx = Context::empty().with_config("redeploy-after", "many");
        assert!(testing::decide::<EcsTaskRestart>(&crashed(), &ctx).is_err());
    }
}
