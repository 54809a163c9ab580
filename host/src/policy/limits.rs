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
