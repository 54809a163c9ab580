//! Paths of the Wasm components built by this crate's `build.rs`: the example
//! policies and the test guests, compiled for `wasm32-wasip2` in release mode.

macro_rules! components {
    ($($name:ident),* $(,)?) => {
        $(
            #[doc = concat!("Path of the `", stringify!($name), "` component.")]
            pub const $name: &str = env!(concat!("HEALER_COMPONENT_", stringify!($name)));
        )*
        /// Every component, as (name, path).
        pub const ALL: &[(&str, &str)] = &[$((stringify!($name), $name)),*];
    };
}

components!(
    ECS_TASK_RESTART,
    EC2_REPLACE,
    LAMBDA_FAILURE_RATE,
    HOSTILE,
    METADATA_BOMB,
    OTHER_WORLD,
    SWAP_V1,
    SWAP_V2,
    WORLD_0_1,
);

/// Reads a component's bytes.
///
/// # Panics
/// If the file is missing, which means the build script did not run: a test bug.
pub fn bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("component {path} missing: {e}"))
}
