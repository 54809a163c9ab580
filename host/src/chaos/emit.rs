//! AWS's part, for the local AWS: moto changes state but emits no event and
//! evaluates no alarm, so chaos sends what AWS would send, in AWS's own
//! shapes: the EventBridge events `CloudWatch Alarm State Change`, `ECS Task
//! State Change` and `ECS Deployment State Change`, delivered to an SQS
//! queue (as an EventBridge rule with an SQS target delivers them). Against
//! a real account, AWS does this itself: do not ask for it there.

use aws_sdk_cloudwatch::types::MetricAlarm;
use aws_sdk_ecs::types::{Service, Task};
use serde_json::{Value, json};

use super::services::set_alarm;
use super::{AlarmState, Chaos, ChaosError, aws};

/// One thing AWS would do after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsPart {
    /// Send this event.
    Event(Value),
    /// CloudWatch moves the alarm to `state` (for `reason`), and sends the
    /// alarm's state-change `event`.
    SetAlarm {
        name: String,
        state: AlarmState,
        reason: String,
        event: Value,
    },
}

/// Plays `parts` on the local AWS: sets the alarms and delivers each event
/// to `queue`. Returns one line per thing done.
pub async fn deliver(
    chaos: &Chaos,
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    parts: &[AwsPart],
) -> Result<Vec<String>, ChaosError> {
    let mut done = Vec::new();
    for part in parts {
        let event = match part {
            AwsPart::Event(e) => e,
            AwsPart::SetAlarm {
                name,
                state,
                reason,
                event,
            } => {
                set_alarm(chaos, name, *state, reason).await?;
                done.push(format!(
                    "alarm {name} → {} (as CloudWatch would)",
                    state.as_str()
                ));
                event
            }
        };
        sqs.send_message()
            .queue_url(queue)
            .message_body(event.to_string())
            .send()
            .await
            .map_err(aws("sqs:SendMessage"))?;
        done.push(format!(
            "sent the {:?} event AWS would send",
            event["detail-type"].as_str().unwrap_or("?")
        ));
    }
    Ok(done)
}

/// (region, account) of an ARN; moto's defaults when it is not one.
fn region_account(arn: &str) -> (String, String) {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, _, region, account, ..] => ((*region).to_owned(), (*account).to_owned()),
        _ => ("us-east-1".to_owned(), "123456789012".to_owned()),
    }
}

/// An EventBridge event of `source` about `resource`.
fn event(source: &str, detail_type: &str, resource: &str, detail: Value) -> Value {
    let (region, account) = region_account(resource);
    let now = chrono::Utc::now();
    json!({
        "version": "0",
        "id": format!("healer-chaos-{}", now.timestamp_nanos_opt().unwrap_or_default()),
        "detail-type": detail_type,
        "source": source,
        "account": account,
        "time": now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "region": region,
        "resources": [resource],
        "detail": detail,
    })
}

/// `CloudWatch Alarm State Change` of `alarm` from `from` to `to`.
pub fn alarm_event(alarm: &MetricAlarm, from: AlarmState, to: AlarmState, reason: &str) -> Value {
    let name = alarm.alarm_name().unwrap_or_default();
    let arn = alarm.alarm_arn().unwrap_or_default();
    let dimensions: serde_json::Map<String, Value> = alarm
        .dimensions()
        .iter()
        .map(|d| {
            (
                d.name().unwrap_or_default().to_owned(),
                Value::from(d.value().unwrap_or_default()),
            )
        })
        .collect();
    let stamp = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string();
    event(
        "aws.cloudwatch",
        "CloudWatch Alarm State Change",
        arn,
        json!({
            "alarmName": name,
            "configuration": {
                "description": alarm.alarm_description().unwrap_or_default(),
                "metrics": [{
                    "id": "m1",
                    "metricStat": {
                        "metric": {
                            "dimensions": dimensions,
                            "name": alarm.metric_name().unwrap_or_default(),
                            "namespace": alarm.namespace().unwrap_or_default(),
                        },
                        "period": alarm.period().unwrap_or(60),
                        "stat": alarm.statistic().map(|s| s.as_str()).unwrap_or("Sum"),
                    },
                    "returnData": true,
                }],
            },
            "previousState": {
                "reason": alarm.state_reason().unwrap_or_default(),
                "timestamp": stamp,
                "value": from.as_str(),
            },
            "state": { "reason": reason, "timestamp": stamp, "value": to.as_str() },
        }),
    )
}

/// `ECS Task State Change` of a task stopped with `reason` (a StopTask: AWS
/// records it as `UserInitiated`; the containers exit on SIGTERM).
pub fn task_stopped_event(task: &Task, reason: &str) -> Value {
    let arn = task.task_arn().unwrap_or_default();
    let now = chrono::Utc::now().to_rfc3339();
    let containers: Vec<Value> = task
        .containers()
        .iter()
        .map(|c| {
            json!({
                "name": c.name().unwrap_or_default(),
                "containerArn": c.container_arn().unwrap_or_default(),
                "lastStatus": "STOPPED",
                "exitCode": 143,
                "taskArn": arn,
            })
        })
        .collect();
    event(
        "aws.ecs",
        "ECS Task State Change",
        arn,
        json!({
            "taskArn": arn,
            "clusterArn": task.cluster_arn().unwrap_or_default(),
            "taskDefinitionArn": task.task_definition_arn().unwrap_or_default(),
            "group": task.group().unwrap_or_default(),
            "launchType": task.launch_type().map(|l| l.as_str()).unwrap_or("FARGATE"),
            "lastStatus": "STOPPED",
            "desiredStatus": "STOPPED",
            "stopCode": "UserInitiated",
            "stoppedReason": reason,
            "stoppedAt": now,
            "updatedAt": now,
            "containers": containers,
        }),
    )
}

/// `ECS Deployment State Change` `SERVICE_DEPLOYMENT_FAILED` of the
/// service's primary deployment (the circuit breaker's verdict on tasks
/// that cannot start).
pub fn deployment_failed_event(service: &Service) -> Value {
    let arn = service.service_arn().unwrap_or_default();
    let deployment = service
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
        .and_then(|d| d.id())
        .unwrap_or("ecs-svc/healer-chaos");
    event(
        "aws.ecs",
        "ECS Deployment State Change",
        arn,
        json!({
            "eventType": "ERROR",
            "eventName": "SERVICE_DEPLOYMENT_FAILED",
            "deploymentId": deployment,
            "updatedAt": chrono::Utc::now().to_rfc3339(),
            "reason": "ECS deployment circuit breaker: task failed to start.",
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_take_region_and_account_from_the_arn() {
        assert_eq!(
            region_account("arn:aws:ecs:eu-west-1:111122223333:task/c/abc"),
            ("eu-west-1".to_owned(), "111122223333".to_owned())
        );
        assert_eq!(region_account("nonsense").0, "us-east-1");
    }

    fn normalize(e: &Value) -> crate::signals::Normalized {
        let opts = crate::signals::NormalizeOptions::new(chrono::Utc::now());
        let mut out =
            crate::signals::normalize(e.to_string().as_bytes(), &opts).expect("normalizes");
        assert_eq!(out.len(), 1, "{out:?}");
        out.remove(0)
    }

    /// The events chaos sends normalize as AWS's own do.
    #[test]
    fn a_chaos_alarm_event_is_the_functions_errors_incident() {
        let alarm = MetricAlarm::builder()
            .alarm_name("Errors-fragile")
            .alarm_arn("arn:aws:cloudwatch:us-east-1:123456789012:alarm:Errors-fragile")
            .namespace("AWS/Lambda")
            .metric_name("Errors")
            .dimensions(
                aws_sdk_cloudwatch::types::Dimension::builder()
                    .name("FunctionName")
                    .value("fragile")
                    .build(),
            )
            .build();
        let e = alarm_event(&alarm, AlarmState::Ok, AlarmState::Alarm, "chaos");
        let n = normalize(&e);
        let i = n.incident().expect("an incident");
        assert_eq!(i.kind, crate::IncidentKind::FunctionErrors);
        assert!(i.resource.id.contains("fragile"), "{i:?}");
        let ok = alarm_event(&alarm, AlarmState::Alarm, AlarmState::Ok, "chaos revert");
        assert!(normalize(&ok).recovery().is_some());
    }

    /// A task stopped by chaos is a drill's crash, not an operator's stop.
    #[test]
    fn a_chaos_task_stop_is_a_crash_and_an_operators_stop_is_ignored() {
        let task = Task::builder()
            .task_arn("arn:aws:ecs:us-east-1:123456789012:task/prod/abc")
            .cluster_arn("arn:aws:ecs:us-east-1:123456789012:cluster/prod")
            .group("service:api")
            .containers(aws_sdk_ecs::types::Container::builder().name("app").build())
            .build();
        let reason = format!("{} (experiment x)", super::super::STOP_REASON);
        let n = normalize(&task_stopped_event(&task, &reason));
        let i = n.incident().expect("an incident");
        assert_eq!(i.kind, crate::IncidentKind::TaskCrashed);
        assert_eq!(
            i.group.as_ref().map(|g| g.id.as_str()),
            Some("arn:aws:ecs:us-east-1:123456789012:service/prod/api")
        );
        let n = normalize(&task_stopped_event(&task, "scaled down by hand"));
        assert!(
            n.ignored().is_some_and(|r| r.contains("stopped by a user")),
            "{n:?}"
        );
    }
}
