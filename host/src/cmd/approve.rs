//! `healer approve ID` / `healer deny ID`: answer the steps the approval rule
//! holds, on a running service (`--server URL --token T`).

use std::process::ExitCode;

use clap::Args;
use hyper::Method;

use super::remote::{ServerArgs, call_blocking};

/// Arguments of `approve` and `deny`.
#[derive(Debug, Args)]
pub struct AnswerArgs {
    /// The incident id (`inc-…`).
    id: String,
    #[command(flatten)]
    server: ServerArgs,
}

/// Approves (`true`) or denies the held steps of an incident.
pub fn run(a: AnswerArgs, approve: bool) -> anyhow::Result<ExitCode> {
    let verb = if approve { "approve" } else { "deny" };
    let path = format!("/incidents/{}/{verb}", a.id);
    let out = call_blocking(
        &a.server,
        Method::POST,
        &path,
        Vec::new(),
        "application/json",
    )?;
    println!(
        "{} {}",
        out["incident"]["id"].as_str().unwrap_or(&a.id),
        out["state"].as_str().unwrap_or("?")
    );
    for v in out["verdicts"].as_array().into_iter().flatten() {
        println!(
            "  step {}: {} ({})",
            v["step"],
            v["verdict"].as_str().unwrap_or("?"),
            v["reason"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}
