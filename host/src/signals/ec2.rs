//! EC2: spot interruption warnings. (Rebalance recommendations and state-change
//! notifications are context and are ignored in the envelope dispatch.)

use std::collections::BTreeMap;

use super::json::Json as Value;

use super::Signal;
use super::envelope::Sink;
use super::fields::{Arn, arn_location, instance_id, str_of};
use crate::incident::{Incident, IncidentKind, IncidentParts, ResourceKind, ResourceRef};

/// `EC2 Spot Instance Interruption Warning` → spot-interruption on the instance.
pub(crate) fn spot_interruption(v: &Value, mut sink: Sink<'_, '_>) {
    let d = &v["detail"];
    let resource_arn = v
        .get("resources")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .and_then(Value::as_str);
    let Some(id) = str_of(d, "instance-id")
        .and_then(instance_id)
        .or_else(|| resource_arn.and_then(instance_id))
    else {
        return sink.ignore("spot interruption without an instance id");
    };
    let (region, account) = arn_location(resource_arn.and_then(Arn::parse).as_ref(), v);
    let resource = ResourceRef {
        kind: ResourceKind::Ec2Instance,
        id: id.clone(),
        region,
        account,
    };
    let action = str_of(d, "instance-action").unwrap_or("").trim();
    let detail = BTreeMap::from([("instance-action".to_owned(), action.to_owned())]);
    let at = sink.ctx.fallback_time();
    sink.push(Signal::Incident(Incident::new(IncidentParts {
        kind: IncidentKind::SpotInterruption,
        source: "aws.ec2".into(),
        resource,
        group: None,
        reason: format!("Spot instance interruption warning: {action}"),
        detail,
        detected_at: at,
        dedupe_key: format!("{id}#spot"),
    })));
}

/// How an instance's status checks read (`DescribeInstanceStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StatusHealth {
    /// Both checks `ok`.
    Ok,
    /// A system or instance check `impaired`.
    Impaired,
    /// `initializing`, `insufficient-data`, `not-applicable` or unknown: neither.
    Other(String),
}

/// Classifies the `SystemStatus` and `InstanceStatus` summaries.
pub(crate) fn classify_status(system: &str, instance: &str) -> StatusHealth {
    match (system, instance) {
        ("impaired", _) | (_, "impaired") => StatusHealth::Impaired,
        ("ok", "ok") => StatusHealth::Ok,
        _ => StatusHealth::Other(format!(
            "status checks system {system:?}, instance {instance:?}"
        )),
    }
}

/// What one instance's `DescribeInstanceStatus` item says: its summaries
/// and the names of the checks that failed (`reachability`), each with the
/// time it became impaired when AWS gives one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StatusChecks {
    pub(crate) system: String,
    pub(crate) instance: String,
    pub(crate) failed: Vec<String>,
    pub(crate) impaired_since: Option<String>,
}

/// An instance-impaired incident from its status checks.
pub(crate) fn status_incident(
    id: &str,
    location: (Option<String>, Option<String>),
    checks: &StatusChecks,
    at: chrono::DateTime<chrono::Utc>,
    dedupe_key: String,
) -> Incident {
    let mut detail = BTreeMap::from([
        ("system-status".to_owned(), checks.system.clone()),
        ("instance-status".to_owned(), checks.instance.clone()),
        ("failed-checks".to_owned(), checks.failed.join(",")),
    ]);
    if let Some(since) = &checks.impaired_since {
        detail.insert("impaired-since".into(), since.clone());
    }
    Incident::new(IncidentParts {
        kind: IncidentKind::InstanceImpaired,
        source: "aws.ec2".into(),
        resource: ResourceRef {
            kind: ResourceKind::Ec2Instance,
            id: id.to_owned(),
            region: location.0,
            account: location.1,
        },
        group: None,
        reason: format!(
            "status checks impaired (system {}, instance {}): {}",
            checks.system,
            checks.instance,
            if checks.failed.is_empty() {
                "no check named".to_owned()
            } else {
                checks.failed.join(", ")
            }
        ),
        detail,
        detected_at: at,
        dedupe_key,
    })
}

/// The instance's checks back to `ok`.
pub(crate) fn status_recovery(
    id: &str,
    location: (Option<String>, Option<String>),
    at: chrono::DateTime<chrono::Utc>,
) -> crate::incident::Recovery {
    crate::incident::Recovery {
        resource: ResourceRef {
            kind: ResourceKind::Ec2Instance,
            id: id.to_owned(),
            region: location.0,
            account: location.1,
        },
        observed_at: at,
        source: "aws.ec2".into(),
        reason: "status checks ok".into(),
        heals: vec![IncidentKind::InstanceImpaired],
        within: None,
    }
}

/// The `InstanceStatuses` list of a `DescribeInstanceStatus` response (as
/// the CLI prints it): impaired → instance-impaired, ok → recovery.
pub(crate) fn describe_instance_status(list: &Value, mut sink: Sink<'_, '_>) {
    let Some(items) = list.as_array() else {
        return sink.ignore("`InstanceStatuses` is not a list");
    };
    if items.is_empty() {
        return sink.ignore("no instance statuses");
    }
    let at = sink.ctx.fallback_time();
    for (i, item) in items.iter().enumerate() {
        let mut item_sink = sink.item(&format!("[{i}]"));
        let Some(id) = str_of(item, "InstanceId").and_then(instance_id) else {
            item_sink.ignore("instance status without an instance id");
            continue;
        };
        let checks = status_checks(item);
        match classify_status(&checks.system, &checks.instance) {
            StatusHealth::Ok => {
                item_sink.push(Signal::Recovery(status_recovery(&id, (None, None), at)))
            }
            StatusHealth::Impaired => {
                // A redelivered payload names the same impairment.
                let since = checks.impaired_since.clone();
                let key = format!(
                    "{id}#status#{}",
                    since.unwrap_or_else(|| at.timestamp_millis().to_string())
                );
                item_sink.push(Signal::Incident(status_incident(
                    &id,
                    (None, None),
                    &checks,
                    at,
                    key,
                )))
            }
            StatusHealth::Other(why) => item_sink.ignore(why),
        }
    }
}

fn status_checks(item: &Value) -> StatusChecks {
    let mut checks = StatusChecks::default();
    for (field, label, summary) in [
        ("SystemStatus", "system", &mut checks.system),
        ("InstanceStatus", "instance", &mut checks.instance),
    ] {
        let s = item.get(field).unwrap_or(&Value::Null);
        *summary = str_of(s, "Status").unwrap_or("").to_owned();
        for d in s
            .get("Details")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if str_of(d, "Status") == Some("failed") {
                let name = str_of(d, "Name").unwrap_or("unnamed");
                checks.failed.push(format!("{label}:{name}"));
                if checks.impaired_since.is_none() {
                    checks.impaired_since = str_of(d, "ImpairedSince").map(str::to_owned);
                }
            }
        }
    }
    checks
}
