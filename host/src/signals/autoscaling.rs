//! Auto Scaling: unsuccessful launches and terminations impair the group; the rest
//! (successful activity, lifecycle actions, instance refresh) is ignored.

use std::collections::BTreeMap;

use super::json::Json as Value;

use super::Signal;
use super::envelope::Sink;
use super::fields::{event_account, event_region, nonempty, str_of};
use crate::incident::{Incident, IncidentKind, IncidentParts, ResourceKind, ResourceRef};

/// Any `aws.autoscaling` event.
pub(crate) fn event(v: &Value, mut sink: Sink<'_, '_>) {
    let detail_type = str_of(v, "detail-type").unwrap_or("");
    if !matches!(
        detail_type,
        "EC2 Instance Launch Unsuccessful" | "EC2 Instance Terminate Unsuccessful"
    ) {
        return sink.ignore(format!("Auto Scaling {detail_type:?} is not a failure"));
    }
    let d = &v["detail"];
    let Some(name) = nonempty(d, "AutoScalingGroupName") else {
        return sink.ignore(format!("{detail_type} without AutoScalingGroupName"));
    };
    let activity = str_of(d, "ActivityId").unwrap_or("");
    let mut detail = BTreeMap::from([("activity-id".to_owned(), activity.to_owned())]);
    if let Some(i) = nonempty(d, "EC2InstanceId") {
        detail.insert("EC2InstanceId".into(), i.to_owned());
    }
    let message = [nonempty(d, "StatusMessage"), nonempty(d, "Cause")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("; ");
    let at = super::fields::first_time([d.get("EndTime"), d.get("StartTime")])
        .unwrap_or_else(|| sink.ctx.fallback_time());
    sink.push(Signal::Incident(Incident::new(IncidentParts {
        kind: IncidentKind::ServiceImpaired,
        source: "aws.autoscaling".into(),
        resource: ResourceRef {
            kind: ResourceKind::AutoscalingGroup,
            id: name.trim().to_owned(),
            region: event_region(v),
            account: event_account(v),
        },
        group: None,
        reason: if message.is_empty() {
            detail_type.to_owned()
        } else {
            format!("{detail_type}: {message}")
        },
        detail,
        detected_at: at,
        dedupe_key: format!("{}#{activity}#{detail_type}", name.trim()),
    })));
}
