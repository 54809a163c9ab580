//! The example policies, built as wasm32-wasip2 components, decide on realistic
//! incidents through the real engine.

use healer::policy::{PolicyContext, PolicyError};
use healer::{Action, ActionKind, IncidentKind, VerifyMethod};
use healer_test_artifacts as artifacts;

use crate::support::{engine, incident, load, now};

const TASK_CRASHED: &str = r#"{"kind":"task-crashed","source":"aws.ecs",
  "resource":{"kind":"ecs-task","id":"arn:aws:ecs:eu-central-1:111111111111:task/test/a6eaf0150a4248dAA1bcbd688121014e","region":"eu-central-1","account":"111111111111"},
  "group":{"kind":"ecs-service","id":"arn:aws:ecs:eu-central-1:111111111111:service/test/example-api-v1"},
  "reason":"Essential container in task exited; app exit 2","detail":{"culprit":"app","exit-code":"2"},
  "detected-at":"2024-05-01T10:00:00Z","dedupe-key":"arn:aws:ecs:eu-central-1:111111111111:task/test/a6eaf0150a4248dAA1bcbd688121014e#3"}"#;

const ELB_FAILED: &str = r#"{"kind":"task-health-check-failed","source":"aws.ecs",
  "resource":{"kind":"ecs-task","id":"arn:aws:ecs:ap-northeast-2:653734769926:task/sin-web_cluster-dev/7e12d648155541fbb8a922c39b586f82"},
  "group":{"kind":"ecs-service","id":"arn:aws:ecs:ap-northeast-2:653734769926:service/sin-web_cluster-dev/sin-web_service-dev"},
  "reason":"Task failed ELB health checks in (target-group arn:aws:elasticloadbalancing:ap-northeast-2:653734769926:targetgroup/sin-web-target-dev/ccb1c7ee670051a0)",
  "detail":{"health_check":"elb"},"detected-at":"2024-05-01T10:00:00Z"}"#;

const DEPLOYMENT_FAILED: &str = r#"{"kind":"deployment-failed","source":"aws.ecs",
  "resource":{"kind":"ecs-service","id":"arn:aws:ecs:us-west-2:111122223333:service/default/servicetest"},
  "reason":"ECS deployment circuit breaker: tasks failed to start.","detected-at":"2024-05-01T10:00:00Z"}"#;

const INSTANCE_IMPAIRED: &str = r#"{"kind":"instance-impaired","source":"cloudwatch-alarm",
  "resource":{"kind":"ec2-instance","id":"i-0b662ef9931388ba0","region":"us-east-1"},
  "reason":"Threshold Crossed: 1 datapoint [1.0] was >= the threshold (1.0).",
  "detail":{"metric":"StatusCheckFailed"},"detected-at":"2024-05-01T10:00:00Z"}"#;

const FUNCTION_ERRORS: &str = r#"{"kind":"function-errors","source":"cloudwatch-alarm",
  "resource":{"kind":"lambda-function","id":"fragile-fn","region":"us-east-1"},
  "reason":"Threshold Crossed: 3 datapoints were greater than the threshold (1.0).",
  "detected-at":"2024-05-01T10:00:00Z"}"#;

#[test]
fn ecs_task_restart_leaves_a_crashed_service_task_to_the_scheduler_and_verifies() {
    let engine = engine();
    let policy = load(&engine, artifacts::ECS_TASK_RESTART);
    assert_eq!(policy.id.name, "ecs-task-restart");
    assert!(policy.metadata.handles.contains(&IncidentKind::TaskCrashed));
    let out = engine.decide(
        &policy,
        &incident(TASK_CRASHED),
        &PolicyContext::default(),
        now(),
    );
    let d = out.result.expect("decides");
    // The task is already STOPPED and its service replaces it: no step.
    assert!(d.steps.is_empty(), "{:?}", d.steps);
    assert_eq!(d.verify.map(|v| v.method), Some(VerifyMethod::Poll));
    assert!(
        out.fuel_used > 0 && out.fuel_used < 1_000_000,
        "fuel {}",
        out.fuel_used
    );
    assert_eq!(out.logs.len(), 1, "the policy logs once");
    // With restart-mode = stop-task (a task still running), it is stopped.
    let mut stop = PolicyContext::default();
    stop.config
        .insert("restart-mode".into(), "stop-task".into());
    let d = engine
        .decide(&policy, &incident(TASK_CRASHED), &stop, now())
        .result
        .expect("decides");
    assert_eq!(
        d.steps[0].action,
        Action::RestartTask {
            cluster: "test".into(),
            task:
                "arn:aws:ecs:eu-central-1:111111111111:task/test/a6eaf0150a4248dAA1bcbd688121014e"
                    .into()
        }
    );
}

#[test]
fn ecs_task_restart_handles_elb_failures_and_storms() {
    let engine = engine();
    let policy = load(&engine, artifacts::ECS_TASK_RESTART);
    let single = engine.decide(
        &policy,
        &incident(ELB_FAILED),
        &PolicyContext::default(),
        now(),
    );
    assert!(single.result.expect("decides").steps.is_empty());

    let busy = PolicyContext {
        recent_incidents_group: 4,
        ..PolicyContext::default()
    };
    let many = engine.decide(&policy, &incident(ELB_FAILED), &busy, now());
    assert_eq!(
        many.result.expect("decides").steps[0].action,
        Action::ForceNewDeployment {
            cluster: "sin-web_cluster-dev".into(),
            service: "sin-web_service-dev".into()
        }
    );
}

#[test]
fn ecs_task_restart_rolls_back_failed_deployments() {
    let engine = engine();
    let policy = load(&engine, artifacts::ECS_TASK_RESTART);
    let out = engine.decide(
        &policy,
        &incident(DEPLOYMENT_FAILED),
        &PolicyContext::default(),
        now(),
    );
    let d = out.result.expect("decides");
    let kinds: Vec<_> = d.steps.iter().map(|s| s.action.kind()).collect();
    assert_eq!(kinds, [ActionKind::RollbackDeployment, ActionKind::Notify]);
}

#[test]
fn ec2_replace_needs_the_opt_in_tag() {
    let engine = engine();
    let policy = load(&engine, artifacts::EC2_REPLACE);
    let tagged = PolicyContext {
        tags: [("SelfHeal".to_owned(), "true".to_owned())].into(),
        ..PolicyContext::default()
    };
    // The ladder's first rung for a status check failure: a reboot.
    let d = engine
        .decide(&policy, &incident(INSTANCE_IMPAIRED), &tagged, now())
        .result
        .expect("decides");
    assert_eq!(
        d.steps[0].action,
        Action::RebootInstance {
            instance_id: "i-0b662ef9931388ba0".into(),
        }
    );
    // strategy = replace (the seed): a twin at once.
    let mut tagged = tagged;
    tagged.config.insert("strategy".into(), "replace".into());
    let d = engine
        .decide(&policy, &incident(INSTANCE_IMPAIRED), &tagged, now())
        .result
        .expect("decides");
    assert_eq!(
        d.steps[0].action,
        Action::ReplaceInstance {
            instance_id: "i-0b662ef9931388ba0".into(),
            move_elastic_ip: true
        }
    );
    assert_eq!(d.steps[1].action.kind(), ActionKind::Notify);

    let untagged = engine
        .decide(
            &policy,
            &incident(INSTANCE_IMPAIRED),
            &PolicyContext::default(),
            now(),
        )
        .result
        .expect("decides");
    let kinds: Vec<_> = untagged.steps.iter().map(|s| s.action.kind()).collect();
    assert_eq!(kinds, [ActionKind::Notify]);
}

#[test]
fn lambda_failure_rate_resets_the_variable() {
    let engine = engine();
    let policy = load(&engine, artifacts::LAMBDA_FAILURE_RATE);
    let d = engine
        .decide(
            &policy,
            &incident(FUNCTION_ERRORS),
            &PolicyContext::default(),
            now(),
        )
        .result
        .expect("decides");
    assert_eq!(
        d.steps[0].action,
        Action::UpdateFunctionConfig {
            function_name: "fragile-fn".into(),
            environment: vec![("FAILURE_RATE".into(), "0".into())]
        }
    );
}

#[test]
fn a_policy_error_is_returned_not_raised() {
    // ec2-replace refuses a non-instance resource with `err(..)`.
    let engine = engine();
    let policy = load(&engine, artifacts::EC2_REPLACE);
    let wrong = incident(
        r#"{"kind":"instance-impaired","resource":{"kind":"alarm","id":"arn:x"},"detected-at":"2024-05-01T10:00:00Z"}"#,
    );
    let out = engine.decide(&policy, &wrong, &PolicyContext::default(), now());
    assert!(
        matches!(out.result, Err(PolicyError::Rejected(ref m)) if m.contains("ec2-instance")),
        "{:?}",
        out.result
    );
}

#[test]
fn decisions_are_deterministic() {
    let engine = engine();
    let policy = load(&engine, artifacts::ECS_TASK_RESTART);
    let a = engine.decide(
        &policy,
        &incident(TASK_CRASHED),
        &PolicyContext::default(),
        now(),
    );
    let b = engine.decide(
        &policy,
        &incident(TASK_CRASHED),
        &PolicyContext::default(),
        now(),
    );
    assert_eq!(a.result, b.result);
    assert_eq!(a.fuel_used, b.fuel_used, "fuel is deterministic");
}
