//! The one wasmtime engine every policy runs on, and the per-decision call path.
//!
//! A policy version is compiled once into a `Component` and pre-linked into a
//! `HealingPolicyPre`; each decision gets a fresh `Store` and instance from the
//! pooling allocator, under fuel, an epoch deadline and a memory cap.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

use super::bindings::Pre;
use super::cache::PrecompileCache;
use super::context::PolicyContext;
use super::limits::{EPOCH_TICK_MS, LimitOverride, LimitsConfig, PolicyLimits};
use super::profile::{self, Profile, Resolved};
use super::state::DecisionState;
use super::text::sanitize;
use super::wasi::{Sandbox, SandboxLimit, SandboxStop};
use super::{DecisionOutcome, PolicyError, PolicyId, PolicyMetadata};
use crate::decision::Decision;
use crate::incident::Incident;

/// Bounds on what `metadata()` may return (it is stored and listed by the API).
const MAX_METADATA_KINDS: usize = 64;
const MAX_CONFIG_FIELDS: usize = 64;
const MAX_CONFIG_NAME_BYTES: usize = 128;
const MAX_CONFIG_TEXT_BYTES: usize = 1024;
/// Bytes of each memory and table slot kept resident between decisions.
const KEEP_RESIDENT_BYTES: usize = 256 << 10;
/// Memories / tables per component.
const MAX_MEMORIES_PER_COMPONENT: u32 = 2;
const MAX_TABLES_PER_COMPONENT: u32 = 4;

/// One compiled policy version, ready to instantiate.
pub struct LoadedPolicy {
    /// Identity (name and version from metadata, sha256 of the bytes).
    pub id: PolicyId,
    /// What the policy said about itself at load time.
    pub metadata: PolicyMetadata,
    /// Size of the component in bytes.
    pub size: usize,
    /// What its bytes say: toolchain, core instances, declared limits.
    pub profile: Profile,
    /// Decisions it made and how many of them failed, since it was loaded.
    pub counters: DecisionCounters,
    pre: Pre,
}

/// How often one loaded version decided and failed (trap, limit, error).
#[derive(Debug, Default)]
pub struct DecisionCounters {
    decisions: std::sync::atomic::AtomicU64,
    errors: std::sync::atomic::AtomicU64,
}

impl DecisionCounters {
    /// Counts one decision, failed or not.
    pub fn count(&self, failed: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        self.decisions.fetch_add(1, Relaxed);
        if failed {
            self.errors.fetch_add(1, Relaxed);
        }
    }

    /// Decisions since load.
    pub fn decisions(&self) -> u64 {
        self.decisions.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Failed decisions since load.
    pub fn errors(&self) -> u64 {
        self.errors.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl LoadedPolicy {
    /// The `healer:policy` world version the component implements (`0.2.0`).
    pub fn world(&self) -> &'static str {
        self.pre.world()
    }
}

impl std::fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicy")
            .field("id", &self.id)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// The policy engine: a configured wasmtime `Engine`, the host linker, limits and
/// an optional precompile cache. Cheap to share behind an `Arc`.
pub struct PolicyEngine {
    engine: Engine,
    linker: Linker<DecisionState>,
    /// What a policy decides under unless its toolchain, its declaration or
    /// the operator says otherwise.
    limits: PolicyLimits,
    /// The most any policy may get; sizes the pool.
    ceiling: PolicyLimits,
    /// Limits by policy name from the configuration.
    configured: std::collections::BTreeMap<String, LimitOverride>,
    /// Limits by policy name set through the admin API (persisted with the
    /// policy set and followed by every replica); they win over `configured`.
    set_by_api: std::sync::RwLock<std::collections::BTreeMap<String, LimitOverride>>,
    cache: Option<PrecompileCache>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Where the sandbox lives in the store data.
fn sandbox_of(state: &mut DecisionState) -> &mut Sandbox {
    &mut state.sandbox
}

/// sha256 of bytes, hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn host_err(e: impl std::fmt::Display) -> PolicyError {
    PolicyError::Host(e.to_string())
}

impl PolicyEngine {
    /// Builds the engine with the given limits; `cache_dir` enables the on-disk
    /// precompile cache. Starts the epoch ticker thread, which stops when the
    /// engine is dropped.
    pub fn new(limits: PolicyLimits, cache_dir: Option<PathBuf>) -> Result<Arc<Self>, PolicyError> {
        Self::with_config(limits, &LimitsConfig::default(), cache_dir)
    }

    /// Builds the engine with default limits `limits` (changed by
    /// `config.defaults`), the ceiling (built in, raised to the defaults,
    /// changed by `config.ceiling`) and limits per policy name.
    pub fn with_config(
        limits: PolicyLimits,
        limits_config: &LimitsConfig,
        cache_dir: Option<PathBuf>,
    ) -> Result<Arc<Self>, PolicyError> {
        let limits = limits.with(&limits_config.defaults);
        limits.validate().map_err(PolicyError::Host)?;
        let mut ceiling = PolicyLimits::builtin_ceiling();
        for n in super::LimitName::ALL {
            ceiling.set(n, ceiling.get(n).max(limits.get(n)));
        }
        let ceiling = ceiling.with(&limits_config.ceiling);
        if let Some((n, v, max)) = limits.above(&ceiling) {
            return Err(PolicyError::Host(format!(
                "the default {n} = {v} is above the ceiling's {max} ([policy-limits])"
            )));
        }
        for (name, o) in &limits_config.policies {
            if let Some((n, v, max)) = PolicyLimits::default().with(o).above(&ceiling) {
                return Err(PolicyError::Host(format!(
                    "[policy-limits.policies.{name}] {n} = {v} is above the ceiling's {max}"
                )));
            }
        }
        let mut pool = PoolingAllocationConfig::new();
        let n = limits.max_concurrent;
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(ceiling.core_instances))
            .total_memories(n.saturating_mul(MAX_MEMORIES_PER_COMPONENT))
            .total_tables(n.saturating_mul(MAX_TABLES_PER_COMPONENT))
            .max_core_instances_per_component(ceiling.core_instances)
            .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
            .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
            .max_memory_size(ceiling.memory_bytes)
            .max_unused_warm_slots(n)
            // Reset a reused slot with memset instead of madvise: no page faults
            // on the next decision and no mmap-lock contention across threads.
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_BYTES);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(limits.max_wasm_stack)
            // No wasm backtraces: their frames carry guest-chosen names into
            // host errors. Deterministic floats: NaN bits and relaxed SIMD
            // give the same result on x86 and aarch64, so decisions replay.
            .wasm_backtrace_max_frames(None)
            .cranelift_nan_canonicalization(true)
            .relaxed_simd_deterministic(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(host_err)?;

        let mut linker = Linker::new(&engine);
        super::wasi::add_to_linker(&mut linker, sandbox_of).map_err(host_err)?;
        Pre::add_to_linker(&mut linker).map_err(host_err)?;

        spawn_epoch_ticker(&engine);
        let cache = cache_dir.map(|dir| PrecompileCache::new(dir, &engine));
        Ok(Arc::new(PolicyEngine {
            engine,
            linker,
            limits,
            ceiling,
            configured: limits_config.policies.clone(),
            set_by_api: std::sync::RwLock::default(),
            cache,
        }))
    }

    /// The default limits a decision runs under.
    pub fn limits(&self) -> &PolicyLimits {
        &self.limits
    }

    /// Precompile cache (hits, misses) since start; `None` without a cache.
    pub fn cache_stats(&self) -> Option<(u64, u64)> {
        self.cache.as_ref().map(PrecompileCache::stats)
    }

    /// The most any policy may be given.
    pub fn ceiling(&self) -> &PolicyLimits {
        &self.ceiling
    }

    /// The operator's limits for policy `name`: the configured ones with
    /// those set through the API on top.
    pub fn operator_limits(&self, name: &str) -> Option<LimitOverride> {
        let api = self
            .set_by_api
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = self.configured.get(name).cloned();
        if let Some(a) = api.get(name) {
            let o = out.get_or_insert_with(LimitOverride::default);
            for (n, v) in a.entries() {
                o.set(n, Some(v));
            }
        }
        out
    }

    /// Checks an operator's limits for one policy against the ceiling.
    pub fn check_operator_limits(&self, o: &LimitOverride) -> Result<(), PolicyError> {
        match self.limits.with(o).above(&self.ceiling) {
            Some((limit, needs, allowed)) => Err(PolicyError::LimitRefused {
                limit,
                needs,
                allowed,
                why: "set for this policy by the operator; the ceiling is [policy-limits.ceiling]"
                    .into(),
            }),
            None => Ok(()),
        }
    }

    /// Replaces the limits set through the API (from the persisted policy
    /// set): they apply from the next decision.
    pub fn set_api_limits(&self, by_name: std::collections::BTreeMap<String, LimitOverride>) {
        let mut api = self
            .set_by_api
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *api != by_name {
            tracing::info!(policies = ?by_name.keys().collect::<Vec<_>>(), "Policy limits set through the API changed.");
            *api = by_name;
        }
    }

    /// The limits `policy` decides under now, and where each came from.
    pub fn limits_of(&self, policy: &LoadedPolicy) -> Result<Resolved, PolicyError> {
        let operator = self.operator_limits(&policy.id.name);
        profile::resolve(
            &self.limits,
            &self.ceiling,
            &policy.profile,
            operator.as_ref(),
        )
    }

    /// Compiles (or loads from cache), links and type-checks a policy component,
    /// then calls its `metadata` once in a sandbox to learn its name and version.
    pub fn load(&self, bytes: &[u8]) -> Result<LoadedPolicy, PolicyError> {
        check_component_header(bytes)?;
        // Limits first: a component that needs more than allowed is refused
        // before it is compiled.
        let profile = profile::inspect(bytes)?;
        let unnamed = profile::resolve(&self.limits, &self.ceiling, &profile, None)?;
        let sha256 = sha256_hex(bytes);
        let component = match self
            .cache
            .as_ref()
            .and_then(|c| c.load(&self.engine, &sha256))
        {
            Some(c) => c,
            None => {
                let c = Component::new(&self.engine, bytes)
                    .map_err(|e| PolicyError::InvalidComponent(format!("{e:#}")))?;
                if let Some(cache) = &self.cache {
                    cache.store(&sha256, &c);
                }
                c
            }
        };
        // The WASI imports outside the sandbox's surface link to denying stubs,
        // defined for this component on its own copy of the linker.
        let mut linker = self.linker.clone();
        let denied =
            super::wasi::deny::link_denied(&mut linker, &self.engine, &component, sandbox_of)
                .map_err(|e| PolicyError::WrongWorld(format!("{e:#}")))?;
        if !denied.is_empty() {
            tracing::debug!(interfaces = ?denied, "Policy imports WASI interfaces the sandbox denies.");
        }
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|e| PolicyError::WrongWorld(format!("{e:#}")))?;
        let pre = Pre::new(instance_pre).map_err(PolicyError::WrongWorld)?;

        let limits = &unnamed.limits;
        let mut store = self.store(limits, "(loading)", 0, sha256.as_bytes());
        let mut metadata =
            pre.metadata(&mut store)
                .map_err(|e| match classify(limits, &store, e) {
                    PolicyError::SandboxLimit {
                        limit: SandboxLimit::HostcallData,
                        ..
                    } => PolicyError::InvalidMetadata(format!(
                        "metadata is larger than {} bytes",
                        limits.hostcall_bytes()
                    )),
                    other => other,
                })?;
        validate_metadata(&metadata)?;
        // Now that its name is known, the operator's limits for it.
        let operator = self.operator_limits(&metadata.name);
        profile::resolve(&self.limits, &self.ceiling, &profile, operator.as_ref())?;
        // Listed by the CLI and the API: escaped like every guest text.
        for f in &mut metadata.config_schema {
            f.name = sanitize(&f.name, MAX_CONFIG_NAME_BYTES);
            f.description = sanitize(&f.description, MAX_CONFIG_TEXT_BYTES);
            if let Some(d) = &mut f.default_value {
                *d = sanitize(d, MAX_CONFIG_TEXT_BYTES);
            }
        }
        Ok(LoadedPolicy {
            id: PolicyId {
                name: metadata.name.clone(),
                version: metadata.version.clone(),
                sha256,
            },
            metadata,
            size: bytes.len(),
            profile,
            counters: DecisionCounters::default(),
            pre,
        })
    }

    fn store(
        &self,
        limits: &PolicyLimits,
        policy_name: &str,
        now_ms: u64,
        seed: &[u8],
    ) -> Store<DecisionState> {
        let state = DecisionState::new(limits, now_ms, seed, policy_name);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s);
        // Fuel is enabled in the engine config, so this cannot fail.
        let _ = store.set_fuel(limits.fuel);
        store.set_epoch_deadline(limits.deadline_ticks());
        store.set_hostcall_fuel(limits.hostcall_bytes());
        store.set_max_component_handles(limits.component_handles());
        store
    }

    /// Runs `decide` on a fresh instance. Never panics: every failure is a
    /// `PolicyError` in the outcome.
    pub fn decide(
        &self,
        policy: &LoadedPolicy,
        incident: &Incident,
        context: &PolicyContext,
        now: DateTime<Utc>,
    ) -> DecisionOutcome {
        let started = Instant::now();
        let limits = match self.limits_of(policy) {
            Ok(r) => r.limits,
            // The operator lowered a limit below what the component needs.
            Err(e) => {
                policy.counters.count(true);
                return DecisionOutcome {
                    policy: policy.id.clone(),
                    result: Err(e),
                    fuel_used: 0,
                    duration: started.elapsed(),
                    logs: Vec::new(),
                    logs_dropped: 0,
                };
            }
        };
        let now_ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
        let mut store = self.store(
            &limits,
            &policy.id.name,
            now_ms,
            incident.id.as_str().as_bytes(),
        );
        let result = run_decide(&limits, &mut store, policy, incident, context);
        let duration = started.elapsed();
        let fuel_used = limits.fuel - store.get_fuel().unwrap_or(0);
        let state = store.into_data();
        policy.counters.count(result.is_err());
        DecisionOutcome {
            policy: policy.id.clone(),
            result,
            fuel_used,
            duration,
            logs: state.logs,
            logs_dropped: state.logs_dropped,
        }
    }

    /// Instantiates a policy in a fresh store without calling it: the fixed cost
    /// of every decision, for benchmarks.
    #[doc(hidden)]
    pub fn instantiate_only(&self, policy: &LoadedPolicy) -> Result<(), PolicyError> {
        let limits = self.limits_of(policy)?.limits;
        let mut store = self.store(&limits, &policy.id.name, 0, b"bench");
        policy
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(&limits, &store, e))
    }
}

fn run_decide(
    limits: &PolicyLimits,
    store: &mut Store<DecisionState>,
    policy: &LoadedPolicy,
    incident: &Incident,
    context: &PolicyContext,
) -> Result<Decision, PolicyError> {
    let answer = policy
        .pre
        .decide(&mut *store, incident, context)
        .map_err(|e| classify(limits, store, e))?;
    let decision =
        answer.map_err(|msg| PolicyError::Rejected(sanitize(&msg, limits.max_log_line_bytes)))?;
    check_decision(limits, &decision)?;
    Ok(decision)
}

fn check_decision(limits: &PolicyLimits, d: &Decision) -> Result<(), PolicyError> {
    if d.steps.len() > limits.max_steps {
        return Err(PolicyError::InvalidDecision(format!(
            "{} steps, more than the limit of {}",
            d.steps.len(),
            limits.max_steps
        )));
    }
    let size = d.size();
    if size > limits.max_output_bytes {
        return Err(PolicyError::InvalidDecision(format!(
            "{size} bytes, more than the output limit of {} bytes",
            limits.max_output_bytes
        )));
    }
    Ok(())
}

/// Turns a wasmtime error into the precise `PolicyError`.
fn classify(
    limits: &PolicyLimits,
    store: &Store<DecisionState>,
    e: wasmtime::Error,
) -> PolicyError {
    if let Some(stop) = &store.data().sandbox.stop {
        return match stop {
            SandboxStop::Limit(limit, detail) => PolicyError::SandboxLimit {
                limit: *limit,
                detail: detail.clone(),
            },
            SandboxStop::Deadline => PolicyError::Timeout(limits.deadline_ms),
            SandboxStop::Exit(code) => PolicyError::Trap(format!("policy called exit({code})")),
            SandboxStop::Misuse(what) => PolicyError::Trap(format!("WASI misuse: {what}")),
            SandboxStop::Denied(func) => {
                PolicyError::Trap(format!("policy called `{func}`, which the sandbox denies"))
            }
        };
    }
    if let Some((limit, requested)) = store.data().memory_exceeded {
        return PolicyError::MemoryLimit { limit, requested };
    }
    // wasmtime's own host-side budgets: data copied out of the guest in one
    // call, and live component handles. Their error types are private, so
    // they are told apart by the root cause's message (wasm backtraces,
    // which carry guest-chosen function names, are off; pinned by the
    // sandbox tests).
    let root = e.root_cause().to_string();
    if root.contains("store handle limit exceeded") || root.contains("too many active lends") {
        return PolicyError::SandboxLimit {
            limit: SandboxLimit::Handles,
            detail: format!(
                "more than {} live component handles",
                limits.component_handles()
            ),
        };
    }
    if root.contains("fuel allocated for hostcalls has been exhausted") {
        return PolicyError::SandboxLimit {
            limit: SandboxLimit::HostcallData,
            detail: format!(
                "more than {} bytes copied from the policy in one call",
                limits.hostcall_bytes()
            ),
        };
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => PolicyError::OutOfFuel(limits.fuel),
        Some(Trap::Interrupt) => PolicyError::Timeout(limits.deadline_ms),
        Some(trap) => {
            let stderr = store.data().stderr_text();
            // Drop Rust's backtrace hint: there is no backtrace to display.
            let stderr: String = stderr
                .lines()
                .filter(|l| !l.starts_with("note: run with `RUST_BACKTRACE"))
                .collect::<Vec<_>>()
                .join(" ");
            if stderr.is_empty() {
                PolicyError::Trap(trap.to_string())
            } else {
                PolicyError::Trap(format!("{trap}: {}", sanitize(&stderr, 512)))
            }
        }
        None => {
            let msg = sanitize(&format!("{e:#}"), 1024);
            if root.contains("pooling allocator") || root.contains("maximum concurrent") {
                PolicyError::Host(format!(
                    "too many concurrent decisions (max-concurrent = {}): {msg}",
                    limits.max_concurrent
                ))
            } else {
                PolicyError::Trap(msg)
            }
        }
    }
}

/// Rejects anything that is not a Wasm component before compiling it, with a hint.
fn check_component_header(bytes: &[u8]) -> Result<(), PolicyError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(PolicyError::InvalidComponent(
            "not a WebAssembly binary (missing \\0asm header)".into(),
        ));
    }
    match &bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(PolicyError::InvalidComponent(
            "this is a core Wasm module, not a component; build the policy with \
             `--target wasm32-wasip2` (or wrap it with `wasm-tools component new`)"
                .into(),
        )),
        other => Err(PolicyError::InvalidComponent(format!(
            "unsupported Wasm binary version/layer {other:02x?}"
        ))),
    }
}

fn validate_metadata(m: &PolicyMetadata) -> Result<(), PolicyError> {
    let name_ok = !m.name.is_empty()
        && m.name.len() <= 64
        && m.name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(PolicyError::InvalidMetadata(format!(
            "name {:?} must be 1-64 chars of [a-z0-9-_]",
            sanitize(&m.name, 80)
        )));
    }
    if m.version.is_empty() || m.version.len() > 64 || sanitize(&m.version, 64) != m.version {
        return Err(PolicyError::InvalidMetadata(
            "version must be 1-64 characters, none of them control characters".into(),
        ));
    }
    if m.handles.len() > MAX_METADATA_KINDS || m.proposes.len() > MAX_METADATA_KINDS {
        return Err(PolicyError::InvalidMetadata(format!(
            "`handles` and `proposes` list at most {MAX_METADATA_KINDS} kinds each"
        )));
    }
    if m.config_schema.len() > MAX_CONFIG_FIELDS {
        return Err(PolicyError::InvalidMetadata(format!(
            "{} config fields, more than {MAX_CONFIG_FIELDS}",
            m.config_schema.len()
        )));
    }
    for f in &m.config_schema {
        let long = f.name.is_empty()
            || f.name.len() > MAX_CONFIG_NAME_BYTES
            || f.description.len() > MAX_CONFIG_TEXT_BYTES
            || f.default_value
                .as_ref()
                .is_some_and(|d| d.len() > MAX_CONFIG_TEXT_BYTES);
        if long {
            return Err(PolicyError::InvalidMetadata(format!(
                "config field {:?}: names are 1-{MAX_CONFIG_NAME_BYTES} bytes, descriptions \
                 and defaults at most {MAX_CONFIG_TEXT_BYTES}",
                sanitize(&f.name, 80)
            )));
        }
    }
    if m.handles.is_empty() {
        return Err(PolicyError::InvalidMetadata(
            "`handles` lists no incident kind".into(),
        ));
    }
    Ok(())
}

/// Increments the engine's epoch every `EPOCH_TICK_MS` until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("healer-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(Duration::from_millis(EPOCH_TICK_MS));
            }
        });
    if let Err(error) = spawned {
        // Without the ticker, deadlines never fire; fuel still bounds every call.
        tracing::error!(error = %error, "Could not start the epoch ticker; only fuel bounds policies.");
    }
}
