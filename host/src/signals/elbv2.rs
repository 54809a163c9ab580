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
        let (resource, group) = refs(id, tg.as_deref());
        match classify(state, code, description) {
            TargetState::Healthy => {
                item_sink.push(Signal::Recovery(recovery(resource, tg.as_deref(), at)))
            }
            TargetState::Failing => {
                let port_s = port.map(|p| p.to_string()).unwrap_or_default();
                let dedupe_key = format!(
                    "{}#{id}:{port_s}#{}",
                    tg.as_deref().unwrap_or(""),
                    at.timestamp_millis()
                );
                item_sink.push(Signal::Incident(incident(
                    resource,
                    group,
                    port,
                    (code, description),
                    at,
                    dedupe_key,
                )));
            }
            TargetState::Other(why) => item_sink.ignore(why),
        }
    }
}

/// How a target's health reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TargetState {
    /// `healthy`.
    Healthy,
    /// Failing its health checks, or `unused` with `Target.InvalidState`
    /// (a registered instance that is stopped).
    Failing,
    /// Transient, administrative or unknown: neither, with the reason.
    Other(String),
}

/// Classifies a target's `State` and `Reason` code (`description` goes
/// into the reason of what is neither healthy nor failing).
pub(crate) fn classify(state: &str, code: &str, description: &str) -> TargetState {
    match (state, code) {
        ("healthy", _) => TargetState::Healthy,
        ("unhealthy", "Target.Timeout" | "Target.ResponseCodeMismatch" | "Target.FailedHealthChecks")
        // How a registered instance that is stopped shows.
        | ("unused", "Target.InvalidState") => TargetState::Failing,
        ("initial", _) => TargetState::Other(format!("transient: {code} {description}")),
        ("unhealthy", _) | ("draining" | "unused" | "unavailable" | "unhealthy.draining", _) => {
            TargetState::Other(format!("target {state}: {code} {description}"))
        }
        (other, _) => TargetState::Other(format!("unknown target state {other:?}")),
    }
}

/// The target `id` and its group `tg` (region and account from the ARN).
pub(crate) fn refs(id: &str, tg: Option<&str>) -> (ResourceRef, Option<ResourceRef>) {
    let (region, account) = tg
        .and_then(Arn::parse)
        .map_or((None, None), |a| (a.region, a.account));
    let resource = ResourceRef {
        kind: ResourceKind::Target,
        id: id.to_owned(),
        region: region.clone(),
        account: account.clone(),
    };
    let group = tg.map(|arn| ResourceRef {
        kind: ResourceKind::TargetGroup,
        id: arn.to_owned(),
        region,
        account,
    });
    (resource, group)
}

/// A target-unhealthy incident: `(code, description)` are the health's
/// `Reason` and `Description`; `detail` holds `reason-code` and `port`.
pub(crate) fn incident(
    resource: ResourceRef,
    group: Option<ResourceRef>,
    port: Option<u64>,
    (code, description): (&str, &str),
    at: chrono::DateTime<chrono::Utc>,
    dedupe_key: String,
) -> Incident {
    let mut detail = BTreeMap::from([("reason-code".to_owned(), code.to_owned())]);
    if let Some(port) = port {
        detail.insert("port".into(), port.to_string());
    }
    Incident::new(IncidentParts {
        kind: IncidentKind::TargetUnhealthy,
        source: "aws.elbv2".into(),
        resource,
        group,
        reason: format!("{code}: {description}"),
        detail,
        detected_at: at,
        dedupe_key,
    })
}

/// The target back to `healthy` in its `group`: closes its target-unhealthy
/// incidents there.
pub(crate) fn recovery(
    resource: ResourceRef,
    group: Option<&str>,
    at: chrono::DateTime<chrono::Utc>,
) -> Recovery {
    Recovery {
        resource,
        observed_at: at,
        source: "aws.elbv2".into(),
        reason: "target healthy".into(),
        heals: vec![IncidentKind::TargetUnhealthy],
        within: group.map(str::to_owned),
    }
}
