//! ELBv2 `DescribeTargetHealth` responses (from the poller): unhealthy targets with
//! a failure reason, and `unused` ones with `Target.InvalidState` (a stopped
//! instance) → target-unhealthy; healthy → recovery; transient and
//! administrative states → ignored with the reason. Stateless: the poller marks
//! flapping and supplies the target group.

use std::collections::BTreeMap;

use super::json::Json as Value;

use super::Signal;
use super::envelope::Sink;
use super::fields::{Arn, str_of};
use crate::incident::{Incident, IncidentKind, IncidentParts, Recovery, ResourceKind, ResourceRef};

/// The `TargetHealthDescriptions` list.
pub(crate) fn describe_target_health(list: &Value, mut sink: Sink<'_, '_>) {
    let Some(items) = list.as_array() else {
        return sink.ignore("`TargetHealthDescriptions` is not a list");
    };
    if items.is_empty() {
        return sink.ignore("no targets registered");
    }
    let tg = sink.ctx.opts.target_group.clone();
    let tg_arn = tg.as_deref().and_then(Arn::parse);
    let (region, account) = tg_arn
        .as_ref()
        .map_or((None, None), |a| (a.region.clone(), a.account.clone()));
    let at = sink.ctx.fallback_time();
    for (i, item) in items.iter().enumerate() {
        let mut item_sink = sink.item(&format!("[{i}]"));
        let target = item.get("Target").unwrap_or(&Value::Null);
        let Some(id) = str_of(target, "Id").filter(|s| !s.is_empty()) else {
            item_sink.ignore("target without an Id");
            continue;
        };
        let port = target.get("Port").and_then(Value::as_u64);
        let health = item.get("TargetHealth").unwrap_or(&Value::Null);
        let state = str_of(health, "State").unwrap_or("");
        let code = str_of(health, "Reason").unwrap_or("");
        let description = str_of(health, "Description").unwrap_or("");
        let resource = ResourceRef {
            kind: ResourceKind::Target,
            id: id.to_owned(),
            region: region.clone(),
            account: account.clone(),
        };
        let group = tg.as_ref().map(|arn| ResourceRef {
            kind: ResourceKind::TargetGroup,
            id: arn.clone(),
            region: region.clone(),
            account: account.clone(),
        });
        match (state, code) {
            ("healthy", _) => item_sink.push(Signal::Recovery(Recovery {
                resource,
                observed_at: at,
                source: "aws.elbv2".into(),
                reason: "target healthy".into(),
            })),
            (
                "unhealthy",
                "Target.Timeout" | "Target.ResponseCodeMismatch" | "Target.FailedHealthChecks",
            )
            // How a registered instance that is stopped shows.
            | ("unused", "Target.InvalidState") => {
                let port_s = port.map(|p| p.to_string()).unwrap_or_default();
                let mut detail = BTreeMap::from([("reason-code".to_owned(), code.to_owned())]);
                if port.is_some() {
                    detail.insert("port".into(), port_s.clone());
                }
                let dedupe_key = format!(
                    "{}#{id}:{port_s}#{}",
                    tg.as_deref().unwrap_or(""),
                    at.timestamp_millis()
                );
                item_sink.push(Signal::Incident(Incident::new(IncidentParts {
                    kind: IncidentKind::TargetUnhealthy,
                    source: "aws.elbv2".into(),
                    resource,
                    group,
                    reason: format!("{code}: {description}"),
                    detail,
                    detected_at: at,
                    dedupe_key,
                })));
            }
            ("initial", _) => item_sink.ignore(format!("transient: {code} {description}")),
            ("unhealthy", _)
            | ("draining" | "unused" | "unavailable" | "unhealthy.draining", _) => {
                item_sink.ignore(format!("target {state}: {code} {description}"))
            }
            (other, _) => item_sink.ignore(format!("unknown target state {other:?}")),
        }
    }
}
