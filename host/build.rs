//! Builds the example policies (`policies/`) for `wasm32-wasip2` and embeds
//! them in the binary: the default policy set `healer run`, `plan`, `decide`
//! and `heal` use when no `--policies` directory is given.

use std::path::{Path, PathBuf};

include!("build/wasm.rs");

/// (package, crate file name, embedded file name).
const EMBEDDED: &[(&str, &str, &str)] = &[
    (
        "ecs-task-restart",
        "ecs_task_restart",
        "ecs-task-restart.wasm",
    ),
    ("ec2-replace", "ec2_replace", "ec2-replace.wasm"),
    (
        "lambda-failure-rate",
        "lambda_failure_rate",
        "lambda-failure-rate.wasm",
    ),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .expect("host/ lives below the workspace root");
    let packages: Vec<&str> = EMBEDDED.iter().map(|(p, _, _)| *p).collect();
    let dir = build_components(&root, &packages);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let mut table = String::from("&[\n");
    for (_, file, name) in EMBEDDED {
        let built = dir.join(format!("{file}.wasm"));
        let copy = out_dir.join(name);
        std::fs::copy(&built, &copy)
            .unwrap_or_else(|e| panic!("cannot copy {}: {e}", built.display()));
        table.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            copy.display().to_string()
        ));
    }
    table.push(']');
    std::fs::write(out_dir.join("embedded_policies.rs"), table).expect("write embedded table");
}
