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
