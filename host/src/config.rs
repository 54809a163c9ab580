//! One TOML file holding everything `healer run` reads from flags and
//! `HEALER_*` variables, plus the governor, channels, context (policy config
//! values) and routing priorities.
//!
//! Precedence, key by key: a flag, then its environment variable, then the
//! file, then the built-in default. The file is applied by filling in the
//! `HEALER_*` variables it names that are not already set, before the
//! command line is parsed, so every key is validated and defaulted by the
//! same code as its flag. Unknown keys are errors, reported with their line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::policy::PolicyContext;
use crate::safety::GovernorConfig;

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key or a wrong type: toml's message names
    /// the line, the column and the key.
    #[error("invalid config {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What and where.
        message: String,
    },
}

/// `[service]`: the process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Service {
    /// HTTP address (`HEALER_LISTEN`).
    pub listen: Option<SocketAddr>,
    /// SQS queue to long-poll (`HEALER_SQS_QUEUE_URL`).
    pub sqs_queue_url: Option<String>,
    /// Signals recorded from one payload (`HEALER_MAX_SIGNALS_PER_PAYLOAD`).
    pub max_signals_per_payload: Option<usize>,
    /// Seconds without a poll before `/health` says stuck (`HEALER_STUCK_AFTER_SECS`).
    pub stuck_after_secs: Option<u64>,
    /// Concurrent policy instances (`HEALER_MAX_CONCURRENT`).
    pub max_concurrent: Option<u32>,
}

/// `[policies]`: where policies come from and how they are routed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Policies {
    /// Directory of components (`HEALER_POLICIES`; default: the embedded ones).
    pub dir: Option<PathBuf>,
    /// Routing order (`HEALER_POLICY_PRIORITY`).
    pub priority: Option<Vec<String>>,
    /// Precompiled components (`HEALER_CACHE_DIR`).
    pub cache_dir: Option<PathBuf>,
    /// Pushed components by sha256 (`HEALER_POLICY_BLOBS`).
    pub blobs: Option<PathBuf>,
    /// Re-read interval of the persisted set and the directory (`HEALER_FOLLOW_INTERVAL_MS`).
    pub follow_interval_ms: Option<u64>,
    /// Largest uploaded component (`HEALER_MAX_POLICY_BYTES`).
    pub max_policy_bytes: Option<usize>,
    /// Settled incidents a new version is judged on (`HEALER_REGRESSION_GUARD_DECISIONS`; 0: off).
    pub regression_guard_decisions: Option<u64>,
    /// The guard's margin, a fraction (`HEALER_REGRESSION_GUARD_MARGIN`).
    pub regression_guard_margin: Option<f64>,
}

/// `[api]`: who may call the admin and ingestion routes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ApiSection {
    /// File holding the admin token (`HEALER_ADMIN_TOKEN_FILE`).
    pub admin_token_file: Option<PathBuf>,
    /// SNS topics `POST /events/sns` accepts (`HEALER_SNS_TOPICS`).
    pub sns_topics: Option<Vec<String>>,
    /// Oldest SNS message accepted (`HEALER_SNS_MAX_AGE_SECS`).
    pub sns_max_age_secs: Option<u64>,
}

/// `[store]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StoreSection {
    /// `sqlite` or `dynamodb` (`HEALER_STORE`).
    pub backend: Option<Backend>,
    /// SQLite data directory (`HEALER_DATA_DIR`).
    pub data_dir: Option<PathBuf>,
    /// DynamoDB table prefix (`HEALER_TABLE_PREFIX`).
    pub table_prefix: Option<String>,
}

/// A store backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// DynamoDB tables.
    Dynamodb,
}

/// `[live]`: acting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LiveSection {
    /// Act through the AWS APIs (`HEALER_LIVE`).
    pub enabled: Option<bool>,
    /// Default notification topic (`HEALER_NOTIFY_DEFAULT`).
    pub notify_default: Option<String>,
    /// Worker tasks (`HEALER_WORKERS`).
    pub workers: Option<usize>,
    /// Sweep interval (`HEALER_DRIVE_INTERVAL_MS`).
    pub drive_interval_ms: Option<u64>,
    /// Step deadline (`HEALER_STEP_DEADLINE_SECS`).
    pub step_deadline_secs: Option<u64>,
    /// Verification deadline (`HEALER_VERIFY_DEADLINE_SECS`).
    pub verify_deadline_secs: Option<u64>,
    /// Settle time before recovery counts (`HEALER_VERIFY_SETTLE_SECS`).
    pub verify_settle_secs: Option<u64>,
    /// Most rounds per incident (`HEALER_MAX_ROUNDS`).
    pub max_rounds: Option<usize>,
    /// Lease length (`HEALER_LEASE_SECS`).
    pub lease_secs: Option<u64>,
    /// Launch deadline of a replacement instance (`HEALER_LAUNCH_DEADLINE_SECS`).
    pub launch_deadline_secs: Option<u64>,
}

/// `[facts]`: what the governor reads about resources.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FactsSection {
    /// Read tags and group sizes from the AWS APIs (`HEALER_AWS_FACTS`).
    pub aws: Option<bool>,
    /// Operator facts JSON file (`HEALER_FACTS`).
    pub file: Option<PathBuf>,
}

/// `[pollers]`: target health and instance status checks, off by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PollersSection {
    /// Target group ARNs to poll (`HEALER_POLL_TARGET_GROUPS`).
    pub target_groups: Option<Vec<String>>,
    /// Load balancers whose every group is polled (`HEALER_POLL_LOAD_BALANCERS`).
    pub load_balancers: Option<Vec<String>>,
    /// Seconds between target rounds (`HEALER_POLL_TARGETS_INTERVAL_SECS`).
    pub targets_interval_secs: Option<f64>,
    /// Poll opted-in instances' status checks (`HEALER_POLL_INSTANCES`).
    pub instances: Option<bool>,
    /// Seconds between instance rounds (`HEALER_POLL_INSTANCES_INTERVAL_SECS`).
    pub instances_interval_secs: Option<f64>,
    /// Jitter, a fraction of the interval (`HEALER_POLL_JITTER`).
    pub jitter: Option<f64>,
    /// Calls a second per API (`HEALER_POLL_RATE`).
    pub rate_per_sec: Option<f64>,
    /// Calls at once per API (`HEALER_POLL_BURST`).
    pub burst: Option<u32>,
    /// Transitions that make flapping (`HEALER_FLAP_TRANSITIONS`).
    pub flap_transitions: Option<u32>,
    /// The flapping window (`HEALER_FLAP_WINDOW_SECS`).
    pub flap_window_secs: Option<u64>,
}

/// `[log]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LogSection {
    /// Filter, e.g. `healer=info` (`HEALER_LOG`).
    pub filter: Option<String>,
    /// `text` or `json` (`HEALER_LOG_FORMAT`).
    pub format: Option<LogFormat>,
}

/// A log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ConfigFile {
    /// `[service]`.
    #[serde(default)]
    pub service: Service,
    /// `[policies]`.
    #[serde(default)]
    pub policies: Policies,
    /// `[api]`.
    #[serde(default)]
    pub api: ApiSection,
    /// `[store]`.
    #[serde(default)]
    pub store: StoreSection,
    /// `[live]`.
    #[serde(default)]
    pub live: LiveSection,
    /// `[channels]`: notification topics by channel name (`HEALER_CHANNELS_JSON`).
    #[serde(default)]
    pub channels: BTreeMap<String, String>,
    /// `[facts]`.
    #[serde(default)]
    pub facts: FactsSection,
    /// `[pollers]`.
    #[serde(default)]
    pub pollers: PollersSection,
    /// `[diagnose]`: what the SSM steps may run and how diagnostics are
    /// classified (`HEALER_DIAGNOSE_JSON`).
    pub diagnose: Option<crate::actions::DiagnoseConfig>,
    /// `[policy-limits]`: default, ceiling and per-policy limits of the
    /// policies (`HEALER_POLICY_LIMITS_JSON`).
    pub policy_limits: Option<crate::policy::LimitsConfig>,
    /// `[governor]`: the governor's limits (`HEALER_GOVERNOR_JSON`).
    pub governor: Option<GovernorConfig>,
    /// `[context]`: the policy context of every incident, with the policies'
    /// config values under `[context.config]` (`HEALER_CONTEXT_JSON`).
    pub context: Option<PolicyContext>,
    /// `[log]`.
    #[serde(default)]
    pub log: LogSection,
}

/// The variables a config file sets, as (name, value), in a fixed order.
pub type EnvPairs = Vec<(&'static str, String)>;

fn push<T: ToString>(out: &mut EnvPairs, name: &'static str, v: &Option<T>) {
    if let Some(v) = v {
        out.push((name, v.to_string()));
    }
}

fn push_path(out: &mut EnvPairs, name: &'static str, v: &Option<PathBuf>) {
    if let Some(v) = v {
        out.push((name, v.display().to_string()));
    }
}

fn json<T: Serialize>(v: &Option<T>) -> Option<String> {
    v.as_ref().and_then(|v| serde_json::to_string(v).ok())
}

impl ConfigFile {
    /// Parses and validates a file's text.
    pub fn parse(path: &std::path::Path, text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Every `HEALER_*` variable the file sets.
    pub fn env(&self) -> EnvPairs {
        let mut out = EnvPairs::new();
        let s = &self.service;
        push(&mut out, "HEALER_LISTEN", &s.listen);
        push(&mut out, "HEALER_SQS_QUEUE_URL", &s.sqs_queue_url);
        push(
            &mut out,
            "HEALER_MAX_SIGNALS_PER_PAYLOAD",
            &s.max_signals_per_payload,
        );
        push(&mut out, "HEALER_STUCK_AFTER_SECS", &s.stuck_after_secs);
        push(&mut out, "HEALER_MAX_CONCURRENT", &s.max_concurrent);
        let p = &self.policies;
        push_path(&mut out, "HEALER_POLICIES", &p.dir);
        push(
            &mut out,
            "HEALER_POLICY_PRIORITY",
            &p.priority.as_ref().map(|v| v.join(",")),
        );
        push_path(&mut out, "HEALER_CACHE_DIR", &p.cache_dir);
        push_path(&mut out, "HEALER_POLICY_BLOBS", &p.blobs);
        push(&mut out, "HEALER_FOLLOW_INTERVAL_MS", &p.follow_interval_ms);
        push(&mut out, "HEALER_MAX_POLICY_BYTES", &p.max_policy_bytes);
        push(
            &mut out,
            "HEALER_REGRESSION_GUARD_DECISIONS",
            &p.regression_guard_decisions,
        );
        push(
            &mut out,
            "HEALER_REGRESSION_GUARD_MARGIN",
            &p.regression_guard_margin,
        );
        push_path(
            &mut out,
            "HEALER_ADMIN_TOKEN_FILE",
            &self.api.admin_token_file,
        );
        let topics = self.api.sns_topics.as_ref().map(|v| v.join(","));
        push(&mut out, "HEALER_SNS_TOPICS", &topics);
        push(
            &mut out,
            "HEALER_SNS_MAX_AGE_SECS",
            &self.api.sns_max_age_secs,
        );
        let st = &self.store;
        push(
            &mut out,
            "HEALER_STORE",
            &st.backend.map(|b| match b {
                Backend::Sqlite => "sqlite",
                Backend::Dynamodb => "dynamodb",
            }),
        );
        push_path(&mut out, "HEALER_DATA_DIR", &st.data_dir);
        push(&mut out, "HEALER_TABLE_PREFIX", &st.table_prefix);
        let l = &self.live;
        push(&mut out, "HEALER_LIVE", &l.enabled);
        push(&mut out, "HEALER_NOTIFY_DEFAULT", &l.notify_default);
        push(&mut out, "HEALER_WORKERS", &l.workers);
        push(&mut out, "HEALER_DRIVE_INTERVAL_MS", &l.drive_interval_ms);
        push(&mut out, "HEALER_STEP_DEADLINE_SECS", &l.step_deadline_secs);
        push(
            &mut out,
            "HEALER_VERIFY_DEADLINE_SECS",
            &l.verify_deadline_secs,
        );
        push(&mut out, "HEALER_VERIFY_SETTLE_SECS", &l.verify_settle_secs);
        push(&mut out, "HEALER_MAX_ROUNDS", &l.max_rounds);
        push(&mut out, "HEALER_LEASE_SECS", &l.lease_secs);
        push(
            &mut out,
            "HEALER_LAUNCH_DEADLINE_SECS",
            &l.launch_deadline_secs,
        );
        if !self.channels.is_empty() {
            push(
                &mut out,
                "HEALER_CHANNELS_JSON",
                &serde_json::to_string(&self.channels).ok(),
            );
        }
        let po = &self.pollers;
        let join = |v: &Option<Vec<String>>| v.as_ref().map(|v| v.join(","));
        push(
            &mut out,
            "HEALER_POLL_TARGET_GROUPS",
            &join(&po.target_groups),
        );
        push(
            &mut out,
            "HEALER_POLL_LOAD_BALANCERS",
            &join(&po.load_balancers),
        );
        push(
            &mut out,
            "HEALER_POLL_TARGETS_INTERVAL_SECS",
            &po.targets_interval_secs,
        );
        push(&mut out, "HEALER_POLL_INSTANCES", &po.instances);
        push(
            &mut out,
            "HEALER_POLL_INSTANCES_INTERVAL_SECS",
            &po.instances_interval_secs,
        );
        push(&mut out, "HEALER_POLL_JITTER", &po.jitter);
        push(&mut out, "HEALER_POLL_RATE", &po.rate_per_sec);
        push(&mut out, "HEALER_POLL_BURST", &po.burst);
        push(&mut out, "HEALER_FLAP_TRANSITIONS", &po.flap_transitions);
        push(&mut out, "HEALER_FLAP_WINDOW_SECS", &po.flap_window_secs);
        push(&mut out, "HEALER_AWS_FACTS", &self.facts.aws);
        push_path(&mut out, "HEALER_FACTS", &self.facts.file);
        push(&mut out, "HEALER_DIAGNOSE_JSON", &json(&self.diagnose));
        push(
            &mut out,
            "HEALER_POLICY_LIMITS_JSON",
            &json(&self.policy_limits),
        );
        push(&mut out, "HEALER_GOVERNOR_JSON", &json(&self.governor));
        push(&mut out, "HEALER_CONTEXT_JSON", &json(&self.context));
        push(&mut out, "HEALER_LOG", &self.log.filter);
        push(
            &mut out,
            "HEALER_LOG_FORMAT",
            &self.log.format.map(|f| match f {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            }),
        );
        out
    }

    /// The variables to set: the file's, except those the environment
    /// already sets (it overrides the file key by key), and except a file's
    /// inline JSON where the environment names a file for the same thing.
    pub fn env_to_set(&self, is_set: impl Fn(&str) -> bool) -> EnvPairs {
        let shadowed_by = |name: &str| match name {
            "HEALER_GOVERNOR_JSON" => Some("HEALER_GOVERNOR"),
            "HEALER_CONTEXT_JSON" => Some("HEALER_CONTEXT"),
            "HEALER_ADMIN_TOKEN_FILE" => Some("HEALER_ADMIN_TOKEN"),
            _ => None,
        };
        self.env()
            .into_iter()
            .filter(|(name, _)| !is_set(name) && !shadowed_by(name).is_some_and(&is_set))
            .collect()
    }
}

/// The documented example: every key with its default (commented where the
/// default is "unset"). `healer config example` prints it; it parses.
pub const EXAMPLE: &str = include_str!("config_example.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses_and_names_every_section() {
        let c =
            ConfigFile::parse(std::path::Path::new("example"), EXAMPLE).expect("example parses");
        assert!(c.governor.is_some());
        let env = c.env();
        for name in [
            "HEALER_LISTEN",
            "HEALER_STORE",
            "HEALER_LIVE",
            "HEALER_GOVERNOR_JSON",
            "HEALER_SNS_MAX_AGE_SECS",
            "HEALER_POLL_TARGETS_INTERVAL_SECS",
            "HEALER_POLL_INSTANCES",
            "HEALER_FLAP_TRANSITIONS",
        ] {
            assert!(
                env.iter().any(|(n, _)| *n == name),
                "{name} missing from {env:?}"
            );
        }
        // The example's governor is the default governor.
        assert_eq!(c.governor, Some(GovernorConfig::default()));
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_line() {
        let p = std::path::Path::new("healer.toml");
        let e = ConfigFile::parse(p, "[service]\nlisten = \"127.0.0.1:9\"\ncolour = 1\n")
            .expect_err("unknown key");
        let text = e.to_string();
        assert!(text.contains("line 3") && text.contains("colour"), "{text}");
        let e = ConfigFile::parse(p, "[governor]\nmax-in-flight = \"many\"\n").expect_err("type");
        let text = e.to_string();
        assert!(
            text.contains("line 2") && text.contains("max-in-flight"),
            "{text}"
        );
        let e = ConfigFile::parse(p, "[service]\nlisten = \"nowhere\"\n").expect_err("addr");
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn the_environment_overrides_the_file_key_by_key() {
        let c = ConfigFile::parse(
            std::path::Path::new("t"),
            "[service]\nlisten = \"0.0.0.0:9\"\nmax-concurrent = 4\n[governor]\ndry-run = true\n",
        )
        .expect("parses");
        let set = c.env_to_set(|n| n == "HEALER_LISTEN" || n == "HEALER_GOVERNOR");
        assert_eq!(set, vec![("HEALER_MAX_CONCURRENT", "4".to_owned())]);
    }
}
