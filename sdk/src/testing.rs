//! Native test helpers: build incidents and contexts, call `decide` without Wasm,
//! and read what the policy logged. Use from `#[cfg(test)]` code with `cargo test`.
//!
//! ```ignore
//! use healer_sdk::testing::*;
//! let incident = incident(IncidentKind::TaskCrashed, ResourceKind::EcsTask, "arn:aws:ecs:…:task/c/1");
//! let decision = decide::<MyPolicy>(&incident, &Context::empty()).unwrap();
//! assert_eq!(decision.steps[0].action.kind(), ActionKind::RestartTask);
//! ```

use std::cell::{Cell, RefCell};

use crate::Attribute;
pub use crate::{
    Action, ActionKind, Context, Decision, Incident, IncidentKind, Level, PastAction, Policy,
    ResourceKind, ResourceRef,
};

thread_local! {
    static LOGS: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
    static NOW: Cell<u64> = const { Cell::new(1_700_000_000_000) };
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn record_log(level: Level, message: &str) {
    LOGS.with(|l| l.borrow_mut().push((level, message.to_owned())));
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn current_now() -> u64 {
    NOW.with(Cell::get)
}

/// Sets the virtual time [`crate::now`] returns in native tests (this thread).
pub fn set_now(ms: u64) {
    NOW.with(|n| n.set(ms));
}

/// Takes the lines logged on this thread since the last call.
pub fn take_logs() -> Vec<(Level, String)> {
    LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

/// Runs a policy's `decide` natively, checking what the host would check: every
/// proposed action kind is declared in the policy's metadata.
pub fn decide<P: Policy>(incident: &Incident, context: &Context) -> Result<Decision, String> {
    let decision = P::decide(incident, context)?;
    let declared = P::metadata().proposes;
    for step in &decision.steps {
        let kind = step.action.kind();
        if !declared.contains(&kind) {
            return Err(format!(
                "policy proposed {kind:?}, which its metadata does not declare (the governor would deny it)"
            ));
        }
    }
    Ok(decision)
}

/// A minimal incident: the given kind and resource, detected at the virtual now.
pub fn incident(kind: IncidentKind, resource_kind: ResourceKind, id: &str) -> Incident {
    let dedupe_key = format!("{id}#test");
    Incident {
        id: format!("inc-test-{}", dedupe_key.len()),
        kind,
        source: "test".to_owned(),
        resource: ResourceRef {
            kind: resource_kind,
            id: id.to_owned(),
            region: Some("us-east-1".to_owned()),
            account: Some("123456789012".to_owned()),
        },
        group: None,
        reason: String::new(),
        detail: Vec::new(),
        detected_at: current_now(),
        dedupe_key,
    }
}

impl Incident {
    /// Sets the group.
    pub fn with_group(mut self, kind: ResourceKind, id: &str) -> Self {
        self.group = Some(ResourceRef {
            kind,
            id: id.to_owned(),
            region: self.resource.region.clone(),
            account: self.resource.account.clone(),
        });
        self
    }

    /// Adds a detail attribute.
    pub fn with_detail(mut self, key: &str, value: &str) -> Self {
        self.detail.push(Attribute {
            key: key.to_owned(),
            value: value.to_owned(),
        });
        self
    }

    /// Sets the reason.
    pub fn with_reason(mut self, reason: &str) -> Self {
        self.reason = reason.to_owned();
        self
    }
}

impl Context {
    /// Adds a resource tag.
    pub fn with_tag(mut self, key: &str, value: &str) -> Self {
        self.tags.push(Attribute {
            key: key.to_owned(),
            value: value.to_owned(),
        });
        self
    }

    /// Adds a policy config value.
    pub fn with_config(mut self, key: &str, value: &str) -> Self {
        self.config.push(Attribute {
            key: key.to_owned(),
            value: value.to_owned(),
        });
        self
    }

    /// Sets the recent-incident counters.
    pub fn with_recent_incidents(mut self, resource: u32, group: u32) -> Self {
        self.recent_incidents_resource = resource;
        self.recent_incidents_group = group;
        self
    }

    /// Adds a past action.
    pub fn with_last_action(mut self, kind: ActionKind, target: &str, at: u64) -> Self {
        self.last_actions.push(PastAction {
            kind,
            target: target.to_owned(),
            at,
            outcome: "succeeded".to_owned(),
        });
        self
    }
}
