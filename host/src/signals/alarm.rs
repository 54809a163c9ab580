//! CloudWatch alarms in their three shapes (EventBridge state change, Lambda alarm
//! action, SNS message) → one model → incident (ALARM), recovery (OK) or ignored.
//! ALARM maps to a precise incident kind by namespace, metric and dimensions.

use std::collections::BTreeMap;

use super::json::Json as Value;
use chrono::{DateTime, Utc};

use super::Signal;
use super::envelope::Sink;
use super::fields::{Arn, arn_location, canonical_arn, event_account, nonempty, str_of, time_of};
use crate::incident::{Incident, IncidentKind, IncidentParts, Recovery, ResourceKind, ResourceRef};

/// One metric an alarm watches.
struct Metric {
    namespace: String,
    name: String,
    dims: BTreeMap<String, String>,
}

/// The common model of the three alarm shapes.
struct Alarm<'v> {
    arn: String,
    name: &'v str,
    state: &'v str,
    reason: &'v str,
    state_time: Option<DateTime<Utc>>,
    metrics: Vec<Metric>,
    composite: bool,
    contributor: Option<(String, BTreeMap<String, String>)>,
    suppressed_by: Option<&'v str>,
    muted: bool,
    region: Option<String>,
    account: Option<String>,
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.to_string(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// `[{name, value}]` (SNS) → map.
fn dims_list(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|d| {
                    let name = d.get("name").or_else(|| d.get("Name"))?.as_str()?;
                    let value = d.get("value").or_else(|| d.get("Value"))?.as_str()?;
                    Some((name.to_owned(), value.to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `configuration.metrics[]` of EventBridge / Lambda payloads.
fn eventbridge_metrics(config: &Value) -> Vec<Metric> {
    config
        .get("metrics")
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .filter_map(|m| {
                    let metric = m.get("metricStat")?.get("metric")?;
                    Some(Metric {
                        namespace: str_of(metric, "namespace")?.to_owned(),
                        name: str_of(metric, "name")?.to_owned(),
                        dims: string_map(metric.get("dimensions")),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn from_detail<'v>(arn: &str, d: &'v Value, event: &'v Value) -> Alarm<'v> {
    let state = d.get("state").unwrap_or(&Value::Null);
    let config = d.get("configuration").unwrap_or(&Value::Null);
    let (region, account) = arn_location(Arn::parse(arn).as_ref(), event);
    Alarm {
        arn: canonical_arn(arn),
        name: str_of(d, "alarmName").unwrap_or(""),
        state: str_of(state, "value").unwrap_or(""),
        reason: str_of(state, "reason").unwrap_or(""),
        state_time: time_of(state.get("timestamp")),
        metrics: eventbridge_metrics(config),
        composite: config.get("alarmRule").is_some(),
        contributor: d.get("alarmContributor").map(|c| {
            (
                str_of(c, "id").unwrap_or("").to_owned(),
                string_map(c.get("attributes")),
            )
        }),
        suppressed_by: nonempty(state, "actionsSuppressedBy"),
        muted: d.get("muteDetail").is_some_and(|m| !m.is_null()),
        region,
        account,
    }
}

/// EventBridge `CloudWatch Alarm State Change` / `… Contributor State Change`.
pub(crate) fn eventbridge(v: &Value, sink: Sink<'_, '_>) {
    let arn = v
        .get("resources")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .and_then(Value::as_str)
        .unwrap_or("");
    let alarm = from_detail(arn, &v["detail"], v);
    emit(alarm, sink);
}

/// Lambda alarm action: `{alarmArn, accountId, region, time, alarmData}`.
pub(crate) fn lambda_action(v: &Value, mut sink: Sink<'_, '_>) {
    let arn = str_of(v, "alarmArn").unwrap_or("");
    let Some(data) = v.get("alarmData").filter(|d| d.is_object()) else {
        return sink.ignore("alarm action without alarmData");
    };
    if let Some(t) = time_of(v.get("time")) {
        sink.ctx.envelope_time = Some(t);
    }
    let alarm = from_detail(arn, data, v);
    emit(alarm, sink);
}

/// A decoded alarm SNS message (`AlarmName`, `NewStateValue`, `Trigger`, …).
pub(crate) fn sns_message(v: &Value, sink: Sink<'_, '_>) {
    let arn = str_of(v, "AlarmArn").unwrap_or("");
    let parsed = Arn::parse(arn);
    let trigger = v.get("Trigger").unwrap_or(&Value::Null);
    let mut metrics = Vec::new();
    if let (Some(ns), Some(name)) = (str_of(trigger, "Namespace"), str_of(trigger, "MetricName")) {
        metrics.push(Metric {
            namespace: ns.to_owned(),
            name: name.to_owned(),
            dims: dims_list(trigger.get("Dimensions")),
        });
    }
    for m in trigger
        .get("Metrics")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let Some(metric) = m.get("MetricStat").and_then(|s| s.get("Metric")) else {
            continue;
        };
        if let (Some(ns), Some(name)) = (str_of(metric, "Namespace"), str_of(metric, "MetricName"))
        {
            metrics.push(Metric {
                namespace: ns.to_owned(),
                name: name.to_owned(),
                dims: dims_list(metric.get("Dimensions")),
            });
        }
    }
    let alarm = Alarm {
        arn: canonical_arn(arn),
        name: str_of(v, "AlarmName").unwrap_or(""),
        state: str_of(v, "NewStateValue").unwrap_or(""),
        reason: str_of(v, "NewStateReason").unwrap_or(""),
        state_time: time_of(v.get("StateChangeTime")),
        metrics,
        composite: v.get("AlarmRule").is_some(),
        contributor: None,
        suppressed_by: None,
        muted: false,
        // `Region` is a display name ("Asia Pacific (Seoul)"): use the ARN's.
        region: parsed.as_ref().and_then(|a| a.region.clone()),
        account: parsed
            .as_ref()
            .and_then(|a| a.account.clone())
            .or_else(|| event_account(v)),
    };
    emit(alarm, sink);
}

/// What an alarm is about: incident kind, resource and group.
fn classify(a: &Alarm<'_>) -> (IncidentKind, ResourceRef, Option<ResourceRef>) {
    let with_loc = |kind, id: String| ResourceRef {
        kind,
        id,
        region: a.region.clone(),
        account: a.account.clone(),
    };
    let alarm_ref = with_loc(ResourceKind::Alarm, a.arn.clone());
    let fallback = (IncidentKind::Alarm, alarm_ref.clone(), None);
    if a.composite {
        return fallback;
    }
    let contributor_dims = a.contributor.as_ref().map(|(_, d)| d);
    let mapped: Vec<_> = a
        .metrics
        .iter()
        .map(|m| {
            let mut dims = m.dims.clone();
            if let Some(extra) = contributor_dims {
                dims.extend(extra.clone());
            }
            let asg = dims
                .get("AutoScalingGroupName")
                .map(|g| with_loc(ResourceKind::AutoscalingGroup, g.clone()));
            let tg = || {
                dims.get("TargetGroup").map(|t| {
                    with_loc(
                        ResourceKind::TargetGroup,
                        format!(
                            "arn:aws:elasticloadbalancing:{}:{}:{t}",
                            a.region.as_deref().unwrap_or(""),
                            a.account.as_deref().unwrap_or("")
                        ),
                    )
                })
            };
            match (m.namespace.as_str(), m.name.as_str()) {
                ("AWS/EC2", n) if n.starts_with("StatusCheckFailed") => {
                    match dims.get("InstanceId") {
                        Some(id) => (
                            IncidentKind::InstanceImpaired,
                            with_loc(ResourceKind::Ec2Instance, id.clone()),
                            asg,
                        ),
                        None => (IncidentKind::Alarm, alarm_ref.clone(), asg),
                    }
                }
                ("AWS/ApplicationELB" | "AWS/NetworkELB", "UnHealthyHostCount")
                    if tg().is_some() =>
                {
                    (IncidentKind::TargetUnhealthy, alarm_ref.clone(), tg())
                }
                (_, "HTTPCode_Target_5XX_Count") if tg().is_some() => {
                    (IncidentKind::Alarm, alarm_ref.clone(), tg())
                }
                ("AWS/Lambda", "Errors") if dims.contains_key("FunctionName") => (
                    IncidentKind::FunctionErrors,
                    with_loc(ResourceKind::LambdaFunction, dims["FunctionName"].clone()),
                    None,
                ),
                ("AWS/ECS", "CPUUtilization" | "MemoryUtilization") => {
                    match (
                        dims.get("ClusterName"),
                        dims.get("ServiceName"),
                        &a.region,
                        &a.account,
                    ) {
                        (Some(c), Some(s), Some(r), Some(acct)) => (
                            IncidentKind::Alarm,
                            with_loc(
                                ResourceKind::EcsService,
                                format!("arn:aws:ecs:{r}:{acct}:service/{c}/{s}"),
                            ),
                            None,
                        ),
                        _ => (IncidentKind::Alarm, alarm_ref.clone(), None),
                    }
                }
                _ => (IncidentKind::Alarm, alarm_ref.clone(), asg),
            }
        })
        .collect();
    match mapped.split_first() {
        Some((first, rest)) if rest.iter().all(|m| m.0 == first.0 && m.1 == first.1) => {
            first.clone()
        }
        _ => fallback,
    }
}

fn emit(a: Alarm<'_>, mut sink: Sink<'_, '_>) {
    if a.arn.is_empty() {
        return sink.ignore("alarm without an ARN");
    }
    if a.muted {
        return sink.ignore(format!("alarm {} is muted", a.name));
    }
    if let Some(by) = a.suppressed_by {
        return sink.ignore(format!("alarm actions suppressed by {by}"));
    }
    let at = a.state_time.unwrap_or_else(|| sink.ctx.fallback_time());
    let (kind, resource, group) = classify(&a);
    match a.state {
        "ALARM" => {
            let mut detail = BTreeMap::from([
                ("alarm-arn".to_owned(), a.arn.clone()),
                ("alarm-name".to_owned(), a.name.to_owned()),
            ]);
            if let Some(m) = a.metrics.first() {
                detail.insert("metric".into(), format!("{}/{}", m.namespace, m.name));
            }
            let contributor = match &a.contributor {
                Some((id, _)) => {
                    detail.insert("contributor".into(), id.clone());
                    format!("#{id}")
                }
                None => String::new(),
            };
            let dedupe_key = format!("{}{contributor}#ALARM#{}", a.arn, at.timestamp_millis());
            sink.push(Signal::Incident(Incident::new(IncidentParts {
                kind,
                source: "aws.cloudwatch".into(),
                resource,
                group,
                reason: a.reason.trim().to_owned(),
                detail,
                detected_at: at,
                dedupe_key,
            })));
        }
        "OK" => sink.push(Signal::Recovery(Recovery {
            resource,
            observed_at: at,
            source: "aws.cloudwatch".into(),
            reason: a.reason.trim().to_owned(),
            heals: Vec::new(),
            within: None,
        })),
        "INSUFFICIENT_DATA" => sink.ignore(format!("alarm {} has insufficient data", a.name)),
        other => sink.ignore(format!("alarm state {other:?} is not ALARM or OK")),
    }
}
