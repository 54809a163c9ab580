//! The incident model: what every signal is normalized into and what policies decide on.
//!
//! This module owns the plain data types `Incident`, `ResourceRef`, `IncidentKind`,
//! `ResourceKind` and `Recovery`, their JSON form (kebab-case) and the deterministic
//! incident id. It does no I/O and knows nothing about AWS payloads or Wasm.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What went wrong. Kebab-case on the wire (`task-crashed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IncidentKind {
    /// An ECS task stopped because an essential container exited non-zero.
    TaskCrashed,
    /// An ECS task was stopped by a failed ELB or container health check.
    TaskHealthCheckFailed,
    /// An ECS task never started.
    TaskStartFailed,
    /// An ECS service or Auto Scaling group cannot place or start capacity.
    ServiceImpaired,
    /// An ECS deployment failed.
    DeploymentFailed,
    /// An EC2 instance fails status checks or has a hardware issue.
    InstanceImpaired,
    /// An EC2 instance is scheduled for retirement or maintenance.
    InstanceRetiring,
    /// A spot instance or Fargate Spot task is about to be reclaimed.
    SpotInterruption,
    /// A load-balancer target fails its health checks.
    TargetUnhealthy,
    /// A Lambda function's error alarm fired.
    FunctionErrors,
    /// Any other alarm.
    Alarm,
}

impl IncidentKind {
    /// Every kind, in declaration order.
    pub const ALL: [IncidentKind; 11] = [
        IncidentKind::TaskCrashed,
        IncidentKind::TaskHealthCheckFailed,
        IncidentKind::TaskStartFailed,
        IncidentKind::ServiceImpaired,
        IncidentKind::DeploymentFailed,
        IncidentKind::InstanceImpaired,
        IncidentKind::InstanceRetiring,
        IncidentKind::SpotInterruption,
        IncidentKind::TargetUnhealthy,
        IncidentKind::FunctionErrors,
        IncidentKind::Alarm,
    ];

    /// The wire name (`task-crashed`).
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::TaskCrashed => "task-crashed",
            IncidentKind::TaskHealthCheckFailed => "task-health-check-failed",
            IncidentKind::TaskStartFailed => "task-start-failed",
            IncidentKind::ServiceImpaired => "service-impaired",
            IncidentKind::DeploymentFailed => "deployment-failed",
            IncidentKind::InstanceImpaired => "instance-impaired",
            IncidentKind::InstanceRetiring => "instance-retiring",
            IncidentKind::SpotInterruption => "spot-interruption",
            IncidentKind::TargetUnhealthy => "target-unhealthy",
            IncidentKind::FunctionErrors => "function-errors",
            IncidentKind::Alarm => "alarm",
        }
    }
}

impl fmt::Display for IncidentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of AWS resource a reference points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceKind {
    /// An ECS task (id: task ARN).
    EcsTask,
    /// An ECS service (id: service ARN).
    EcsService,
    /// An EC2 instance (id: `i-…`).
    Ec2Instance,
    /// A load-balancer target (id: instance id, IP or Lambda ARN).
    Target,
    /// A target group (id: ARN); appears only as a group.
    TargetGroup,
    /// A Lambda function (id: function name).
    LambdaFunction,
    /// An Auto Scaling group (id: name).
    AutoscalingGroup,
    /// A CloudWatch alarm (id: alarm ARN).
    Alarm,
}

impl ResourceKind {
    /// The wire name (`ecs-task`).
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::EcsTask => "ecs-task",
            ResourceKind::EcsService => "ecs-service",
            ResourceKind::Ec2Instance => "ec2-instance",
            ResourceKind::Target => "target",
            ResourceKind::TargetGroup => "target-group",
            ResourceKind::LambdaFunction => "lambda-function",
            ResourceKind::AutoscalingGroup => "autoscaling-group",
            ResourceKind::Alarm => "alarm",
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reference to one AWS resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ResourceRef {
    /// What kind of resource.
    pub kind: ResourceKind,
    /// Its identifier (format per kind, see [`ResourceKind`]).
    pub id: String,
    /// Region, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Account id, when known. Kept verbatim, never validated (samples redact it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

impl ResourceRef {
    /// A reference with no region or account.
    pub fn new(kind: ResourceKind, id: impl Into<String>) -> Self {
        ResourceRef {
            kind,
            id: id.into(),
            region: None,
            account: None,
        }
    }

    /// Sets the region.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sets the account.
    pub fn with_account(mut self, account: impl Into<String>) -> Self {
        self.account = Some(account.into());
        self
    }
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.id)
    }
}

/// The deterministic id of an incident: `inc-` + the first 128 bits of
/// sha256(dedupe key), hex. A redelivered event has the same key, so the same id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IncidentId(String);

impl IncidentId {
    /// Derives the id from a dedupe key.
    pub fn from_dedupe_key(key: &str) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        IncidentId(format!("inc-{}", hex::encode(&digest[..16])))
    }

    /// An id as stored or typed by a user (not derived here).
    pub fn from_stored(id: &str) -> Self {
        IncidentId(id.to_owned())
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One normalized failure.
///
/// JSON (kebab-case) is the input of `healer policy eval` and the output of
/// `healer normalize`. When reading JSON, `dedupe-key` may be omitted (it is then
/// derived from kind, resource and detection time) and `id` may be omitted (it is
/// derived from the dedupe key); an `id` that does not match its key is rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", try_from = "IncidentWire")]
pub struct Incident {
    /// Deterministic id derived from `dedupe_key`.
    pub id: IncidentId,
    /// What went wrong.
    pub kind: IncidentKind,
    /// The signal source (`aws.ecs`, `cloudwatch-alarm`, …).
    pub source: String,
    /// The failing resource.
    pub resource: ResourceRef,
    /// The group the resource belongs to; blast-radius limits count over it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<ResourceRef>,
    /// Human-readable reason, in the source's words.
    pub reason: String,
    /// Source-specific attributes.
    pub detail: BTreeMap<String, String>,
    /// When the failure was detected (source time, else receive time).
    pub detected_at: DateTime<Utc>,
    /// The key that duplicates and redeliveries share.
    pub dedupe_key: String,
}

/// What an incident must carry to be built; see [`Incident::new`].
#[derive(Debug, Clone)]
pub struct IncidentParts {
    /// What went wrong.
    pub kind: IncidentKind,
    /// The signal source.
    pub source: String,
    /// The failing resource.
    pub resource: ResourceRef,
    /// Its group, if any.
    pub group: Option<ResourceRef>,
    /// Reason text.
    pub reason: String,
    /// Attributes.
    pub detail: BTreeMap<String, String>,
    /// Detection time.
    pub detected_at: DateTime<Utc>,
    /// Dedupe key.
    pub dedupe_key: String,
}

impl Incident {
    /// Builds an incident, deriving its id from the dedupe key.
    pub fn new(parts: IncidentParts) -> Self {
        Incident {
            id: IncidentId::from_dedupe_key(&parts.dedupe_key),
            kind: parts.kind,
            source: parts.source,
            resource: parts.resource,
            group: parts.group,
            reason: parts.reason,
            detail: parts.detail,
            detected_at: parts.detected_at,
            dedupe_key: parts.dedupe_key,
        }
    }

    /// The default dedupe key when a source has none: kind, resource and time.
    pub fn default_dedupe_key(
        kind: IncidentKind,
        resource: &ResourceRef,
        at: DateTime<Utc>,
    ) -> String {
        format!("{}#{}#{}", resource.id, kind, at.timestamp_millis())
    }

    /// Parses an incident from JSON with a clear error.
    pub fn from_json(bytes: &[u8]) -> Result<Self, IncidentError> {
        serde_json::from_slice(bytes).map_err(IncidentError::Json)
    }
}

/// Errors reading an incident.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    /// Not valid incident JSON.
    #[error("invalid incident JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The given id does not match the dedupe key.
    #[error(
        "incident id {given} does not match its dedupe-key (expected {expected}); omit `id` to derive it"
    )]
    IdMismatch {
        /// The id in the input.
        given: String,
        /// The id the dedupe key yields.
        expected: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct IncidentWire {
    #[serde(default)]
    id: Option<String>,
    kind: IncidentKind,
    #[serde(default = "default_source")]
    source: String,
    resource: ResourceRef,
    #[serde(default)]
    group: Option<ResourceRef>,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    detail: BTreeMap<String, String>,
    detected_at: DateTime<Utc>,
    #[serde(default)]
    dedupe_key: Option<String>,
}

fn default_source() -> String {
    "manual".to_owned()
}

impl TryFrom<IncidentWire> for Incident {
    type Error = IncidentError;

    fn try_from(w: IncidentWire) -> Result<Self, Self::Error> {
        let dedupe_key = w
            .dedupe_key
            .unwrap_or_else(|| Incident::default_dedupe_key(w.kind, &w.resource, w.detected_at));
        let incident = Incident::new(IncidentParts {
            kind: w.kind,
            source: w.source,
            resource: w.resource,
            group: w.group,
            reason: w.reason,
            detail: w.detail,
            detected_at: w.detected_at,
            dedupe_key,
        });
        match w.id {
            Some(given) if given != incident.id.as_str() => Err(IncidentError::IdMismatch {
                given,
                expected: incident.id.to_string(),
            }),
            _ => Ok(incident),
        }
    }
}

/// A resource (or group) observed healthy again; closes open incidents on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Recovery {
    /// The recovered resource or group.
    pub resource: ResourceRef,
    /// When the recovery was observed.
    pub observed_at: DateTime<Utc>,
    /// The signal source.
    pub source: String,
    /// The source's words.
    pub reason: String,
    /// The kinds of incident it closes (empty: every kind). A target's
    /// health closes only target-unhealthy incidents, an instance's status
    /// checks only instance-impaired ones, not a spot notice on the same id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heals: Vec<IncidentKind>,
    /// Only incidents in this group (a target healthy in one target group
    /// says nothing of the same instance in another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<String>,
}

impl Recovery {
    /// Whether it closes `incident`.
    pub fn closes(&self, incident: &Incident) -> bool {
        (self.heals.is_empty() || self.heals.contains(&incident.kind))
            && self
                .within
                .as_ref()
                .is_none_or(|g| incident.group.as_ref().is_some_and(|ig| &ig.id == g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_json() -> &'static str {
        r#"{"kind":"task-crashed","source":"aws.ecs",
            "resource":{"kind":"ecs-task","id":"arn:aws:ecs:eu-central-1:1:task/test/abc","region":"eu-central-1"},
            "group":{"kind":"ecs-service","id":"arn:aws:ecs:eu-central-1:1:service/test/api"},
            "reason":"Essential container in task exited","detail":{"exit-code":"2"},
            "detected-at":"2024-05-01T10:00:00Z","dedupe-key":"arn:aws:ecs:eu-central-1:1:task/test/abc#3"}"#
    }

    #[test]
    fn id_is_deterministic_from_dedupe_key() {
        let a = Incident::from_json(sample_json().as_bytes()).expect("valid");
        let b = Incident::from_json(sample_json().as_bytes()).expect("valid");
        assert_eq!(a.id, b.id);
        assert_eq!(a.id, IncidentId::from_dedupe_key(&a.dedupe_key));
        assert!(a.id.as_str().starts_with("inc-"));
        assert_eq!(a.id.as_str().len(), 4 + 32);
    }

    #[test]
    fn json_round_trips_in_kebab_case() {
        let a = Incident::from_json(sample_json().as_bytes()).expect("valid");
        let json = serde_json::to_string(&a).expect("serializes");
        assert!(json.contains("\"detected-at\""));
        assert!(json.contains("\"dedupe-key\""));
        assert!(json.contains("\"task-crashed\""));
        let back = Incident::from_json(json.as_bytes()).expect("round trip");
        assert_eq!(a, back);
    }

    #[test]
    fn mismatched_id_is_rejected_and_missing_key_is_derived() {
        let bad = sample_json().replacen('{', r#"{"id":"inc-nope","#, 1);
        let err = Incident::from_json(bad.as_bytes()).expect_err("mismatch");
        assert!(err.to_string().contains("does not match"), "{err}");

        let no_key = r#"{"kind":"instance-impaired","resource":{"kind":"ec2-instance","id":"i-1"},
                        "detected-at":"2024-05-01T10:00:00Z"}"#;
        let inc = Incident::from_json(no_key.as_bytes()).expect("valid");
        assert_eq!(inc.dedupe_key, "i-1#instance-impaired#1714557600000");
        assert_eq!(inc.source, "manual");
    }

    #[test]
    fn unknown_kind_is_a_clear_error() {
        let bad = sample_json().replace("task-crashed", "task-exploded");
        let err = Incident::from_json(bad.as_bytes()).expect_err("unknown kind");
        assert!(err.to_string().contains("task-exploded"), "{err}");
    }
}
