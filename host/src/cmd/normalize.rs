//! `healer normalize`: raw AWS payloads in, one JSON line per signal out.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Args;
use healer::signals::{DEFAULT_MAX_SIGNALS, NormalizeOptions, normalize};

use super::read_input;

/// Arguments of `normalize`.
#[derive(Debug, Args)]
pub struct NormalizeArgs {
    /// Input files; `-` (the default) reads stdin.
    inputs: Vec<PathBuf>,
    /// Receive time used when a payload has no time of its own [default: now].
    #[arg(long)]
    received_at: Option<DateTime<Utc>>,
    /// Target group ARN for ELBv2 DescribeTargetHealth responses.
    #[arg(long)]
    target_group: Option<String>,
    /// Largest accepted input in bytes.
    #[arg(long, default_value_t = 6 << 20)]
    max_input_bytes: usize,
    /// Most nested JSON-in-string decodes.
    #[arg(long, default_value_t = 4)]
    max_depth: u32,
    /// Most signals one input yields; the rest are counted in one final
    /// `{"truncated":{"dropped":N,"limit":…}}` line.
    #[arg(long, default_value_t = DEFAULT_MAX_SIGNALS,
        value_parser = super::signal_cap)]
    max_signals_per_payload: usize,
}

/// Runs `normalize`: exit 1 if any input errored, 0 otherwise.
pub fn run(a: NormalizeArgs) -> anyhow::Result<ExitCode> {
    let mut opts = NormalizeOptions::new(a.received_at.unwrap_or_else(Utc::now));
    opts.target_group = a.target_group;
    opts.max_input_bytes = a.max_input_bytes;
    opts.max_depth = a.max_depth;
    opts.max_signals = a.max_signals_per_payload;
    let inputs = if a.inputs.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        a.inputs
    };
    let mut failed = false;
    for input in &inputs {
        let name = input.display().to_string();
        let result = read_input(input)
            .map_err(|e| format!("{e:#}"))
            .and_then(|bytes| normalize(&bytes, &opts).map_err(|e| e.to_string()));
        match result {
            Ok(signals) => {
                for s in signals {
                    println!("{}", serde_json::to_string(&s)?);
                }
            }
            Err(message) => {
                failed = true;
                println!(
                    "{}",
                    serde_json::json!({"error": {"input": name, "message": message}})
                );
                eprintln!("error: {name}: {message}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
