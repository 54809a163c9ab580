//! healer: a healing engine for AWS workloads whose decisions are made by
//! sandboxed WebAssembly policies.
//!
//! Stages, one module each, data flowing one way: `signals` (bytes → incidents),
//! `policy` (incident → decision), then governor, actions, verify and store
//! (later stages). Stages talk through the plain types in `incident` and `decision`.
//! `aws` is the SDK edge the AWS clients share: one configuration with per-call
//! timeouts, and the classification of SDK errors.

pub mod actions;
pub mod api;
pub mod aws;
pub mod chaos;
pub mod config;
pub mod decision;
pub mod diagnose;
pub mod http;
pub mod incident;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod replay;
pub mod safety;
pub mod signals;
pub mod sources;
pub mod store;
pub mod verify;

pub use decision::{Action, ActionKind, Decision, Step, VerifyMethod, VerifySpec};
pub use incident::{Incident, IncidentId, IncidentKind, Recovery, ResourceKind, ResourceRef};
