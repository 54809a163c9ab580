//! The per-decision store data: a locked-down WASI context, the memory limiter,
//! the virtual clock and the log buffer behind the `host` imports.
//!
//! One `DecisionState` lives in exactly one `Store`, which lives for exactly one
//! decision: nothing a policy does can leak into the next incident.

use wasmtime::ResourceLimiter;

use super::limits::PolicyLimits;
use super::text::sanitize;
use super::wasi::Sandbox;
use super::{LogLevel, LogLine};

/// Store data for one decision.
pub(crate) struct DecisionState {
    /// The decision's WASI surface (virtual clocks, seeded random, stdio).
    pub(crate) sandbox: Sandbox,
    now_ms: u64,
    memory_cap: usize,
    /// Bytes of linear memory across every memory of the decision's instances.
    memory_total: usize,
    max_log_lines: usize,
    max_log_line_bytes: usize,
    max_log_level: LogLevel,
    /// Set when the policy tried to grow memory past the cap: (cap, requested).
    pub(crate) memory_exceeded: Option<(usize, usize)>,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) logs_dropped: u32,
    policy_name: String,
}

impl DecisionState {
    /// A fresh state: no preopens, no env, no args, no sockets, closed stdin,
    /// virtual clocks at `now_ms` and randomness seeded from `seed`, so a
    /// decision replays exactly.
    pub(crate) fn new(limits: &PolicyLimits, now_ms: u64, seed: &[u8], policy_name: &str) -> Self {
        DecisionState {
            sandbox: Sandbox::new(limits, now_ms, seed),
            now_ms,
            memory_cap: limits.memory_bytes,
            memory_total: 0,
            max_log_lines: limits.max_log_lines,
            max_log_line_bytes: limits.max_log_line_bytes,
            max_log_level: limits.max_log_level,
            memory_exceeded: None,
            logs: Vec::new(),
            logs_dropped: 0,
            policy_name: policy_name.to_owned(),
        }
    }

    /// What the guest wrote to stderr (e.g. a panic message), trimmed.
    pub(crate) fn stderr_text(&self) -> String {
        self.sandbox.stderr_text()
    }
}

impl ResourceLimiter for DecisionState {
    /// The cap holds for the sum of every memory of the decision (a component
    /// may hold several core instances, each with its own memory).
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .memory_total
            .saturating_sub(current)
            .saturating_add(desired);
        if total > self.memory_cap {
            self.memory_exceeded = Some((self.memory_cap, total));
            wasmtime::bail!("memory limit of {} bytes exceeded", self.memory_cap);
        }
        self.memory_total = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl DecisionState {
    /// The `host.log` import of every world version: keeps the line (bounded,
    /// escaped) at the level the policy chose, and emits it to the host's log
    /// at most at `max-log-level` (default info), so a policy cannot page
    /// anyone through the host's error logs.
    pub(crate) fn log_line(&mut self, level: LogLevel, message: String) {
        if self.logs.len() >= self.max_log_lines {
            self.logs_dropped = self.logs_dropped.saturating_add(1);
            return;
        }
        let message = sanitize(&message, self.max_log_line_bytes);
        let policy = self.policy_name.as_str();
        match level.min(self.max_log_level) {
            LogLevel::Trace => tracing::trace!(policy, message = %message, "Policy log."),
            LogLevel::Debug => tracing::debug!(policy, message = %message, "Policy log."),
            LogLevel::Info => tracing::info!(policy, message = %message, "Policy log."),
            LogLevel::Warn => tracing::warn!(policy, message = %message, "Policy log."),
            LogLevel::Error => tracing::error!(policy, message = %message, "Policy log."),
        }
        self.logs.push(LogLine { level, message });
    }

    /// The `host.now` import: the decision's virtual time.
    pub(crate) fn now_ms(&self) -> u64 {
        self.now_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_log_level_is_clamped_to_info_by_default() {
        let mut s = DecisionState::new(&PolicyLimits::default(), 0, b"", "p");
        s.log_line(LogLevel::Error, "boom".into());
        assert_eq!(s.logs[0].level, LogLevel::Error);
        assert_eq!(LogLevel::Error.min(s.max_log_level), LogLevel::Info);
    }
}
