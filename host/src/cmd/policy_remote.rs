//! `healer policy push|shadow|activate|rollback|retire` and `policy list
//! --server`: the policy routes of a running service, from the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use hyper::Method;

use super::read_input;
use super::remote::{ServerArgs, call_blocking};

/// Arguments of `policy push` and `policy shadow`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The policy component (`.wasm`), or `-` for stdin.
    file: PathBuf,
    #[command(flatten)]
    server: ServerArgs,
}

/// Arguments of the commands that name a policy.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The policy's name.
    name: String,
    #[command(flatten)]
    server: ServerArgs,
}

/// Uploads a component as the active (or shadow) version of its name.
pub fn push(a: PushArgs, shadow: bool) -> anyhow::Result<ExitCode> {
    let bytes = read_input(&a.file)?;
    let path = if shadow {
        "/policies?role=shadow"
    } else {
        "/policies"
    };
    let out = call_blocking(&a.server, Method::POST, path, bytes, "application/wasm")?;
    let p = &out["policy"];
    println!(
        "{} {}@{} ({}) sha256 {}: swap {:.1} ms (compile {:.1} ms){}",
        if shadow { "shadowing" } else { "active" },
        p["name"].as_str().unwrap_or("?"),
        p["version"].as_str().unwrap_or("?"),
        out["world"].as_str().unwrap_or("?"),
        p["sha256"].as_str().unwrap_or("?"),
        out["swap-ms"].as_f64().unwrap_or(0.0),
        out["compile-ms"].as_f64().unwrap_or(0.0),
        if out["changed"].as_bool() == Some(false) {
            ", already in place"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// What a named-policy command asks the server for.
#[derive(Debug, Clone, Copy)]
pub enum Named {
    /// `POST /policies/{name}/rollback`.
    Rollback,
    /// `POST /policies/{name}/activate`.
    Activate,
    /// `DELETE /policies/{name}/shadow`.
    Unshadow,
    /// `DELETE /policies/{name}`.
    Retire,
}

/// Runs a named-policy command.
pub fn named(a: NameArgs, what: Named) -> anyhow::Result<ExitCode> {
    let name = &a.name;
    let (method, path) = match what {
        Named::Rollback => (Method::POST, format!("/policies/{name}/rollback")),
        Named::Activate => (Method::POST, format!("/policies/{name}/activate")),
        Named::Unshadow => (Method::DELETE, format!("/policies/{name}/shadow")),
        Named::Retire => (Method::DELETE, format!("/policies/{name}")),
    };
    let out = call_blocking(&a.server, method, &path, Vec::new(), "application/json")?;
    match what {
        Named::Rollback | Named::Activate => {
            let p = &out["active"];
            println!(
                "active {}@{} sha256 {}",
                p["name"].as_str().unwrap_or("?"),
                p["version"].as_str().unwrap_or("?"),
                p["sha256"].as_str().unwrap_or("?")
            );
        }
        Named::Unshadow => println!("{name}: no shadow"),
        Named::Retire => println!("{name}: retired"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `policy list --server`: what the service runs.
pub fn list(server: &ServerArgs, json: bool) -> anyhow::Result<ExitCode> {
    let out = call_blocking(
        server,
        Method::GET,
        "/policies",
        Vec::new(),
        "application/json",
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<10} {:<7} {:<6} {:<14} {:>9} {:>7}",
        "NAME", "VERSION", "ROLE", "WORLD", "SHA256", "DECISIONS", "ERRORS"
    );
    let empty = Vec::new();
    for e in out["policies"].as_array().unwrap_or(&empty) {
        for v in e["versions"].as_array().unwrap_or(&empty) {
            let Some(role) = v["role"].as_str() else {
                continue;
            };
            let sha = v["sha256"].as_str().unwrap_or("?");
            println!(
                "{:<24} {:<10} {:<7} {:<6} {:<14} {:>9} {:>7}",
                e["name"].as_str().unwrap_or("?"),
                v["version"].as_str().unwrap_or("?"),
                role,
                v["world"].as_str().unwrap_or("?"),
                sha.get(..12).unwrap_or(sha),
                v["decisions"].as_u64().unwrap_or(0),
                v["errors"].as_u64().unwrap_or(0),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
