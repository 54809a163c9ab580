//! Per-decision limits the host enforces on every policy call, with their defaults.
//!
//! A policy is untrusted code: every decision runs in a fresh store under a fuel
//! budget, a wall-clock deadline (epoch interruption), a linear-memory cap and an
//! output-size cap. Violations become a recorded `PolicyError`, never a host crash.

use serde::{Deserialize, Serialize};

use super::LogLevel;

/// Limits applied to every policy call. All fields have documented defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct PolicyLimits {
    /// Fuel per decision (roughly one unit per Wasm instruction), including
    /// instantiation. Default 50 000 000: a few tens of milliseconds of work,
    /// three orders of magnitude above what the example policies use. Fuel is
    /// deterministic, so a decision that fits replays the same way.
    pub fuel: u64,
    /// Wall-clock deadline per decision in milliseconds (epoch interruption).
    /// Default 100. Backstop for time spent outside fuel accounting (host calls).
    pub deadline_ms: u64,
    /// Linear memory cap per decision in bytes. Default 16 MiB.
    pub memory_bytes: usize,
    /// Largest accepted decision in bytes (strings plus 32 bytes per step).
    /// Default 64 KiB.
    pub max_output_bytes: usize,
    /// Most steps a decision may carry. Default 32.
    pub max_steps: usize,
    /// Most log lines kept per decision; later lines are counted and dropped.
    /// Default 64.
    pub max_log_lines: usize,
    /// Longest log line kept, in bytes; longer lines are truncated. Default 2 KiB.
    pub max_log_line_bytes: usize,
    /// Core Wasm instances the component may contain (a Rust wasip2
    /// component has a handful, a componentize-py one 14). Default 16.
    pub core_instances: u32,
    /// Decisions that may run at once (sizes the pooling allocator). Default 64.
    pub max_concurrent: u32,
    /// Largest Wasm stack in bytes. Default 512 KiB.
    pub max_wasm_stack: usize,
    /// Most WASI handles (streams, pollables) a decision may hold at once.
    /// Default 256; an interpreter holds a handful.
    pub max_handles: usize,
    /// Most bytes a decision may write to stdout and stderr together; the
    /// first 4 KiB of stderr are kept to explain a trap. Default 1 MiB.
    pub max_stdio_bytes: u64,
    /// Highest level at which policy log lines reach the host's log (the
    /// recorded line keeps the policy's own level). Default `info`, so a
    /// policy cannot raise host alerts through error logs.
    pub max_log_level: LogLevel,
}

impl Default for PolicyLimits {
    fn default() -> Self {
        PolicyLimits {
            fuel: 50_000_000,
            deadline_ms: 100,
            memory_bytes: 16 << 20,
            max_output_bytes: 64 << 10,
            max_steps: 32,
            core_instances: 16,
            max_log_lines: 64,
            max_log_line_bytes: 2 << 10,
            max_concurrent: 64,
            max_wasm_stack: 512 << 10,
            max_handles: 256,
            max_stdio_bytes: 1 << 20,
            max_log_level: LogLevel::Info,
        }
    }
}

/// Milliseconds between two epoch ticks of the engine's deadline clock.
pub(crate) const EPOCH_TICK_MS: u64 = 2;

impl PolicyLimits {
    /// The deadline expressed in epoch ticks (at least one).
    pub(crate) fn deadline_ticks(&self) -> u64 {
        self.deadline_ms.div_ceil(EPOCH_TICK_MS).max(1)
    }

    /// Bytes the guest may hand the host in one call (a host import's
    /// arguments, or the lifted result of `decide` / `metadata`): twice the
    /// output cap plus room for the records around the strings. Without it a
    /// guest returning many strings that alias one buffer makes the host copy
    /// each of them (wasmtime's default budget is 128 MiB per call).
    pub(crate) fn hostcall_bytes(&self) -> usize {
        self.max_output_bytes
            .saturating_mul(2)
            .saturating_add(64 << 10)
    }

    /// Live component-model handles a decision's store may hold (wasmtime's
    /// default is 100 000); the host's own WASI handles are capped lower by
    /// `max-handles`.
    pub(crate) fn component_handles(&self) -> usize {
        self.max_handles.saturating_mul(4).max(1024)
    }

    /// Checks the limits make sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.fuel == 0 {
            return Err("policy limit `fuel` must be > 0".into());
        }
        if self.deadline_ms == 0 {
            return Err("policy limit `deadline-ms` must be > 0".into());
        }
        if self.memory_bytes < (1 << 20) {
            return Err("policy limit `memory-bytes` must be at least 1 MiB".into());
        }
        if self.max_concurrent == 0 {
            return Err("policy limit `max-concurrent` must be > 0".into());
        }
        if self.core_instances == 0 {
            return Err("policy limit `core-instances` must be > 0".into());
        }
        if self.max_handles < 8 {
            return Err("policy limit `max-handles` must be at least 8".into());
        }
        // Above 1 MiB, guest recursion could reach the native stack's guard
        // page of a 2 MiB tokio worker before the wasm limit.
        if self.max_wasm_stack < (64 << 10) || self.max_wasm_stack > (1 << 20) {
            return Err("policy limit `max-wasm-stack` must be between 64 KiB and 1 MiB".into());
        }
        Ok(())
    }
}

/// The limits that may differ from one policy to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LimitName {
    /// Fuel per decision.
    Fuel,
    /// Wall-clock deadline per decision, ms.
    DeadlineMs,
    /// Linear memory cap, bytes.
    MemoryBytes,
    /// Core Wasm instances the component may contain.
    CoreInstances,
    /// Largest accepted decision, bytes.
    MaxOutputBytes,
    /// Most steps per decision.
    MaxSteps,
}

impl LimitName {
    /// Every per-policy limit.
    pub const ALL: [LimitName; 6] = [
        LimitName::Fuel,
        LimitName::DeadlineMs,
        LimitName::MemoryBytes,
        LimitName::CoreInstances,
        LimitName::MaxOutputBytes,
        LimitName::MaxSteps,
    ];

    /// The key in config files and the API (`memory-bytes`).
    pub fn as_str(self) -> &'static str {
        match self {
            LimitName::Fuel => "fuel",
            LimitName::DeadlineMs => "deadline-ms",
            LimitName::MemoryBytes => "memory-bytes",
            LimitName::CoreInstances => "core-instances",
            LimitName::MaxOutputBytes => "max-output-bytes",
            LimitName::MaxSteps => "max-steps",
        }
    }

    /// The key named `key`, if it is one.
    pub fn parse(key: &str) -> Option<LimitName> {
        LimitName::ALL.into_iter().find(|n| n.as_str() == key)
    }
}

impl std::fmt::Display for LimitName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Some of the per-policy limits: what a toolchain needs, what a component
/// declares, what an operator sets for one policy, or a ceiling.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LimitOverride {
    /// Fuel per decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Deadline per decision, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Linear memory cap, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Core Wasm instances the component may contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_instances: Option<u64>,
    /// Largest accepted decision, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
    /// Most steps per decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u64>,
}

impl LimitOverride {
    /// The value set for `name`.
    pub fn get(&self, name: LimitName) -> Option<u64> {
        match name {
            LimitName::Fuel => self.fuel,
            LimitName::DeadlineMs => self.deadline_ms,
            LimitName::MemoryBytes => self.memory_bytes,
            LimitName::CoreInstances => self.core_instances,
            LimitName::MaxOutputBytes => self.max_output_bytes,
            LimitName::MaxSteps => self.max_steps,
        }
    }

    /// Sets `name`.
    pub fn set(&mut self, name: LimitName, value: Option<u64>) {
        let slot = match name {
            LimitName::Fuel => &mut self.fuel,
            LimitName::DeadlineMs => &mut self.deadline_ms,
            LimitName::MemoryBytes => &mut self.memory_bytes,
            LimitName::CoreInstances => &mut self.core_instances,
            LimitName::MaxOutputBytes => &mut self.max_output_bytes,
            LimitName::MaxSteps => &mut self.max_steps,
        };
        *slot = value;
    }

    /// The limits set, in [`LimitName::ALL`] order.
    pub fn entries(&self) -> impl Iterator<Item = (LimitName, u64)> + '_ {
        LimitName::ALL
            .into_iter()
            .filter_map(|n| self.get(n).map(|v| (n, v)))
    }

    /// Nothing set.
    pub fn is_empty(&self) -> bool {
        self.entries().next().is_none()
    }

    /// From `key = value` pairs (a persisted record), ignoring unknown keys
    /// (a newer replica's) and returning them.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a String, &'a u64)>,
    ) -> (LimitOverride, Vec<String>) {
        let mut out = LimitOverride::default();
        let mut unknown = Vec::new();
        for (k, v) in pairs {
            match LimitName::parse(k) {
                Some(n) => out.set(n, Some(*v)),
                None => unknown.push(k.clone()),
            }
        }
        (out, unknown)
    }

    /// As `key = value` pairs.
    pub fn to_pairs(&self) -> std::collections::BTreeMap<String, u64> {
        self.entries()
            .map(|(n, v)| (n.as_str().to_owned(), v))
            .collect()
    }
}

/// `[policy-limits]` (`HEALER_POLICY_LIMITS_JSON`): the defaults every policy
/// decides under, the most any policy may get, and limits per policy name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Replaces the built-in defaults (raised per toolchain, see
    /// [`super::profile::Toolchain`]).
    pub defaults: LimitOverride,
    /// Replaces the built-in ceiling: a component that declares more, or an
    /// operator limit above it, is refused with the limit named. Sizes the
    /// instance pool.
    pub ceiling: LimitOverride,
    /// Limits by policy name; they win over the defaults and over what the
    /// component declares.
    pub policies: std::collections::BTreeMap<String, LimitOverride>,
}

impl PolicyLimits {
    /// The built-in ceiling: what a policy may be given at most.
    pub fn builtin_ceiling() -> PolicyLimits {
        PolicyLimits {
            fuel: 1_000_000_000,
            deadline_ms: 2_000,
            memory_bytes: 128 << 20,
            core_instances: 32,
            max_output_bytes: 1 << 20,
            max_steps: 256,
            ..PolicyLimits::default()
        }
    }

    /// The value of a per-policy limit.
    pub fn get(&self, name: LimitName) -> u64 {
        let widen = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        match name {
            LimitName::Fuel => self.fuel,
            LimitName::DeadlineMs => self.deadline_ms,
            LimitName::MemoryBytes => widen(self.memory_bytes),
            LimitName::CoreInstances => u64::from(self.core_instances),
            LimitName::MaxOutputBytes => widen(self.max_output_bytes),
            LimitName::MaxSteps => widen(self.max_steps),
        }
    }

    /// Sets a per-policy limit (saturating where the field is narrower).
    pub fn set(&mut self, name: LimitName, value: u64) {
        let narrow = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        match name {
            LimitName::Fuel => self.fuel = value,
            LimitName::DeadlineMs => self.deadline_ms = value,
            LimitName::MemoryBytes => self.memory_bytes = narrow(value),
            LimitName::CoreInstances => {
                self.core_instances = u32::try_from(value).unwrap_or(u32::MAX);
            }
            LimitName::MaxOutputBytes => self.max_output_bytes = narrow(value),
            LimitName::MaxSteps => self.max_steps = narrow(value),
        }
    }

    /// These limits with every limit `o` sets replaced.
    pub fn with(&self, o: &LimitOverride) -> PolicyLimits {
        let mut out = self.clone();
        for (n, v) in o.entries() {
            out.set(n, v);
        }
        out
    }

    /// The per-policy limits above `ceiling`'s, with both values.
    pub fn above(&self, ceiling: &PolicyLimits) -> Option<(LimitName, u64, u64)> {
        LimitName::ALL
            .into_iter()
            .map(|n| (n, self.get(n), ceiling.get(n)))
            .find(|(_, v, max)| v > max)
    }

    /// The per-policy limits, as an override setting every one.
    pub fn budget(&self) -> LimitOverride {
        let mut o = LimitOverride::default();
        for n in LimitName::ALL {
            o.set(n, Some(self.get(n)));
        }
        o
    }
}
