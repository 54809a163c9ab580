//! The policy stage: sandboxed WebAssembly components that turn an incident into a
//! plan. Owns the wasmtime engine, the compiled policies, their limits and the
//! registry that hot-swaps them. A decision never acts and never reads the
//! store: it gets an incident and a context, and returns a decision or a
//! `PolicyError`. Only the catalog (which version of each policy every replica
//! runs) and the blobs it loads them from are persisted.

mod bindings;
pub mod blobs;
mod cache;
pub mod catalog;
mod context;
mod engine;
pub mod follow;
pub mod guard;
mod input;
mod limits;
pub mod profile;
mod registry;
mod set;
mod state;
mod text;
mod wasi;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::decision::{ActionKind, Decision};
use crate::incident::IncidentKind;

pub use context::{PastAction, PolicyContext, ResourceConfig};
pub use engine::{DecisionCounters, LoadedPolicy, PolicyEngine};
pub use input::PolicyInput;
pub use limits::{LimitName, LimitOverride, LimitsConfig, PolicyLimits};
pub use profile::{LimitSource, Profile, Toolchain};
pub use registry::{
    Decisions, LoadReport, PolicyRegistry, PolicyRole, PolicyVersionInfo, RegistryEntry, Roles,
};
pub use wasi::SandboxLimit;

/// The example policies built into the binary (`policies/` in the repository,
/// compiled by `build.rs`), by file name: the default set when no policy
/// directory is given.
pub const EMBEDDED: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/embedded_policies.rs"));

/// The embedded policies as files (never newer than a persisted change).
pub fn embedded_files() -> Vec<follow::WasmFile> {
    EMBEDDED
        .iter()
        .map(|(name, bytes)| follow::WasmFile {
            path: std::path::PathBuf::from(format!("(embedded) {name}")),
            bytes: bytes.to_vec(),
            modified: None,
        })
        .collect()
}

/// Identity of one policy version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyId {
    /// Name from the policy's metadata.
    pub name: String,
    /// Version from the policy's metadata.
    pub version: String,
    /// sha256 of the component bytes, hex.
    pub sha256: String,
}

/// A configuration value a policy reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ConfigField {
    /// Key.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Default.
    pub default_value: Option<String>,
}

/// What a policy says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyMetadata {
    /// Name (registry key).
    pub name: String,
    /// Version.
    pub version: String,
    /// Incident kinds it decides on.
    pub handles: Vec<IncidentKind>,
    /// Action kinds it may propose.
    pub proposes: Vec<ActionKind>,
    /// Config values it reads.
    pub config_schema: Vec<ConfigField>,
}

/// Severity of a policy log line, least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogLevel {
    /// Trace.
    Trace,
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
}

/// One line a policy logged during a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Severity.
    pub level: LogLevel,
    /// Text (truncated to the configured maximum).
    pub message: String,
}

/// Why a policy could not be loaded or did not produce a usable decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "message")]
pub enum PolicyError {
    /// The bytes are not a Wasm component.
    #[error("not a valid policy component: {0}")]
    InvalidComponent(String),
    /// The component does not implement the `healer:policy/healing-policy` world.
    #[error("component does not implement healer:policy/healing-policy (0.2.0 or 0.1.0): {0}")]
    WrongWorld(String),
    /// The policy's metadata is unusable.
    #[error("invalid policy metadata: {0}")]
    InvalidMetadata(String),
    /// The policy trapped (panic, unreachable, stack overflow, …).
    #[error("policy trapped: {0}")]
    Trap(String),
    /// The policy used its whole fuel budget.
    #[error("policy ran out of fuel ({0} units)")]
    OutOfFuel(u64),
    /// The policy ran past its wall-clock deadline.
    #[error("policy exceeded its deadline of {0} ms")]
    Timeout(u64),
    /// The policy tried to grow its memory past the cap.
    #[error("policy exceeded its memory limit of {limit} bytes (asked for {requested})")]
    MemoryLimit {
        /// The cap.
        limit: usize,
        /// The size the policy asked to grow to.
        requested: usize,
    },
    /// The policy returned `err(..)`.
    #[error("policy returned an error: {0}")]
    Rejected(String),
    /// The decision is too large or malformed.
    #[error("invalid decision: {0}")]
    InvalidDecision(String),
    /// The policy ran into a host-side sandbox limit (handles, stdio, data
    /// copied to the host).
    #[error("policy exceeded the sandbox limit `{limit}`: {detail}")]
    SandboxLimit {
        /// Which limit.
        limit: SandboxLimit,
        /// What the policy did.
        detail: String,
    },
    /// The policy needs a limit above what the operator allows: refused at load.
    #[error("policy needs {limit} = {needs}, more than the {allowed} allowed ({why})")]
    LimitRefused {
        /// Which limit.
        limit: LimitName,
        /// What it needs.
        needs: u64,
        /// The most it may have.
        allowed: u64,
        /// Where the need and the bound come from.
        why: String,
    },
    /// The host could not run the policy (pool exhausted, cache I/O, …).
    #[error("host error: {0}")]
    Host(String),
}

impl PolicyError {
    /// A short stable label for metrics and records (`trap`, `out-of-fuel`, …).
    pub fn label(&self) -> &'static str {
        match self {
            PolicyError::InvalidComponent(_) => "invalid-component",
            PolicyError::WrongWorld(_) => "wrong-world",
            PolicyError::InvalidMetadata(_) => "invalid-metadata",
            PolicyError::Trap(_) => "trap",
            PolicyError::OutOfFuel(_) => "out-of-fuel",
            PolicyError::Timeout(_) => "timeout",
            PolicyError::MemoryLimit { .. } => "memory-limit",
            PolicyError::Rejected(_) => "rejected",
            PolicyError::InvalidDecision(_) => "invalid-decision",
            PolicyError::SandboxLimit { .. } => "sandbox-limit",
            PolicyError::LimitRefused { .. } => "limit-refused",
            PolicyError::Host(_) => "host",
        }
    }
}

/// The result of running one policy on one incident: the decision or the error,
/// with its provenance and cost.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DecisionOutcome {
    /// Which policy version decided.
    pub policy: PolicyId,
    /// The decision, or why there is none.
    #[serde(flatten, with = "outcome_result")]
    pub result: Result<Decision, PolicyError>,
    /// Fuel consumed (instantiation included).
    pub fuel_used: u64,
    /// Wall time of instantiate + decide.
    #[serde(rename = "duration-us", with = "duration_us")]
    pub duration: Duration,
    /// What the policy logged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogLine>,
    /// Log lines dropped over the cap.
    #[serde(skip_serializing_if = "is_zero")]
    pub logs_dropped: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

mod outcome_result {
    use serde::Serializer;
    use serde::ser::SerializeMap;

    use super::PolicyError;
    use crate::decision::Decision;

    pub fn serialize<S: Serializer>(
        r: &Result<Decision, PolicyError>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        match r {
            Ok(d) => m.serialize_entry("decision", d)?,
            Err(e) => m.serialize_entry(
                "error",
                &serde_json::json!({"kind": e.label(), "message": e.to_string()}),
            )?,
        }
        m.end()
    }
}

mod duration_us {
    use std::time::Duration;

    use serde::Serializer;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
}
