//! The `healer` command line: parses arguments, sets up logging and hands off to
//! one command module. No logic lives here.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// healer: heal AWS workloads with sandboxed WebAssembly policies.
#[derive(Debug, Parser)]
#[command(name = "healer", version, about)]
struct Cli {
    /// TOML config file (see `healer config example`); flags and `HEALER_*`
    /// variables override it key by key.
    #[arg(long, global = true, env = "HEALER_CONFIG")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Evaluate, list and inspect policy components.
    #[command(subcommand)]
    Policy(cmd::policy::PolicyCommand),
    /// Normalize raw AWS payloads into incidents, recoveries or explained ignores (one JSON line each).
    Normalize(cmd::normalize::NormalizeArgs),
    /// Manage the store.
    #[command(subcommand)]
    Store(cmd::store::StoreCommand),
    /// Query recorded incidents.
    #[command(subcommand)]
    Incidents(cmd::store::IncidentsCommand),
    /// Normalize events, let the policies decide, judge every step with the
    /// governor and record it all in the store (dry run: executes nothing).
    Decide(cmd::decide::DecideArgs),
    /// What would healer do with these events, and why? Like `decide`, against
    /// the store's current state, but writes nothing.
    Plan(cmd::decide::DecideArgs),
    /// Run the service: long-poll SQS for events, decide, judge and record
    /// them, act and verify with `--live` (else dry run), and serve `/health`.
    /// Configured by flags or `HEALER_*` env.
    Run(Box<cmd::run::RunArgs>),
    /// One signal through every stage in the foreground: normalize, decide,
    /// judge, act (with `--live`; else print the requests it would send),
    /// verify; each step printed as it ends.
    Heal(Box<cmd::heal::HealArgs>),
    /// Undo what an incident's steps changed, where that can be undone (a
    /// function's environment variables); dry run unless `--live`.
    Revert(cmd::revert::RevertArgs),
    /// Probe a running service's `/health` (exit 0 on 200): the container health check.
    Health(cmd::health::HealthArgs),
    /// Approve the steps of an incident that wait for a human (on a running
    /// service: `--server URL --token T`).
    Approve(cmd::approve::AnswerArgs),
    /// Deny the steps of an incident that wait for a human.
    Deny(cmd::approve::AnswerArgs),
    /// Try a policy on history: run it on the exact inputs of the recorded
    /// decisions and report what it would have decided differently.
    Replay(cmd::replay::ReplayArgs),
    /// Compare a policy's shadow decisions with its active ones.
    #[command(subcommand)]
    Shadow(cmd::replay::ShadowCommand),
    /// Break things on purpose, for drills and demos: only resources tagged
    /// HealerChaos=true, a preview unless --yes, reverted after --duration.
    #[command(subcommand)]
    Chaos(cmd::chaos::ChaosCommand),
    /// Print or check the TOML config file.
    #[command(subcommand)]
    Config(cmd::config::ConfigCommand),
}

fn main() -> ExitCode {
    // The config file fills in the environment before anything reads it
    // (the log filter included).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(path) = cmd::config::config_path(&args)
        && let Err(e) = cmd::config::apply(&path, &args)
    {
        eprintln!("error: {}", cmd::error_line(&e));
        return ExitCode::from(2);
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("HEALER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colour only on a terminal; `HEALER_LOG_FORMAT=json` for log services
    // (the Fargate task sets it for CloudWatch Logs).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if std::env::var("HEALER_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
    let cli = Cli::parse();
    let _ = &cli.config; // read before parsing, above
    let result = match cli.command {
        Command::Policy(c) => cmd::policy::run(c),
        Command::Decide(a) => cmd::decide::run(a, true),
        Command::Plan(a) => cmd::decide::run(a, false),
        Command::Run(a) => cmd::run::run(*a),
        Command::Heal(a) => cmd::heal::run(*a),
        Command::Revert(a) => cmd::revert::run(a),
        Command::Health(a) => cmd::health::run(a),
        Command::Normalize(a) => cmd::normalize::run(a),
        Command::Store(c) => cmd::store::run_store(c),
        Command::Incidents(c) => cmd::store::run_incidents(c),
        Command::Config(c) => cmd::config::run(c),
        Command::Chaos(c) => cmd::chaos::run(c),
        Command::Replay(a) => cmd::replay::run(a),
        Command::Shadow(c) => cmd::replay::run_shadow(c),
        Command::Approve(a) => cmd::approve::run(a, true),
        Command::Deny(a) => cmd::approve::run(a, false),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", cmd::error_line(&error));
            ExitCode::FAILURE
        }
    }
}
