//! # healer-sdk: write healer healing policies in Rust
//!
//! A policy is a WebAssembly component that implements the `healer:policy` world:
//! it describes itself ([`Policy::metadata`]) and turns an [`Incident`] plus its
//! [`Context`] into a [`Decision`] ([`Policy::decide`]). It only proposes: the
//! healer host's safety governor approves or denies every step.
//!
//! ```ignore
//! use healer_sdk::*;
//!
//! struct Restart;
//!
//! impl Policy for Restart {
//!     fn metadata() -> Metadata {
//!         Metadata::new("restart", "1.0.0")
//!             .handles([IncidentKind::TaskCrashed])
//!             .proposes([ActionKind::RestartTask])
//!     }
//!     fn decide(incident: &Incident, _ctx: &Context) -> Result<Decision, String> {
//!         let cluster = incident.ecs_cluster().ok_or("task ARN without cluster")?;
//!         Ok(Decision::new("Restart the crashed task.")
//!             .step(Action::restart_task(cluster, &incident.resource.id), "It crashed."))
//!     }
//! }
//!
//! export_policy!(Restart);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` file is
//! the component. Unit-test `decide` natively with [`testing`].
#![deny(missing_docs)]

// Lets the generated bindings name this crate by its public path from inside it.
extern crate self as healer_sdk;

mod builders;
pub mod testing;

#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "healing-policy",
        pub_export_macro: true,
        export_macro_name: "__export_healing_policy",
        default_bindings_module: "::healer_sdk::__bindings",
        runtime_path: "::healer_sdk::__wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub use __bindings::healer::policy::host::Level;
pub use __bindings::healer::policy::types::{
    Action, ActionKind, AsgInstanceTarget, Attribute, ConfigField, Context, Decision,
    FunctionConfigTarget, Incident, IncidentKind, LbTarget, Metadata, Notification, PastAction,
    ReplaceTarget, ResourceConfig, ResourceKind, ResourceRef, RollbackTarget, ScaleTarget,
    ServiceTarget, SsmTarget, Step, TaskTarget, VerifyMethod, VerifySpec,
};

/// A healing policy. Implement it on a unit struct and export it with
/// [`export_policy!`].
pub trait Policy {
    /// Name, version, handled incident kinds and the actions it may propose.
    fn metadata() -> Metadata;
    /// The plan for one incident. `Err` is recorded as a policy error.
    fn decide(incident: &Incident, context: &Context) -> Result<Decision, String>;
}

/// Exports a [`Policy`] implementation as the component's `healing-policy` world.
#[macro_export]
macro_rules! export_policy {
    ($ty:ident) => {
        impl $crate::__bindings::Guest for $ty {
            fn metadata() -> $crate::Metadata {
                <$ty as $crate::Policy>::metadata()
            }
            fn decide(
                incident: $crate::Incident,
                context: $crate::Context,
            ) -> ::core::result::Result<$crate::Decision, ::std::string::String> {
                <$ty as $crate::Policy>::decide(&incident, &context)
            }
        }
        $crate::__bindings::__export_healing_policy!($ty with_types_in $crate::__bindings);
    };
}

/// Writes a line to the host's logs, tagged with the incident and policy.
/// In native tests the line is captured by [`testing::logs`].
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    __bindings::healer::policy::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    testing::record_log(level, message);
}

/// The decision's virtual time in milliseconds since the Unix epoch. Fixed for
/// the whole decision so replays are exact. In native tests, see [`testing::set_now`].
pub fn now() -> u64 {
    #[cfg(target_arch = "wasm32")]
    return __bindings::healer::policy::host::now();
    #[cfg(not(target_arch = "wasm32"))]
    return testing::current_now();
}
