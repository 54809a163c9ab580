//! Helpers shared by the integration tests.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use healer::Incident;
use healer::policy::{LoadedPolicy, PolicyEngine, PolicyLimits};

/// A fixed virtual time for decisions.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 10, 5, 0)
        .single()
        .expect("valid time")
}

/// An engine with default limits and no cache.
pub fn engine() -> Arc<PolicyEngine> {
    PolicyEngine::new(PolicyLimits::default(), None).expect("engine")
}

/// Loads a component by path.
pub fn load(engine: &PolicyEngine, path: &str) -> LoadedPolicy {
    engine
        .load(&healer_test_artifacts::bytes(path))
        .unwrap_or_else(|e| panic!("{path} loads: {e}"))
}

/// An incident from JSON.
pub fn incident(json: &str) -> Incident {
    Incident::from_json(json.as_bytes()).expect("valid incident JSON")
}

/// An `alarm` incident whose reason selects the hostile guest's behaviour.
pub fn alarm(reason: &str) -> Incident {
    incident(&format!(
        r#"{{"kind":"alarm","source":"test","reason":"{reason}",
            "resource":{{"kind":"alarm","id":"arn:aws:cloudwatch:us-east-1:1:alarm:{reason}"}},
            "detected-at":"2024-05-01T10:00:00Z"}}"#
    ))
}
