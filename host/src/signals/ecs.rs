//! ECS: task state changes (crash, health-check kill, start failure, spot warning,
//! benign stops), service actions (impaired / steady state) and deployment state
//! changes (failed / completed).

use std::collections::BTreeMap;

use super::json::Json as Value;

use super::Signal;
use super::envelope::Sink;
use super::fields::{Arn, arn_location, canonical_arn, first_time, nonempty, str_of};
use crate::incident::{Incident, IncidentKind, IncidentParts, Recovery, ResourceKind, ResourceRef};

/// A resource ref from an ARN, region/account from the ARN else the event.
fn arn_ref(kind: ResourceKind, arn: &str, event: &Value) -> ResourceRef {
    let (region, account) = arn_location(Arn::parse(arn).as_ref(), event);
    ResourceRef {
        kind,
        id: canonical_arn(arn),
        region,
        account,
    }
}

fn first_resource<'a>(v: &'a Value<'_>) -> Option<&'a str> {
    v.get("resources")?.as_array()?.first()?.as_str()
}

/// The service group of a task: `group: "service:NAME"` + the cluster ARN.
fn service_group(d: &Value, task: &ResourceRef) -> Option<ResourceRef> {
    let name = str_of(d, "group")?.strip_prefix("service:")?;
    let cluster_arn = str_of(d, "clusterArn")?;
    let arn = Arn::parse(cluster_arn)?;
    let cluster = arn.resource.strip_prefix("cluster/")?;
    let region = arn.region.clone().or_else(|| task.region.clone())?;
    let account = arn.account.clone().or_else(|| task.account.clone())?;
    Some(ResourceRef {
        kind: ResourceKind::EcsService,
        id: format!(
            "arn:{}:ecs:{region}:{account}:service/{cluster}/{name}",
            arn.partition
        ),
        region: Some(region),
        account: Some(account),
    })
}

struct Culprit<'a> {
    name: &'a str,
    exit_code: i64,
    reason: Option<&'a str>,
}

/// The failing container: the event lacks `essential`, so blame the first
/// non-zero exit code (sidecars may exit 0; no exit code = never started).
fn culprit<'a>(containers: &'a [Value<'_>]) -> Option<Culprit<'a>> {
    containers.iter().find_map(|c| {
        let code = c.get("exitCode")?.as_i64()?;
        (code != 0).then(|| Culprit {
            name: str_of(c, "name").unwrap_or("?"),
            exit_code: code,
            reason: nonempty(c, "reason"),
        })
    })
}

/// `ECS Task State Change`.
pub(crate) fn task_state_change(v: &Value, mut sink: Sink<'_, '_>) {
    let d = &v["detail"];
    let last = str_of(d, "lastStatus").unwrap_or("");
    let desired = str_of(d, "desiredStatus").unwrap_or("");
    let stop_code = str_of(d, "stopCode").unwrap_or("");
    let stopped_reason = str_of(d, "stoppedReason").unwrap_or("").trim();
    let spot = matches!(stop_code, "TerminationNotice" | "SpotInterruption");
    if last != "STOPPED" && !(spot && desired == "STOPPED") {
        return sink.ignore(format!("task is {last} (desired {desired}): not stopped"));
    }
    let Some(task_arn) = nonempty(d, "taskArn").or_else(|| first_resource(v)) else {
        return sink.ignore("task state change without a task ARN");
    };
    let task = arn_ref(ResourceKind::EcsTask, task_arn, v);
    let group = service_group(d, &task);
    let containers = d
        .get("containers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();

    let mut detail = BTreeMap::new();
    for (key, field) in [
        ("cluster", "clusterArn"),
        ("stop-code", "stopCode"),
        ("launch-type", "launchType"),
        ("task-definition", "taskDefinitionArn"),
        ("started-by", "startedBy"),
    ] {
        if let Some(s) = nonempty(d, field) {
            detail.insert(key.to_owned(), s.trim().to_owned());
        }
    }

    let kind = if spot {
        IncidentKind::SpotInterruption
    } else if stop_code == "UserInitiated" && stopped_reason.starts_with(crate::chaos::STOP_REASON)
    {
        // A drill: `healer chaos stop-task` stands for a crash.
        detail.insert("chaos".into(), "true".into());
        IncidentKind::TaskCrashed
    } else if stop_code == "UserInitiated" {
        return sink.ignore(format!("stopped by a user: {stopped_reason}"));
    } else if stopped_reason.starts_with("Scaling activity initiated by") {
        return sink.ignore(format!("benign stop: {stopped_reason}"));
    } else if let Some(rest) = stopped_reason
        .find("Task failed ELB health checks")
        .map(|i| &stopped_reason[i..])
    {
        detail.insert("health_check".into(), "elb".into());
        if let Some(tg) = rest
            .split("(target-group ")
            .nth(1)
            .and_then(|s| s.split(')').next())
        {
            detail.insert("target_group".into(), tg.trim().to_owned());
        }
        IncidentKind::TaskHealthCheckFailed
    } else if stopped_reason.contains("Task failed container health checks") {
        detail.insert("health_check".into(), "container".into());
        IncidentKind::TaskHealthCheckFailed
    } else if stop_code == "TaskFailedToStart"
        || [
            "CannotPullContainerError",
            "ResourceInitializationError",
            "CannotStartContainerError",
        ]
        .iter()
        .any(|p| stopped_reason.starts_with(p))
        || !containers
            .iter()
            .any(|c| c.get("exitCode").is_some_and(Value::is_i64))
    {
        IncidentKind::TaskStartFailed
    } else if stop_code == "EssentialContainerExited" || culprit(containers).is_some() {
        IncidentKind::TaskCrashed
    } else {
        let code = if stop_code.is_empty() {
            "no stop code"
        } else {
            stop_code
        };
        return sink.ignore(format!("task stopped cleanly ({code}): {stopped_reason}"));
    };

    let mut reason = stopped_reason.to_owned();
    if let Some(c) = culprit(containers) {
        detail.insert("culprit".into(), c.name.to_owned());
        detail.insert("exit-code".into(), c.exit_code.to_string());
        reason.push_str(&format!("; {} exit {}", c.name, c.exit_code));
        if let Some(r) = c.reason {
            reason.push_str(&format!(": {r}"));
            if r.starts_with("OutOfMemoryError") {
                detail.insert("oom".into(), "true".into());
            }
        }
    }

    // A task stops once: every event about one task ARN (a later `version`,
    // the spot notice then the stop) is one incident, so the store's
    // conditional create dedupes it across replicas (issue 11).
    let dedupe_key = format!("{}#task", task.id);
    let detected_at = first_time([d.get("stoppedAt"), d.get("stoppingAt"), d.get("updatedAt")])
        .unwrap_or_else(|| sink.ctx.fallback_time());
    let source = str_of(v, "source").unwrap_or("aws.ecs").to_owned();
    sink.push(Signal::Incident(Incident::new(IncidentParts {
        kind,
        source,
        resource: task,
        group,
        reason,
        detail,
        detected_at,
        dedupe_key,
    })));
}

/// `ECS Service Action`.
pub(crate) fn service_action(v: &Value, mut sink: Sink<'_, '_>) {
    let d = &v["detail"];
    let event = str_of(d, "eventName").unwrap_or("");
    let Some(arn) = first_resource(v) else {
        return sink.ignore(format!("service action {event} without a service ARN"));
    };
    let service = arn_ref(ResourceKind::EcsService, arn, v);
    let at = sink.ctx.fallback_time();
    match event {
        "SERVICE_TASK_START_IMPAIRED"
        | "SERVICE_TASK_PLACEMENT_FAILURE"
        | "SERVICE_TASK_CONFIGURATION_FAILURE" => {
            let why = str_of(d, "reason").unwrap_or("").trim();
            let created = str_of(d, "createdAt").unwrap_or("");
            let mut detail = BTreeMap::from([("event".to_owned(), event.to_owned())]);
            if !why.is_empty() {
                detail.insert("placement-reason".into(), why.to_owned());
            }
            if let Some(c) = nonempty(d, "clusterArn") {
                detail.insert("cluster".into(), c.trim().to_owned());
            }
            let reason = if why.is_empty() {
                event.to_owned()
            } else {
                format!("{event}: {why}")
            };
            let dedupe_key = format!("{}#{event}#{why}#{created}", service.id);
            sink.push(Signal::Incident(Incident::new(IncidentParts {
                kind: IncidentKind::ServiceImpaired,
                source: "aws.ecs".into(),
                resource: service,
                group: None,
                reason,
                detail,
                detected_at: at,
                dedupe_key,
            })));
        }
        "SERVICE_STEADY_STATE" => sink.push(Signal::Recovery(Recovery {
            resource: service,
            observed_at: at,
            source: "aws.ecs".into(),
            reason: event.to_owned(),
            heals: Vec::new(),
            within: None,
        })),
        other => sink.ignore(format!("service action {other} is not a failure")),
    }
}

/// `ECS Deployment State Change`.
pub(crate) fn deployment_state_change(v: &Value, mut sink: Sink<'_, '_>) {
    let d = &v["detail"];
    let event = str_of(d, "eventName").unwrap_or("");
    let Some(arn) = first_resource(v) else {
        return sink.ignore(format!("deployment change {event} without a service ARN"));
    };
    let service = arn_ref(ResourceKind::EcsService, arn, v);
    let reason = str_of(d, "reason").unwrap_or("").trim().to_owned();
    let at = sink.ctx.fallback_time();
    match event {
        "SERVICE_DEPLOYMENT_FAILED" => {
            let deployment = str_of(d, "deploymentId").unwrap_or("");
            let mut detail = BTreeMap::from([("deployment-id".to_owned(), deployment.to_owned())]);
            if reason.contains("rolling back") {
                detail.insert("rollback".into(), "true".into());
            }
            let dedupe_key = format!("{}#{deployment}#{event}", service.id);
            sink.push(Signal::Incident(Incident::new(IncidentParts {
                kind: IncidentKind::DeploymentFailed,
                source: "aws.ecs".into(),
                resource: service,
                group: None,
                reason: if reason.is_empty() {
                    event.to_owned()
                } else {
                    reason
                },
                detail,
                detected_at: at,
                dedupe_key,
            })));
        }
        "SERVICE_DEPLOYMENT_COMPLETED" => sink.push(Signal::Recovery(Recovery {
            resource: service,
            observed_at: at,
            source: "aws.ecs".into(),
            reason: event.to_owned(),
            heals: Vec::new(),
            within: None,
        })),
        "SERVICE_DEPLOYMENT_IN_PROGRESS" if reason.contains("rolling back") => {
            sink.ignore(format!("deployment in progress (rollback=true): {reason}"))
        }
        "SERVICE_DEPLOYMENT_IN_PROGRESS" => sink.ignore("deployment in progress"),
        other => sink.ignore(format!("deployment event {other} is not a failure")),
    }
}
