//! One module per top-level command.

pub mod approve;
pub mod chaos;
pub mod config;
pub mod decide;
pub mod heal;
pub mod health;
pub mod live;
pub mod normalize;
pub mod policy;
pub mod policy_remote;
pub mod poll;
pub mod remote;
pub mod replay;
pub mod revert;
pub mod run;
pub mod store;
pub mod work;

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Reads a file, or stdin when the path is `-`.
pub fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read stdin")?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

/// Parses a JSON file (kebab-case config types), or the type's default without one.
pub fn load_json<T: serde::de::DeserializeOwned + Default>(
    path: Option<&Path>,
    what: &str,
) -> anyhow::Result<T> {
    match path {
        Some(p) => serde_json::from_slice(&read_input(p)?)
            .with_context(|| format!("invalid {what} JSON in {}", p.display())),
        None => Ok(T::default()),
    }
}

/// Inline JSON from the environment (a config file's `[governor]` or
/// `[context]`), hidden from `--help`: what `run`, `heal`, `decide` and
/// `plan` read when no file is named.
#[derive(Debug, clap::Args)]
pub struct InlineJson {
    /// Governor limits as inline JSON.
    #[arg(long, env = "HEALER_GOVERNOR_JSON", hide = true)]
    pub governor_json: Option<String>,
    /// Policy context as inline JSON.
    #[arg(long, env = "HEALER_CONTEXT_JSON", hide = true)]
    pub context_json: Option<String>,
}

/// A config type from its file, else from inline JSON, else its default.
pub fn file_or_inline<T: serde::de::DeserializeOwned + Default>(
    path: Option<&Path>,
    inline: Option<&str>,
    what: &str,
) -> anyhow::Result<T> {
    match (path, inline) {
        (Some(_), _) | (None, None) => load_json(path, what),
        (None, Some(json)) => serde_json::from_str(json)
            .with_context(|| format!("invalid {what} JSON from the config file")),
    }
}

/// Loads a policy directory (or, without one, the example policies built into
/// the binary) into a new registry. Each file that fails is reported on stderr
/// (the others still load); no policy at all is an error. Returns the registry
/// and what loaded (`failed` empty when all did).
pub fn load_policies(
    engine: std::sync::Arc<healer::policy::PolicyEngine>,
    dir: Option<&Path>,
) -> anyhow::Result<(healer::policy::PolicyRegistry, healer::policy::LoadReport)> {
    let registry = healer::policy::PolicyRegistry::new(engine);
    let report = match dir {
        Some(dir) => registry
            .load_dir(dir)
            .with_context(|| format!("cannot read policy directory {}", dir.display()))?,
        None => registry.load_embedded(),
    };
    for (path, e) in &report.failed {
        eprintln!("error: {}: {e}", path.display());
    }
    if report.loaded.is_empty() {
        match dir {
            Some(dir) => anyhow::bail!("no policy loaded from {}", dir.display()),
            None => anyhow::bail!("no embedded policy loaded"),
        }
    }
    Ok((registry, report))
}

/// Parses an incident kind as the store and the policies spell it
/// (`task-crashed`).
pub fn incident_kind(k: &str) -> anyhow::Result<healer::IncidentKind> {
    serde_json::from_value(serde_json::Value::from(k))
        .with_context(|| format!("unknown incident kind {k:?}"))
}

/// Parses `--max-signals-per-payload`: a whole number, at least 1.
pub fn signal_cap(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "{s:?} is not a whole number of signals, at least 1"
        )),
    }
}

/// `decide` and `plan` never act: a governor config for live mode is refused.
pub fn dry_run_only(config: &healer::safety::GovernorConfig) -> anyhow::Result<()> {
    if !config.dry_run {
        anyhow::bail!(
            "`healer decide` and `healer plan` never act; to act, use `healer heal --live` or `healer run --live` (dry-run false in the governor config is not enough)"
        );
    }
    Ok(())
}

/// The default directory for precompiled policies: `$HEALER_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/healer`, else `$HOME/.cache/healer`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("HEALER_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("healer"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("healer"))
}

/// An error and its causes on one line, each cause said once: a cause whose
/// text the message already holds (a library error that prints its source
/// inside its own message, as `invalid incident JSON: {0}` does) is skipped.
pub fn error_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::error_line;

    #[test]
    fn each_cause_is_said_once() {
        let json = serde_json::from_slice::<serde_json::Value>(b"{not json")
            .map_err(healer::incident::IncidentError::Json)
            .expect_err("malformed");
        let cause = json.to_string();
        let e = anyhow::Error::new(json).context("cannot read incident.json");
        let line = error_line(&e);
        assert!(
            line.starts_with("cannot read incident.json: invalid incident JSON: "),
            "{line}"
        );
        let inner = "key must be a string";
        assert_eq!(line.matches(inner).count(), 1, "{line}");
        assert!(line.ends_with(&cause), "{line}");
        // Distinct causes are all kept.
        let e = anyhow::anyhow!("root").context("middle").context("top");
        assert_eq!(error_line(&e), "top: middle: root");
    }
}
