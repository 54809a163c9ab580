//! The per-decision store data: a locked-down WASI context, the memory limiter,
//! the virtual clock and the log buffer behind the `host` imports.
//!
//! One `DecisionState` lives in exactly one `Store`, which lives for exactly one
//! decision: nothing a policy does can leak into the next incident.

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{
    Deterministic, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView,
    WasiView,
};

use super::bindings::{Host, Level, TypesHost};
use super::limits::PolicyLimits;
use super::{LogLevel, LogLine};

/// Bytes of guest stderr kept to explain a trap (a Rust panic message lands there).
const STDERR_CAPTURE_BYTES: usize = 4096;

/// A wall clock frozen at the decision's virtual time.
struct FrozenWallClock(std::time::Duration);

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_millis(1)
    }
    fn now(&self) -> std::time::Duration {
        self.0
    }
}

/// A monotonic clock that never moves.
struct FrozenMonotonicClock;

impl HostMonotonicClock for FrozenMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Store data for one decision.
pub(crate) struct DecisionState {
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: MemoryOutputPipe,
    now_ms: u64,
    memory_cap: usize,
    max_log_lines: usize,
    max_log_line_bytes: usize,
    /// Set when the policy tried to grow memory past the cap: (cap, requested).
    pub(crate) memory_exceeded: Option<(usize, usize)>,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) logs_dropped: u32,
    policy_name: String,
}

impl DecisionState {
    /// A fresh state: no preopens, no env, no args, no sockets, closed stdin,
    /// frozen clocks at `now_ms` and randomness seeded from `seed`, so a decision
    /// replays exactly.
    pub(crate) fn new(limits: &PolicyLimits, now_ms: u64, seed: &[u8], policy_name: &str) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE_BYTES);
        let seed = if seed.is_empty() {
            vec![0]
        } else {
            seed.to_vec()
        };
        let mut builder = WasiCtxBuilder::new();
        builder
            .stderr(stderr.clone())
            .wall_clock(FrozenWallClock(std::time::Duration::from_millis(now_ms)))
            .monotonic_clock(FrozenMonotonicClock)
            .secure_random(Deterministic::new(seed.clone()))
            .insecure_random(Deterministic::new(seed))
            .insecure_random_seed(0)
            .max_random_size(4096)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        DecisionState {
            wasi: builder.build(),
            table: ResourceTable::new(),
            stderr,
            now_ms,
            memory_cap: limits.memory_bytes,
            max_log_lines: limits.max_log_lines,
            max_log_line_bytes: limits.max_log_line_bytes,
            memory_exceeded: None,
            logs: Vec::new(),
            logs_dropped: 0,
            policy_name: policy_name.to_owned(),
        }
    }

    /// What the guest wrote to stderr (e.g. a panic message), trimmed.
    pub(crate) fn stderr_text(&self) -> String {
        let bytes = self.stderr.contents();
        String::from_utf8_lossy(&bytes).trim().to_owned()
    }
}

impl WasiView for DecisionState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResourceLimiter for DecisionState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_exceeded = Some((self.memory_cap, desired));
            wasmtime::bail!("memory limit of {} bytes exceeded", self.memory_cap);
        }
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

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

impl TypesHost for DecisionState {}

impl Host for DecisionState {
    fn log(&mut self, level: Level, message: String) {
        if self.logs.len() >= self.max_log_lines {
            self.logs_dropped = self.logs_dropped.saturating_add(1);
            return;
        }
        let message = truncate(message, self.max_log_line_bytes);
        let policy = self.policy_name.as_str();
        let level = match level {
            Level::Trace => {
                tracing::trace!(policy, message = %message, "Policy log.");
                LogLevel::Trace
            }
            Level::Debug => {
                tracing::debug!(policy, message = %message, "Policy log.");
                LogLevel::Debug
            }
            Level::Info => {
                tracing::info!(policy, message = %message, "Policy log.");
                LogLevel::Info
            }
            Level::Warn => {
                tracing::warn!(policy, message = %message, "Policy log.");
                LogLevel::Warn
            }
            Level::Error => {
                tracing::error!(policy, message = %message, "Policy log.");
                LogLevel::Error
            }
        };
        self.logs.push(LogLine { level, message });
    }

    fn now(&mut self) -> u64 {
        self.now_ms
    }
}
