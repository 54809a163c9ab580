// Shared by the build scripts of `healer` (the example policies embedded in
// the binary) and `healer-test-artifacts` (those and the test guests):
// builds workspace crates for `wasm32-wasip2` in release mode with a nested
// cargo in its own target directory (so it never waits on the outer build's
// lock) and returns where the components are. Included with `include!`.

/// Builds `packages` and returns the directory holding `<crate>.wasm`.
fn build_components(root: &std::path::Path, packages: &[&str]) -> std::path::PathBuf {
    use std::path::PathBuf;
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
    // guest build across profiles and packages by going up to the target
    // directory. HEALER_WASM_TARGET_DIR overrides it, so two checkouts sharing
    // one CARGO_TARGET_DIR never overwrite each other's components.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
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
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(&target_dir);
    for package in packages {
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
    target_dir.join("wasm32-wasip2").join("release")
}
