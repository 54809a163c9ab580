//! `healer decide`: load a directory of policies and let every policy that handles
//! each incident decide on it. Nothing is executed: this shows the plans.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::Utc;
use clap::Args;
use healer::Incident;
use healer::policy::{PolicyContext, PolicyRegistry};

use super::policy::EngineArgs;
use super::read_input;

/// Arguments of `decide`.
#[derive(Debug, Args)]
pub struct DecideArgs {
    /// Directory of policy components (`*.wasm`).
    #[arg(long, env = "HEALER_POLICIES")]
    policies: PathBuf,
    /// Context JSON applied to every incident.
    #[arg(long)]
    context: Option<PathBuf>,
    /// Incident JSON files or directories of them; `-` reads stdin.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
}

fn expand(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut files: Vec<_> = std::fs::read_dir(input)
                .with_context(|| format!("cannot read {}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(input.clone());
        }
    }
    Ok(out)
}

fn decide_one(
    registry: &PolicyRegistry,
    path: &Path,
    context: &PolicyContext,
) -> anyhow::Result<serde_json::Value> {
    let incident = Incident::from_json(&read_input(path)?)?;
    let decisions = registry.decide(&incident, context, Utc::now());
    Ok(serde_json::json!({
        "input": path.display().to_string(),
        "incident": incident,
        "decisions": decisions,
        "dry-run": true,
    }))
}

/// Runs `decide`; exit 1 if any input or policy failed.
pub fn run(a: DecideArgs) -> anyhow::Result<ExitCode> {
    let context: PolicyContext = match &a.context {
        Some(p) => serde_json::from_slice(&read_input(p)?)
            .with_context(|| format!("invalid context JSON in {}", p.display()))?,
        None => PolicyContext::default(),
    };
    let registry = PolicyRegistry::new(a.engine.engine(4)?);
    let (loaded, failed) = registry
        .load_dir(&a.policies)
        .with_context(|| format!("cannot read policy directory {}", a.policies.display()))?;
    let mut ok = failed.is_empty();
    for (path, e) in &failed {
        eprintln!("error: {}: {e}", path.display());
    }
    if loaded.is_empty() {
        anyhow::bail!("no policy loaded from {}", a.policies.display());
    }
    for path in expand(&a.inputs)? {
        match decide_one(&registry, &path, &context) {
            Ok(v) => {
                let failed_policy = v["decisions"]["active"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|o| o.get("error").is_some()));
                ok &= !failed_policy;
                println!("{v}");
            }
            Err(e) => {
                ok = false;
                println!(
                    "{}",
                    serde_json::json!({"input": path.display().to_string(), "error": format!("{e:#}")})
                );
                eprintln!("error: {}: {e:#}", path.display());
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
