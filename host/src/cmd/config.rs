//! `healer config example|check` and `--config`: the TOML config file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use healer::config::{ConfigFile, EXAMPLE};

/// Config commands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a documented config with every default.
    Example,
    /// Validate a config file (unknown keys and bad values name their line)
    /// and print the variables it sets.
    Check {
        /// The file.
        file: PathBuf,
    },
}

/// Runs a config command.
pub fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Example => print!("{EXAMPLE}"),
        ConfigCommand::Check { file } => {
            let config = ConfigFile::load(&file)?;
            for (name, value) in config.env() {
                let shown = if name.contains("TOKEN") {
                    "(set)"
                } else {
                    value.as_str()
                };
                println!("{name}={shown}");
            }
            eprintln!("{}: ok", file.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The config file named by `--config FILE` / `--config=FILE` on the command
/// line, else by `HEALER_CONFIG`.
pub fn config_path(args: &[std::ffi::OsString]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let Some(a) = a.to_str() else { continue };
        if a == "--" {
            break;
        }
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    std::env::var_os("HEALER_CONFIG").map(PathBuf::from)
}

/// Loads the config file and fills in the `HEALER_*` variables it sets that
/// the environment does not, so the command line parser (flags, then
/// environment, then defaults) sees them. Call before any thread starts.
pub fn apply(path: &Path, args: &[std::ffi::OsString]) -> anyhow::Result<()> {
    let config = ConfigFile::load(path)?;
    // A governor or context file given as a flag counts as set, like its
    // variable: the file's inline table then stays out of the way.
    let flag = |f: &str| {
        args.iter()
            .filter_map(|a| a.to_str())
            .any(|a| a == f || a.strip_prefix(f).is_some_and(|rest| rest.starts_with('=')))
    };
    let is_set = |n: &str| {
        std::env::var_os(n).is_some()
            || (n == "HEALER_GOVERNOR" && flag("--governor"))
            || (n == "HEALER_CONTEXT" && flag("--context"))
            || (n == "HEALER_ADMIN_TOKEN" && flag("--admin-token"))
    };
    for (name, value) in config.env_to_set(is_set) {
        // SAFETY: called from `main` before the runtime or any other thread
        // starts, so nothing reads the environment concurrently.
        unsafe { std::env::set_var(name, value) };
    }
    Ok(())
}
