//! Builds every example policy and test guest for `wasm32-wasip2` with a nested
//! cargo (its own target directory, so it never waits on the outer build's lock)
//! and exports each component's path as `HEALER_COMPONENT_<NAME>`.

use std::path::{Path, PathBuf};
use std::process::Command;

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

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("tests/artifacts lives two levels below the workspace root")
        .to_path_buf();
    for dir in [
        ".cargo/config.toml",
        "sdk",
        "wit",
        "policies",
        "tests/guests",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    // OUT_DIR = <target>/[<triple>/]<profile>/build/<pkg>-<hash>/out: share one
    // guest build across profiles by going up to the target directory.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    // HEALER_WASM_TARGET_DIR overrides it, so two checkouts sharing one
    // CARGO_TARGET_DIR never overwrite each other's guests.
    println!("cargo:rerun-if-env-changed=HEALER_WASM_TARGET_DIR");
    let target_dir = match std::env::var_os("HEALER_WASM_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => out_dir
            .ancestors()
            .nth(4)
            .expect("OUT_DIR has the usual depth")
            .join("wasm-guests"),
    };

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for (_, package, _) in CRATES {
        cmd.args(["-p", package]);
    }
    // The outer build's flags and wrappers (clippy, coverage) are for the host.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("cannot run cargo to build the wasm32-wasip2 components");
    assert!(
        status.success(),
        "building the wasm32-wasip2 components failed (is the target installed? rust-toolchain.toml lists it)"
    );
    for (name, _, file) in CRATES {
        let path = target_dir
            .join("wasm32-wasip2")
            .join("release")
            .join(format!("{file}.wasm"));
        assert!(path.is_file(), "expected component {}", path.display());
        println!("cargo:rustc-env=HEALER_COMPONENT_{name}={}", path.display());
    }
}
