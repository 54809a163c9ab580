//! AWS Health: EC2 issues (instance-impaired) and scheduled changes
//! (instance-retiring), one signal per affected instance; `closed` → recovery.

use std::collections::BTreeMap;

use super::json::Json as Value;

use super::Signal;
use super::envelope::Sink;
use super::fields::{event_account, event_region, instance_id, is_region, str_of, time_of};
use crate::incident::{Incident, IncidentKind, IncidentParts, Recovery, ResourceKind, ResourceRef};

/// `AWS Health Event`.
pub(crate) fn event(v: &Value, mut sink: Sink<'_, '_>) {
    let d = &v["detail"];
    let service = str_of(d, "service").unwrap_or("");
    let category = str_of(d, "eventTypeCategory").unwrap_or("");
    if service != "EC2" {
        return sink.ignore(format!("Health event for {service}, not EC2"));
    }
    let kind = match category {
        "issue" => IncidentKind::InstanceImpaired,
        "scheduledChange" => IncidentKind::InstanceRetiring,
        other => return sink.ignore(format!("Health category {other:?} is not actionable")),
    };
    let closed = str_of(d, "statusCode") == Some("closed");
    let mut entities: Vec<String> = d
        .get("affectedEntities")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|e| str_of(e, "entityValue").and_then(instance_id))
                .collect()
        })
        .unwrap_or_default();
    if entities.is_empty() {
        entities = v
            .get("resources")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|r| r.as_str().and_then(instance_id))
                    .collect()
            })
            .unwrap_or_default();
    }
    if entities.is_empty() {
        return sink.ignore("Health event names no EC2 instance");
    }
    let region = str_of(d, "eventRegion")
        .filter(|r| is_region(r))
        .map(str::to_owned)
        .or_else(|| event_region(v));
    let account = event_account(v);
    let event_arn = str_of(d, "eventArn").unwrap_or("");
    let type_code = str_of(d, "eventTypeCode").unwrap_or("");
    let description = d
        .get("eventDescription")
        .and_then(Value::as_array)
        .and_then(|l| l.first())
        .and_then(|e| str_of(e, "latestDescription"))
        .unwrap_or("");
    let at = sink.ctx.fallback_time();
    for id in entities {
        let resource = ResourceRef {
            kind: ResourceKind::Ec2Instance,
            id: id.clone(),
            region: region.clone(),
            account: account.clone(),
        };
        if closed {
            sink.push(Signal::Recovery(Recovery {
                resource,
                observed_at: time_of(d.get("endTime")).unwrap_or(at),
                source: "aws.health".into(),
                reason: format!("{type_code} closed"),
                heals: Vec::new(),
                within: None,
            }));
            continue;
        }
        let mut detail = BTreeMap::from([
            ("event-arn".to_owned(), event_arn.to_owned()),
            ("event-type".to_owned(), type_code.to_owned()),
        ]);
        if kind == IncidentKind::InstanceRetiring
            && let Some(t) = time_of(d.get("startTime"))
        {
            detail.insert("scheduled_for".into(), t.to_rfc3339());
        }
        sink.push(Signal::Incident(Incident::new(IncidentParts {
            kind,
            source: "aws.health".into(),
            resource,
            group: None,
            reason: format!("{type_code}: {description}"),
            detail,
            detected_at: at,
            dedupe_key: format!("{}#{event_arn}#{id}", account.as_deref().unwrap_or("")),
        })));
    }
}
