//! `healer policy eval|list`: run a policy component on one incident, or load a
//! directory of components and show what is in it (or, with `--server`, what
//! a running service runs). The commands that change a running service's
//! policies are in `policy_remote`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use healer::Incident;
use healer::policy::{
    LimitsConfig, PolicyContext, PolicyEngine, PolicyLimits, PolicyRegistry, PolicyRole,
};

use super::policy_remote::Named;
use super::{default_cache_dir, read_input};

/// Policy commands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Run one policy on one incident and print the outcome as one JSON object.
    Eval(EvalArgs),
    /// List the policies of a directory, or (with `--server`) of a running service.
    List(ListArgs),
    /// Upload a component to a running service and make it the active version
    /// of its name on every replica.
    Push(super::policy_remote::PushArgs),
    /// Upload a component to run in shadow beside the active version.
    Shadow(super::policy_remote::PushArgs),
    /// Stop the shadow version of a policy.
    Unshadow(super::policy_remote::NameArgs),
    /// Make the shadow version of a policy the active one.
    Activate(super::policy_remote::NameArgs),
    /// Reactivate the version active before the current one.
    Rollback(super::policy_remote::NameArgs),
    /// Stop running a policy on every replica.
    Retire(super::policy_remote::NameArgs),
}

/// Engine options shared by the policy commands.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Directory of precompiled components [default: $HEALER_CACHE_DIR, else ~/.cache/healer].
    #[arg(long, env = "HEALER_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not read or write the precompile cache.
    #[arg(long)]
    no_cache: bool,
    /// Fuel per decision.
    #[arg(long)]
    fuel: Option<u64>,
    /// Wall-clock deadline per decision, in milliseconds.
    #[arg(long)]
    deadline_ms: Option<u64>,
    /// Linear memory cap per decision, in bytes.
    #[arg(long)]
    memory_bytes: Option<usize>,
    /// Default, ceiling and per-policy limits as JSON (`[policy-limits]` of
    /// the config file): `{"defaults": {..}, "ceiling": {..}, "policies": {"NAME": {..}}}`.
    #[arg(long, env = "HEALER_POLICY_LIMITS_JSON")]
    policy_limits_json: Option<String>,
    /// Routing order when several active policies handle an incident's
    /// kind, comma-separated names: they decide in this order (others follow
    /// by name) and the first whose decision proposes steps acts.
    #[arg(long, env = "HEALER_POLICY_PRIORITY", value_delimiter = ',')]
    policy_priority: Vec<String>,
}

impl EngineArgs {
    /// Applies the configured routing order to a loaded registry.
    pub fn route(&self, registry: &healer::policy::PolicyRegistry) {
        let names: Vec<String> = self
            .policy_priority
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        if !names.is_empty() {
            registry.set_priority(names);
        }
    }

    pub fn engine(&self, max_concurrent: u32) -> anyhow::Result<std::sync::Arc<PolicyEngine>> {
        let mut config: LimitsConfig = match &self.policy_limits_json {
            Some(json) => {
                serde_json::from_str(json).context("invalid HEALER_POLICY_LIMITS_JSON")?
            }
            None => LimitsConfig::default(),
        };
        // The flags win over the configured defaults.
        let defaults = PolicyLimits::default().with(&std::mem::take(&mut config.defaults));
        let limits = PolicyLimits {
            fuel: self.fuel.unwrap_or(defaults.fuel),
            deadline_ms: self.deadline_ms.unwrap_or(defaults.deadline_ms),
            memory_bytes: self.memory_bytes.unwrap_or(defaults.memory_bytes),
            max_concurrent,
            ..defaults
        };
        let cache = if self.no_cache {
            None
        } else {
            self.cache_dir.clone().or_else(default_cache_dir)
        };
        Ok(PolicyEngine::with_config(limits, &config, cache)?)
    }
}

/// Arguments of `policy eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The policy component (`.wasm`).
    #[arg(long)]
    policy: PathBuf,
    /// Incident JSON file, or `-` for stdin.
    #[arg(long)]
    incident: PathBuf,
    /// Context JSON file (tags, history, config), or `-` for stdin.
    #[arg(long)]
    context: Option<PathBuf>,
    /// The decision's virtual time (RFC 3339) [default: now].
    #[arg(long)]
    now: Option<DateTime<Utc>>,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Arguments of `policy list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Directory of policy components (or `--server`).
    #[arg(required_unless_present = "server")]
    dir: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: super::remote::ServerArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Runs a policy command.
pub fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Eval(a) => eval(a),
        PolicyCommand::List(a) => list(a),
        PolicyCommand::Push(a) => super::policy_remote::push(a, false),
        PolicyCommand::Shadow(a) => super::policy_remote::push(a, true),
        PolicyCommand::Unshadow(a) => super::policy_remote::named(a, Named::Unshadow),
        PolicyCommand::Activate(a) => super::policy_remote::named(a, Named::Activate),
        PolicyCommand::Rollback(a) => super::policy_remote::named(a, Named::Rollback),
        PolicyCommand::Retire(a) => super::policy_remote::named(a, Named::Retire),
    }
}

fn eval(a: EvalArgs) -> anyhow::Result<ExitCode> {
    if a.context.as_deref() == Some(std::path::Path::new("-"))
        && a.incident == std::path::Path::new("-")
    {
        anyhow::bail!("--incident and --context cannot both read stdin");
    }
    let bytes = read_input(&a.policy)?;
    let incident = Incident::from_json(&read_input(&a.incident)?)
        .with_context(|| format!("cannot use incident {}", a.incident.display()))?;
    let context: PolicyContext = match &a.context {
        Some(p) => serde_json::from_slice(&read_input(p)?)
            .with_context(|| format!("invalid context JSON in {}", p.display()))?,
        None => PolicyContext::default(),
    };
    let engine = a.engine.engine(2)?;
    let policy = engine
        .load(&bytes)
        .with_context(|| format!("cannot load policy {}", a.policy.display()))?;
    if !policy.metadata.handles.contains(&incident.kind) {
        tracing::warn!(policy = %policy.id.name, kind = %incident.kind, "The policy does not declare this incident kind; evaluating anyway.");
    }
    let outcome = engine.decide(&policy, &incident, &context, a.now.unwrap_or_else(Utc::now));
    println!("{}", serde_json::to_string(&outcome)?);
    match &outcome.result {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!(
                "error: {} ({}): {e}",
                outcome.policy.name,
                a.policy.display()
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let Some(dir) = &a.dir else {
        return super::policy_remote::list(&a.server, a.json);
    };
    let registry = PolicyRegistry::new(a.engine.engine(2)?);
    let failed = registry
        .load_dir(dir)
        .with_context(|| format!("cannot read policy directory {}", dir.display()))?
        .failed;
    let entries = registry.list();
    if a.json {
        let failed: Vec<_> = failed
            .iter()
            .map(|(p, e)| serde_json::json!({"file": p.display().to_string(), "error": e.to_string()}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"policies": entries, "failed": failed})
            )?
        );
    } else {
        println!(
            "{:<24} {:<10} {:<6} {:<14} {:>8}  HANDLES",
            "NAME", "VERSION", "WORLD", "SHA256", "BYTES"
        );
        for e in &entries {
            for v in e
                .versions
                .iter()
                .filter(|v| v.role == Some(PolicyRole::Active))
            {
                let handles: Vec<_> = e.handles.iter().map(|k| k.as_str()).collect();
                println!(
                    "{:<24} {:<10} {:<6} {:<14} {:>8}  {}",
                    e.name,
                    v.version,
                    v.world,
                    &v.sha256[..12],
                    v.size,
                    handles.join(",")
                );
            }
        }
        for (p, e) in &failed {
            eprintln!("error: {}: {e}", p.display());
        }
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
