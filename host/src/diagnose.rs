//! Classifying what a diagnostics command found on an instance: ordered
//! rules over its output lines and exit code, first match wins, into one
//! [`Class`] with the lines that made it (the evidence). Pure: the
//! `run-diagnostics` step hands the SSM invocation's status and output here
//! and records the [`Diagnosis`]; the policy reads it when asked again.
//!
//! The built-in rules read the `HEALER <check> key=value…` lines of the
//! `healer-diagnose` SSM document (`infra/ssm/healer-diagnose.yaml`) and the
//! kernel and journal lines it quotes; operators replace them in config.
//! A command that never ran (no SSM agent, delivery or execution timed out)
//! is an agent failure whatever the rules say.

use regex_lite::Regex;
use serde::{Deserialize, Serialize};

/// What is wrong with the instance, as far as diagnostics can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// The service is down, not listening, or answering errors: restart it.
    Application,
    /// Out of memory or CPU: replace (or resize) the instance.
    ResourceBottleneck,
    /// The SSM agent (or another host agent) is not working.
    AgentFailure,
    /// The kernel is in trouble (lockups, hung tasks, panics).
    Os,
    /// The instance cannot reach its network (gateway, DNS).
    Network,
    /// A full or failing disk.
    Disk,
    /// Nothing matched.
    Unknown,
}

impl Class {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Application => "application",
            Class::ResourceBottleneck => "resource-bottleneck",
            Class::AgentFailure => "agent-failure",
            Class::Os => "os",
            Class::Network => "network",
            Class::Disk => "disk",
            Class::Unknown => "unknown",
        }
    }
}

/// How the SSM command invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommandStatus {
    /// It ran and exited 0.
    Success,
    /// It ran and exited non-zero.
    Failed,
    /// It ran past its execution timeout.
    ExecutionTimedOut,
    /// It never reached the instance (no agent, agent down, offline).
    Undelivered,
    /// Cancelled, access denied, wrong platform: no answer from the instance.
    NotRun,
}

impl CommandStatus {
    /// From `GetCommandInvocation`'s `Status` and `StatusDetails`.
    pub fn from_ssm(status: &str, details: &str) -> Self {
        match (status, details) {
            ("Success", _) => CommandStatus::Success,
            (_, "DeliveryTimedOut" | "Undeliverable" | "Terminated") => CommandStatus::Undelivered,
            (_, "ExecutionTimedOut") => CommandStatus::ExecutionTimedOut,
            ("TimedOut", _) => CommandStatus::Undelivered,
            ("Failed", _) => CommandStatus::Failed,
            _ => CommandStatus::NotRun,
        }
    }
}

/// What the diagnostics command returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// How it ended.
    pub status: CommandStatus,
    /// `ResponseCode` (`-1` or absent when it did not run).
    pub exit_code: Option<i32>,
    /// Standard output (SSM keeps the first 24 000 characters).
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// One rule as configured (`[[diagnose.rules]]`): the class it gives when
/// any pattern matches a line (and, if `exit-codes` is set, the exit code is
/// one of them). At least one of the two must be set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RuleSpec {
    /// A name for the record (`disk-full`).
    pub name: String,
    /// The class.
    pub class: Class,
    /// Regular expressions (`regex-lite` syntax: Rust's `regex` without
    /// Unicode classes), each tried on every line.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// Exit codes the rule requires.
    #[serde(default)]
    pub exit_codes: Vec<i32>,
}

/// A rule set that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// A pattern is not a regular expression.
    #[error("diagnose rule {rule}: bad pattern {pattern:?}: {source}")]
    Pattern {
        /// The rule.
        rule: String,
        /// The pattern.
        pattern: String,
        /// Why.
        #[source]
        source: regex_lite::Error,
    },
    /// A rule with neither patterns nor exit codes would match everything.
    #[error("diagnose rule {0}: needs patterns or exit-codes")]
    Empty(String),
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    class: Class,
    patterns: Vec<Regex>,
    exit_codes: Vec<i32>,
}

/// Ordered rules; see the module.
#[derive(Debug, Clone)]
pub struct Rules(Vec<Rule>);

/// The classification and what it rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Diagnosis {
    /// The class.
    pub class: Class,
    /// The rule that gave it (`None`: the command status, or nothing matched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The lines that made it, at most [`MAX_EVIDENCE`], each cut to
    /// [`MAX_LINE`] bytes.
    pub evidence: Vec<String>,
    /// How the command ended.
    pub status: CommandStatus,
}

/// Evidence lines kept.
pub const MAX_EVIDENCE: usize = 8;
/// Bytes kept of one evidence line.
pub const MAX_LINE: usize = 240;
/// Lines of output the rules read (SSM's output is bounded; this bounds a
/// configured source that is not).
pub const MAX_LINES: usize = 4000;

/// The built-in rules, in order: a full or failing disk and memory or CPU
/// exhaustion explain a dead service, so they come before it; so does a
/// broken kernel or network.
pub const BUILTIN: &[(&str, Class, &[&str])] = &[
    (
        "disk-full",
        Class::Disk,
        &[
            r"^HEALER (disk|inodes) .*used_pct=(9[5-9]|100)\b",
            r"(?i)no space left on device",
        ],
    ),
    (
        "disk-errors",
        Class::Disk,
        &[r"(?i)\b(i/o error|ext4-fs error|xfs.*(error|corrupt)|nvme.*timeout)"],
    ),
    (
        "memory",
        Class::ResourceBottleneck,
        &[
            r"^HEALER memory available_pct=[0-4]\b",
            r"(?i)out of memory|oom-kill",
        ],
    ),
    (
        "cpu",
        Class::ResourceBottleneck,
        &[r"^HEALER cpu .*load_per_cpu=([3-9]|[1-9][0-9]+)\."],
    ),
    (
        "kernel",
        Class::Os,
        &[r"(?i)soft lockup|hung_task|kernel panic|call trace"],
    ),
    (
        "ssm-agent",
        Class::AgentFailure,
        &[r"^HEALER agent name=amazon-ssm-agent active=(failed|inactive)"],
    ),
    (
        "network",
        Class::Network,
        &[
            r"^HEALER network .*reachable=false",
            r"^HEALER dns resolves=false",
        ],
    ),
    (
        "service",
        Class::Application,
        &[
            r"^HEALER service .*active=(failed|inactive|activating|deactivating|unknown)\b",
            r"^HEALER port .*listening=false",
            r"^HEALER http .*code=(5[0-9][0-9]|000)\b",
        ],
    ),
];

impl Rules {
    /// Compiles configured rules, in order.
    pub fn new(specs: &[RuleSpec]) -> Result<Self, RuleError> {
        let mut rules = Vec::with_capacity(specs.len());
        for s in specs {
            if s.patterns.is_empty() && s.exit_codes.is_empty() {
                return Err(RuleError::Empty(s.name.clone()));
            }
            let patterns = s
                .patterns
                .iter()
                .map(|p| {
                    Regex::new(p).map_err(|source| RuleError::Pattern {
                        rule: s.name.clone(),
                        pattern: p.clone(),
                        source,
                    })
                })
                .collect::<Result<_, _>>()?;
            rules.push(Rule {
                name: s.name.clone(),
                class: s.class,
                patterns,
                exit_codes: s.exit_codes.clone(),
            });
        }
        Ok(Rules(rules))
    }

    /// The built-in rules as specs (what `healer config example` shows).
    pub fn builtin_specs() -> Vec<RuleSpec> {
        BUILTIN
            .iter()
            .map(|(name, class, patterns)| RuleSpec {
                name: (*name).to_owned(),
                class: *class,
                patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
                exit_codes: Vec::new(),
            })
            .collect()
    }

    /// The built-in rules.
    pub fn builtin() -> Self {
        // The built-in patterns are constants, compiled in the tests.
        Rules::new(&Rules::builtin_specs()).unwrap_or(Rules(Vec::new()))
    }

    /// Classifies one command's output.
    pub fn classify(&self, out: &CommandOutput) -> Diagnosis {
        let verdict = |class, rule: Option<&str>, evidence: Vec<String>| Diagnosis {
            class,
            rule: rule.map(str::to_owned),
            evidence,
            status: out.status,
        };
        match out.status {
            CommandStatus::Undelivered | CommandStatus::ExecutionTimedOut => {
                let why = format!("SSM command {:?}: the agent did not answer", out.status);
                return verdict(Class::AgentFailure, None, vec![why]);
            }
            CommandStatus::NotRun => {
                return verdict(Class::Unknown, None, vec!["SSM command did not run".into()]);
            }
            CommandStatus::Success | CommandStatus::Failed => {}
        }
        let lines: Vec<&str> = out
            .stdout
            .lines()
            .chain(out.stderr.lines())
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .take(MAX_LINES)
            .collect();
        for rule in &self.0 {
            if !rule.exit_codes.is_empty()
                && !out.exit_code.is_some_and(|c| rule.exit_codes.contains(&c))
            {
                continue;
            }
            let mut evidence: Vec<String> = Vec::new();
            if rule.patterns.is_empty() {
                evidence.push(format!("exit code {}", out.exit_code.unwrap_or(-1)));
            } else {
                for l in lines
                    .iter()
                    .filter(|l| rule.patterns.iter().any(|p| p.is_match(l)))
                {
                    if evidence.len() == MAX_EVIDENCE {
                        break;
                    }
                    evidence.push(cut(l));
                }
                if evidence.is_empty() {
                    continue;
                }
            }
            return verdict(rule.class, Some(&rule.name), evidence);
        }
        verdict(Class::Unknown, None, Vec::new())
    }
}

/// `line`, cut to [`MAX_LINE`] bytes on a character boundary.
fn cut(line: &str) -> String {
    if line.len() <= MAX_LINE {
        return line.to_owned();
    }
    let mut end = MAX_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

#[cfg(test)]
mod tests;
