//! The WASI surface a policy gets, implemented by the host itself: stdio into
//! bounded buffers, virtual clocks, seeded randomness, an empty environment and
//! `exit`. Nothing here blocks, sleeps or touches the host: a `poll` or a sleep
//! advances the decision's virtual clock at once, or stops the decision when it
//! would wait past the deadline. Every other WASI import a component has
//! (filesystem, sockets, ...) is linked by [`deny`] to a stub that denies.
//!
//! Why not `wasmtime-wasi`: its synchronous bindings block on a tokio runtime
//! inside host calls (a guest panic's stderr flush panics the host when a
//! runtime is current; a guest sleep blocks a thread in real time past every
//! limit), and its context costs more to build than a decision takes. This
//! module must not grow capabilities: a policy is a pure function of its input.

mod cli;
pub(crate) mod deny;
mod io;

use sha2::{Digest, Sha256};
use wasmtime::component::{HasSelf, Linker};

use super::limits::PolicyLimits;

mod generated {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "healer:sandbox/wasi",
        imports: { default: trappable },
        with: {
            "wasi:io/poll.pollable": crate::policy::wasi::Pollable,
            "wasi:io/streams.input-stream": crate::policy::wasi::InputStream,
            "wasi:io/streams.output-stream": crate::policy::wasi::OutputStream,
            "wasi:io/error.error": crate::policy::wasi::IoError,
            "wasi:cli/terminal-input.terminal-input": crate::policy::wasi::TerminalInput,
            "wasi:cli/terminal-output.terminal-output": crate::policy::wasi::TerminalOutput,
        },
    });
}

pub(crate) use generated::wasi as bindings;

/// Resource type of `wasi:io/poll.pollable` (the host keeps its state by rep).
pub struct Pollable;
/// Resource type of `wasi:io/streams.input-stream`.
pub struct InputStream;
/// Resource type of `wasi:io/streams.output-stream`.
pub struct OutputStream;
/// Resource type of `wasi:io/error.error` (never created: streams only close).
pub struct IoError;
/// Resource type of `wasi:cli/terminal-input.terminal-input` (never created).
pub struct TerminalInput;
/// Resource type of `wasi:cli/terminal-output.terminal-output` (never created).
pub struct TerminalOutput;

/// Bytes of guest stderr kept to explain a trap (a Rust panic message lands there).
const STDERR_CAPTURE_BYTES: usize = 4096;
/// Largest single random-bytes request (a guest-chosen length the host allocates).
const MAX_RANDOM_BYTES: u64 = 64 << 10;

/// A host-side limit of the sandbox a policy ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxLimit {
    /// More live WASI handles (streams, pollables) than `max-handles`.
    Handles,
    /// More bytes written to stdout and stderr than `max-stdio-bytes`.
    Stdio,
    /// More data copied from the guest to the host in one call than the
    /// hostcall budget (sized from `max-output-bytes`).
    HostcallData,
    /// A random-bytes request larger than the host serves in one call.
    RandomBytes,
}

impl SandboxLimit {
    /// The limit's name as it appears in config and errors.
    pub fn name(self) -> &'static str {
        match self {
            SandboxLimit::Handles => "max-handles",
            SandboxLimit::Stdio => "max-stdio-bytes",
            SandboxLimit::HostcallData => "max-output-bytes",
            SandboxLimit::RandomBytes => "random-bytes",
        }
    }
}

impl std::fmt::Display for SandboxLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the sandbox stopped a decision from inside a WASI call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SandboxStop {
    /// A host-side limit.
    Limit(SandboxLimit, String),
    /// The guest would have waited (sleep, poll) past its deadline.
    Deadline,
    /// The guest called `exit`.
    Exit(u8),
    /// The guest broke the WASI contract (poll on nothing, a dead handle).
    Misuse(String),
    /// The guest called a WASI function outside the surface that has no
    /// denying answer (see [`deny`]).
    Denied(String),
}

/// What a host handle stands for. Resource reps index [`Handles`].
#[derive(Debug, Clone, Copy)]
enum Handle {
    /// A pollable ready once the virtual clock reaches this instant (ns).
    ReadyAt(u64),
    /// The closed stdin.
    Stdin,
    /// stdout or stderr.
    Output(Stdio),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stdio {
    Out,
    Err,
}

/// Live host handles of one decision, capped.
#[derive(Debug, Default)]
struct Handles {
    slots: Vec<Option<Handle>>,
    free: Vec<u32>,
    live: usize,
}

/// The per-decision WASI state: handles, virtual clocks, seeded random, stdio.
pub(crate) struct Sandbox {
    handles: Handles,
    max_handles: usize,
    /// Virtual monotonic time in ns since the decision started.
    mono_ns: u64,
    /// The decision's deadline on the virtual clock, ns.
    deadline_ns: u64,
    /// Wall-clock time of the decision, ns since the Unix epoch.
    wall_ns: u64,
    rng: u64,
    stdio_written: u64,
    max_stdio_bytes: u64,
    stderr: Vec<u8>,
    /// Set when a WASI call stopped the decision; the engine reports it.
    pub(crate) stop: Option<SandboxStop>,
}

impl Sandbox {
    /// A sandbox at virtual time `now_ms` with randomness seeded from `seed`.
    pub(crate) fn new(limits: &PolicyLimits, now_ms: u64, seed: &[u8]) -> Self {
        let digest = Sha256::digest(seed);
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        Sandbox {
            handles: Handles::default(),
            max_handles: limits.max_handles,
            mono_ns: 0,
            deadline_ns: limits.deadline_ms.saturating_mul(1_000_000),
            wall_ns: now_ms.saturating_mul(1_000_000),
            rng: u64::from_le_bytes(first),
            stdio_written: 0,
            max_stdio_bytes: limits.max_stdio_bytes,
            stderr: Vec::new(),
            stop: None,
        }
    }

    /// What the guest wrote to stderr (e.g. a panic message), trimmed.
    pub(crate) fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_owned()
    }

    /// Records why the decision stops and returns the trap that stops it.
    fn halt(&mut self, stop: SandboxStop) -> wasmtime::Error {
        let msg = match &stop {
            SandboxStop::Limit(limit, detail) => format!("sandbox limit {limit}: {detail}"),
            SandboxStop::Deadline => "the policy would wait past its deadline".to_owned(),
            SandboxStop::Exit(code) => format!("the policy called exit({code})"),
            SandboxStop::Misuse(what) => format!("WASI misuse: {what}"),
            SandboxStop::Denied(func) => format!("`{func}` is not available to policies"),
        };
        self.stop = Some(stop);
        wasmtime::Error::msg(msg)
    }

    fn insert(&mut self, handle: Handle) -> wasmtime::Result<u32> {
        if self.handles.live >= self.max_handles {
            let detail = format!("more than {} live WASI handles", self.max_handles);
            return Err(self.halt(SandboxStop::Limit(SandboxLimit::Handles, detail)));
        }
        self.handles.live += 1;
        if let Some(rep) = self.handles.free.pop() {
            if let Some(slot) = self.handles.slots.get_mut(rep as usize) {
                *slot = Some(handle);
            }
            return Ok(rep);
        }
        self.handles.slots.push(Some(handle));
        // Bounded by `max_handles`, far below u32::MAX.
        Ok(u32::try_from(self.handles.slots.len() - 1).unwrap_or(u32::MAX))
    }

    fn handle(&mut self, rep: u32) -> wasmtime::Result<Handle> {
        match self.handles.slots.get(rep as usize).copied().flatten() {
            Some(h) => Ok(h),
            None => Err(self.halt(SandboxStop::Misuse(format!("unknown handle {rep}")))),
        }
    }

    fn remove(&mut self, rep: u32) {
        if let Some(slot) = self.handles.slots.get_mut(rep as usize)
            && slot.take().is_some()
        {
            self.handles.live -= 1;
            self.handles.free.push(rep);
        }
    }

    /// Waits (virtually) until `at`: the clock jumps there, or the decision
    /// stops when `at` lies past the deadline.
    fn wait_until(&mut self, at: u64) -> wasmtime::Result<()> {
        if at > self.deadline_ns {
            return Err(self.halt(SandboxStop::Deadline));
        }
        self.mono_ns = self.mono_ns.max(at);
        Ok(())
    }

    /// Counts bytes written to stdio; stderr's first bytes are kept.
    fn write_bytes(&mut self, stream: Stdio, bytes: &[u8]) -> wasmtime::Result<()> {
        self.count_written(bytes.len() as u64)?;
        if stream == Stdio::Err && self.stderr.len() < STDERR_CAPTURE_BYTES {
            let room = STDERR_CAPTURE_BYTES - self.stderr.len();
            self.stderr
                .extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        Ok(())
    }

    fn count_written(&mut self, n: u64) -> wasmtime::Result<()> {
        self.stdio_written = self.stdio_written.saturating_add(n);
        if self.stdio_written > self.max_stdio_bytes {
            let detail = format!("more than {} bytes written to stdio", self.max_stdio_bytes);
            return Err(self.halt(SandboxStop::Limit(SandboxLimit::Stdio, detail)));
        }
        Ok(())
    }

    /// The next 64 pseudo-random bits (SplitMix64 from the decision's seed).
    fn next_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        if len > MAX_RANDOM_BYTES {
            let detail = format!("{len} random bytes asked, at most {MAX_RANDOM_BYTES} served");
            return Err(self.halt(SandboxStop::Limit(SandboxLimit::RandomBytes, detail)));
        }
        // Bounded by MAX_RANDOM_BYTES above.
        let len = len as usize;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let word = self.next_u64().to_le_bytes();
            let take = (len - out.len()).min(8);
            out.extend_from_slice(&word[..take]);
        }
        Ok(out)
    }
}

/// Links the sandbox's WASI surface into `linker`; `get` finds the sandbox in
/// the store data.
pub(crate) fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut Sandbox,
) -> wasmtime::Result<()> {
    generated::Wasi::add_to_linker::<T, HasSelf<Sandbox>>(linker, get)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox() -> Sandbox {
        Sandbox::new(&PolicyLimits::default(), 1_000, b"seed")
    }

    #[test]
    fn randomness_is_a_function_of_the_seed() {
        let a = sandbox().random_bytes(33).ok();
        let b = sandbox().random_bytes(33).ok();
        assert_eq!(a, b);
        let other = Sandbox::new(&PolicyLimits::default(), 1_000, b"other").random_bytes(33);
        assert_ne!(a, other.ok());
    }

    #[test]
    fn handles_are_capped_and_reused() {
        let mut s = sandbox();
        let reps: Vec<u32> = (0..s.max_handles)
            .map(|_| s.insert(Handle::Stdin).expect("under the cap"))
            .collect();
        assert!(s.insert(Handle::Stdin).is_err());
        assert!(matches!(
            s.stop,
            Some(SandboxStop::Limit(SandboxLimit::Handles, _))
        ));
        s.stop = None;
        s.remove(reps[3]);
        assert_eq!(s.insert(Handle::Stdin).ok(), Some(reps[3]));
    }

    #[test]
    fn a_wait_past_the_deadline_stops_and_a_short_one_moves_the_clock() {
        let mut s = sandbox();
        assert!(s.wait_until(5_000_000).is_ok());
        assert_eq!(s.mono_ns, 5_000_000);
        assert!(s.wait_until(30_000_000_000).is_err());
        assert_eq!(s.stop, Some(SandboxStop::Deadline));
    }

    #[test]
    fn stdio_is_counted_and_stderr_kept_bounded() {
        let mut s = sandbox();
        assert!(s.write_bytes(Stdio::Err, &[b'e'; 10_000]).is_ok());
        assert_eq!(s.stderr.len(), STDERR_CAPTURE_BYTES);
        let cap = s.max_stdio_bytes as usize;
        assert!(s.write_bytes(Stdio::Out, &vec![b'o'; cap]).is_err());
        assert!(matches!(
            s.stop,
            Some(SandboxStop::Limit(SandboxLimit::Stdio, _))
        ));
    }
}
