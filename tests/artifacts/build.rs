//! Builds every example policy and test guest for `wasm32-wasip2` with a nested
//! cargo (its own target directory, so it never waits on the outer build's lock)
//! and exports each component's path as `HEALER_COMPONENT_<NAME>`.

use std::path::{Path, PathBuf};

const CRATES: &[(&str, &str, &str)] = &[
    ("ECS_TASK_RESTART", "ecs-task-restart", "ecs_task_restart"),
    ("EC2_REPLACE", "ec2-replace", "ec2_replace"),
    (
        "LAMBDA_FAILURE_RATE",
        "lambda-failure-rate",
        "lambda_failure_rate",
    ),
    ("HOSTILE", "guest-hostile", "guest_hostile"),
    (
        "METADATA_BOMB",
        "guest-metadata-bomb",
        "guest_metadata_bomb",
    ),
    ("OTHER_WORLD", "guest-other-world", "guest_other_world"),
    ("SWAP_V1", "guest-swap-v1", "guest_swap_v1"),
    ("SWAP_V2", "guest-swap-v2", "guest_swap_v2"),
    ("WORLD_0_1", "guest-world-0-1", "guest_world_0_1"),
];

include!("../../host/build/wasm.rs");

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("tests/artifacts lives two levels below the workspace root")
        .to_path_buf();
    let packages: Vec<&str> = CRATES.iter().map(|(_, package, _)| *package).collect();
    let dir = build_components(&root, &packages);
    for (name, _, file) in CRATES {
        let path = dir.join(format!("{file}.wasm"));
        assert!(path.is_file(), "expected component {}", path.display());
        println!("cargo:rustc-env=HEALER_COMPONENT_{name}={}", path.display());
    }
}
