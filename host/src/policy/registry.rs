//! The policy registry: every loaded version of every policy, which one is active,
//! which runs in shadow, and the atomic swap between them.
//!
//! The active set is an immutable snapshot behind `ArcSwap`. A decision loads the
//! snapshot once and finishes on the versions it holds, however many swaps happen
//! meanwhile; the next decision sees the new snapshot. Writers (swap, rollback)
//! serialize on a mutex and publish a new snapshot.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::engine::{LoadedPolicy, PolicyEngine};
use super::{DecisionOutcome, PolicyContext, PolicyError, PolicyId};
use crate::incident::Incident;

/// Whether a version decides for real or only beside the active one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyRole {
    /// Its decisions are the ones the pipeline governs and executes.
    Active,
    /// It decides on every incident it handles; its decision is recorded, never executed.
    Shadow,
}

/// A policy name's (active, shadow) versions.
pub type Roles = (Option<Arc<LoadedPolicy>>, Option<Arc<LoadedPolicy>>);

/// The immutable snapshot decisions run on.
#[derive(Default)]
struct ActiveSet {
    active: BTreeMap<String, Arc<LoadedPolicy>>,
    shadow: BTreeMap<String, Arc<LoadedPolicy>>,
    /// Routing order of active policies: these names first, in this order,
    /// then every other one by name.
    priority: Vec<String>,
}

impl ActiveSet {
    /// The active policies handling `kind`, in routing order.
    fn routed(&self, kind: crate::incident::IncidentKind) -> Vec<&Arc<LoadedPolicy>> {
        let mut routed: Vec<&Arc<LoadedPolicy>> = self
            .active
            .values()
            .filter(|p| p.metadata.handles.contains(&kind))
            .collect();
        let rank = |name: &str| {
            self.priority
                .iter()
                .position(|p| p == name)
                .unwrap_or(usize::MAX)
        };
        // Stable: unlisted policies keep their name order.
        routed.sort_by_key(|p| rank(&p.id.name));
        routed
    }
}

struct Version {
    policy: Arc<LoadedPolicy>,
    uploaded_at: DateTime<Utc>,
}

#[derive(Default)]
struct History {
    /// Every version ever loaded for this name, in upload order, unique by sha256.
    versions: Vec<Version>,
    /// Activation stack of sha256s; the top is the active version.
    activations: Vec<String>,
}

impl History {
    /// Keeps a version (once per sha256).
    fn remember(&mut self, policy: &Arc<LoadedPolicy>) {
        if !self
            .versions
            .iter()
            .any(|v| v.policy.id.sha256 == policy.id.sha256)
        {
            self.versions.push(Version {
                policy: policy.clone(),
                uploaded_at: Utc::now(),
            });
        }
    }
}

/// One version as `list` reports it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyVersionInfo {
    /// Version string.
    pub version: String,
    /// sha256 of the component.
    pub sha256: String,
    /// When this host loaded it.
    pub uploaded_at: DateTime<Utc>,
    /// Component size in bytes.
    pub size: usize,
    /// The `healer:policy` world version it implements (`0.2.0`, `0.1.0`).
    pub world: &'static str,
    /// Decisions it made since it was loaded.
    pub decisions: u64,
    /// Of those, the ones that failed (trap, limit, error).
    pub errors: u64,
    /// The toolchain that built it (`rust`, `python`, `javascript`, `other`).
    pub toolchain: super::Toolchain,
    /// The limits its decisions run under now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<super::LimitOverride>,
    /// Why it cannot run now (an operator limit below what it needs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits_error: Option<String>,
    /// Active, shadow, or neither (`None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<PolicyRole>,
}

/// One policy name as `list` reports it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegistryEntry {
    /// Policy name.
    pub name: String,
    /// Incident kinds the active (or shadow) version handles.
    pub handles: Vec<crate::incident::IncidentKind>,
    /// Every version, oldest first.
    pub versions: Vec<PolicyVersionInfo>,
}

/// What every routed policy decided about one incident.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Decisions {
    /// Outcomes of the active policies handling the incident's kind, by name.
    pub active: Vec<DecisionOutcome>,
    /// Outcomes of shadow versions: recorded, never executed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shadow: Vec<DecisionOutcome>,
}

impl Decisions {
    /// The decision that acts: the first active outcome (in routing order)
    /// that proposes steps; when none does, the first one, so its no-op or
    /// error is what the incident records. The others are recorded beside it.
    pub fn acting(&self) -> Option<&DecisionOutcome> {
        self.active
            .iter()
            .find(|o| o.result.as_ref().is_ok_and(|d| !d.steps.is_empty()))
            .or_else(|| self.active.first())
    }
}

/// What `load_dir` loaded and what it could not.
#[derive(Debug)]
pub struct LoadReport {
    /// Policies now active.
    pub loaded: Vec<PolicyId>,
    /// Files that failed, with the reason.
    pub failed: Vec<(std::path::PathBuf, PolicyError)>,
}

/// All loaded policies and the atomically swapped active set.
pub struct PolicyRegistry {
    engine: Arc<PolicyEngine>,
    snapshot: ArcSwap<ActiveSet>,
    histories: Mutex<BTreeMap<String, History>>,
}

impl std::fmt::Debug for PolicyRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyRegistry").finish_non_exhaustive()
    }
}

impl PolicyRegistry {
    /// An empty registry on the given engine.
    pub fn new(engine: Arc<PolicyEngine>) -> Self {
        PolicyRegistry {
            engine,
            snapshot: ArcSwap::from_pointee(ActiveSet::default()),
            histories: Mutex::new(BTreeMap::new()),
        }
    }

    /// The engine policies run on.
    pub fn engine(&self) -> &Arc<PolicyEngine> {
        &self.engine
    }

    fn histories(&self) -> MutexGuard<'_, BTreeMap<String, History>> {
        // A panic while holding the lock cannot leave a half-written history
        // (every mutation below is a single push/pop), so poisoning is ignored.
        self.histories.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads every `*.wasm` file in `dir` as an active policy. Returns what loaded
    /// and, per file, what failed; one bad file does not stop the others.
    pub fn load_dir(&self, dir: &Path) -> std::io::Result<LoadReport> {
        let mut paths: Vec<_> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
            .collect();
        paths.sort();
        let mut loaded = Vec::new();
        let mut failed = Vec::new();
        for path in paths {
            match std::fs::read(&path) {
                Ok(bytes) => match self.swap(&bytes, PolicyRole::Active) {
                    Ok(id) => loaded.push(id),
                    Err(e) => failed.push((path, e)),
                },
                Err(e) => failed.push((path, PolicyError::Host(e.to_string()))),
            }
        }
        Ok(LoadReport { loaded, failed })
    }

    /// Loads the example policies built into the binary ([`super::EMBEDDED`])
    /// as active policies.
    pub fn load_embedded(&self) -> LoadReport {
        let mut loaded = Vec::new();
        let mut failed = Vec::new();
        for (name, bytes) in super::EMBEDDED {
            match self.swap(bytes, PolicyRole::Active) {
                Ok(id) => loaded.push(id),
                Err(e) => failed.push((std::path::PathBuf::from(format!("(embedded) {name}")), e)),
            }
        }
        LoadReport { loaded, failed }
    }

    /// Loads a component and makes it the active (or shadow) version of its name.
    /// A version already loaded (same sha256) is reused without recompiling.
    pub fn swap(&self, bytes: &[u8], role: PolicyRole) -> Result<PolicyId, PolicyError> {
        let policy = self.prepare(bytes)?;
        Ok(self.install(policy, role))
    }

    /// Compiles and validates a component without changing what decides: the
    /// slow half of a swap, for callers that run it off the async runtime. A
    /// version already loaded (same sha256) is returned as it is.
    pub fn prepare(&self, bytes: &[u8]) -> Result<Arc<LoadedPolicy>, PolicyError> {
        let sha = super::engine::sha256_hex(bytes);
        if let Some(p) = self.loaded(&sha) {
            return Ok(p);
        }
        // Compile outside the lock: it can take a while and must not block
        // other writers' publication (decisions never take this lock).
        Ok(Arc::new(self.engine.load(bytes)?))
    }

    /// Remembers a prepared version without giving it a role (a later
    /// [`PolicyRegistry::converge`] or [`PolicyRegistry::loaded`] finds it).
    pub fn keep(&self, policy: &Arc<LoadedPolicy>) {
        self.histories()
            .entry(policy.id.name.clone())
            .or_default()
            .remember(policy);
    }

    /// A loaded version by sha256, whatever its role.
    pub fn loaded(&self, sha256: &str) -> Option<Arc<LoadedPolicy>> {
        let histories = self.histories();
        histories.values().find_map(|h| {
            h.versions
                .iter()
                .find(|v| v.policy.id.sha256 == sha256)
                .map(|v| v.policy.clone())
        })
    }

    /// Makes a prepared version the active (or shadow) version of its name:
    /// one atomic publication.
    pub fn install(&self, policy: Arc<LoadedPolicy>, role: PolicyRole) -> PolicyId {
        let id = policy.id.clone();
        let mut histories = self.histories();
        let history = histories.entry(id.name.clone()).or_default();
        history.remember(&policy);
        match role {
            PolicyRole::Active => {
                if history.activations.last() != Some(&id.sha256) {
                    history.activations.push(id.sha256.clone());
                }
                self.publish(|set| {
                    set.active.insert(id.name.clone(), policy.clone());
                    if set
                        .shadow
                        .get(&id.name)
                        .is_some_and(|s| s.id.sha256 == id.sha256)
                    {
                        set.shadow.remove(&id.name);
                    }
                });
            }
            PolicyRole::Shadow => self.publish(|set| {
                set.shadow.insert(id.name.clone(), policy.clone());
            }),
        }
        tracing::info!(policy = %id.name, version = %id.version, sha256 = %id.sha256, role = ?role, "Policy swapped in.");
        id
    }

    /// Replaces the whole active and shadow sets with these versions, in one
    /// publication: a decision sees the set before or the set after, never a
    /// mix. How a replica follows the persisted policy set.
    pub fn converge(&self, active: Vec<Arc<LoadedPolicy>>, shadow: Vec<Arc<LoadedPolicy>>) {
        let mut histories = self.histories();
        for p in active.iter().chain(&shadow) {
            histories.entry(p.id.name.clone()).or_default().remember(p);
        }
        for p in &active {
            let history = histories.entry(p.id.name.clone()).or_default();
            if history.activations.last() != Some(&p.id.sha256) {
                history.activations.push(p.id.sha256.clone());
            }
        }
        let by_name = |ps: Vec<Arc<LoadedPolicy>>| {
            ps.into_iter()
                .map(|p| (p.id.name.clone(), p))
                .collect::<BTreeMap<_, _>>()
        };
        let (active, shadow) = (by_name(active), by_name(shadow));
        self.publish(|set| {
            set.active = active;
            set.shadow = shadow;
        });
    }

    /// Stops running `name` at all (active and shadow); its versions stay
    /// loaded, so it can come back without a recompile.
    pub fn retire(&self, name: &str) {
        let _guard = self.histories();
        self.publish(|set| {
            set.active.remove(name);
            set.shadow.remove(name);
        });
        tracing::info!(policy = %name, "Policy retired.");
    }

    /// The active and shadow versions by name, as decisions see them now.
    pub fn roles(&self) -> BTreeMap<String, Roles> {
        let snapshot = self.snapshot.load();
        let mut roles: BTreeMap<String, Roles> = BTreeMap::new();
        for (name, p) in &snapshot.active {
            roles.entry(name.clone()).or_default().0 = Some(p.clone());
        }
        for (name, p) in &snapshot.shadow {
            roles.entry(name.clone()).or_default().1 = Some(p.clone());
        }
        roles
    }

    /// Reactivates the version that was active before the current one.
    pub fn rollback(&self, name: &str) -> Result<PolicyId, PolicyError> {
        let mut histories = self.histories();
        let history = histories
            .get_mut(name)
            .ok_or_else(|| PolicyError::Host(format!("no policy named {name:?}")))?;
        if history.activations.len() < 2 {
            return Err(PolicyError::Host(format!(
                "policy {name:?} has no earlier version to roll back to"
            )));
        }
        history.activations.pop();
        let sha = history.activations.last().cloned().unwrap_or_default();
        let policy = history
            .versions
            .iter()
            .find(|v| v.policy.id.sha256 == sha)
            .map(|v| v.policy.clone())
            .ok_or_else(|| PolicyError::Host(format!("version {sha} of {name:?} is missing")))?;
        let id = policy.id.clone();
        self.publish(|set| {
            set.active.insert(id.name.clone(), policy);
        });
        tracing::info!(policy = %id.name, version = %id.version, sha256 = %id.sha256, "Policy rolled back.");
        Ok(id)
    }

    /// Sets the routing order: when several active policies handle an
    /// incident's kind, they decide in this order (names not listed follow,
    /// by name), and the first whose decision proposes steps acts.
    pub fn set_priority(&self, names: Vec<String>) {
        let _guard = self.histories();
        self.publish(|set| set.priority = names);
    }

    /// Stops running the shadow version of `name`, if any.
    pub fn clear_shadow(&self, name: &str) {
        let _guard = self.histories();
        self.publish(|set| {
            set.shadow.remove(name);
        });
    }

    /// Publishes a new snapshot derived from the current one. Callers hold the
    /// histories lock, so publications never race.
    fn publish(&self, change: impl FnOnce(&mut ActiveSet)) {
        let current = self.snapshot.load();
        let mut next = ActiveSet {
            active: current.active.clone(),
            shadow: current.shadow.clone(),
            priority: current.priority.clone(),
        };
        change(&mut next);
        self.snapshot.store(Arc::new(next));
    }

    /// The metadata of a loaded version (by sha256), whatever its role now.
    pub fn metadata(&self, id: &PolicyId) -> Option<super::PolicyMetadata> {
        self.histories().get(&id.name).and_then(|h| {
            h.versions
                .iter()
                .find(|v| v.policy.id.sha256 == id.sha256)
                .map(|v| v.policy.metadata.clone())
        })
    }

    /// The active version of a policy.
    pub fn active(&self, name: &str) -> Option<PolicyId> {
        self.snapshot.load().active.get(name).map(|p| p.id.clone())
    }

    /// Every policy with its versions and roles.
    pub fn list(&self) -> Vec<RegistryEntry> {
        let snapshot = self.snapshot.load();
        let histories = self.histories();
        histories
            .iter()
            .map(|(name, h)| {
                let active = snapshot.active.get(name);
                let shadow = snapshot.shadow.get(name);
                let handles = active
                    .or(shadow)
                    .map(|p| p.metadata.handles.clone())
                    .unwrap_or_default();
                let versions = h
                    .versions
                    .iter()
                    .map(|v| {
                        let sha = &v.policy.id.sha256;
                        let limits = self.engine.limits_of(&v.policy);
                        let role = if active.is_some_and(|p| &p.id.sha256 == sha) {
                            Some(PolicyRole::Active)
                        } else if shadow.is_some_and(|p| &p.id.sha256 == sha) {
                            Some(PolicyRole::Shadow)
                        } else {
                            None
                        };
                        PolicyVersionInfo {
                            version: v.policy.id.version.clone(),
                            sha256: sha.clone(),
                            uploaded_at: v.uploaded_at,
                            size: v.policy.size,
                            world: v.policy.world(),
                            decisions: v.policy.counters.decisions(),
                            errors: v.policy.counters.errors(),
                            toolchain: v.policy.profile.toolchain,
                            limits: limits.as_ref().ok().map(|r| r.limits.budget()),
                            limits_error: limits.err().map(|e| e.to_string()),
                            role,
                        }
                    })
                    .collect();
                RegistryEntry {
                    name: name.clone(),
                    handles,
                    versions,
                }
            })
            .collect()
    }

    /// Runs every active policy that handles the incident's kind (in routing
    /// order, see [`PolicyRegistry::set_priority`]), plus every shadow version
    /// that does, on one snapshot of the registry.
    pub fn decide(
        &self,
        incident: &Incident,
        context: &PolicyContext,
        now: DateTime<Utc>,
    ) -> Decisions {
        let snapshot = self.snapshot.load_full();
        let decide = |p: &Arc<LoadedPolicy>| self.engine.decide(p, incident, context, now);
        let decisions = off_async_worker(|| Decisions {
            active: snapshot
                .routed(incident.kind)
                .into_iter()
                .map(decide)
                .collect(),
            shadow: snapshot
                .shadow
                .values()
                .filter(|p| p.metadata.handles.contains(&incident.kind))
                .map(decide)
                .collect(),
        });
        count(&decisions);
        decisions
    }
}

/// Counts decisions and observes their time and fuel, by policy.
fn count(decisions: &Decisions) {
    use crate::metrics::{Counter, Histogram, metrics};
    let m = metrics();
    let modes = [("active", &decisions.active), ("shadow", &decisions.shadow)];
    for (mode, outcomes) in modes {
        for o in outcomes.iter() {
            let result = match &o.result {
                Ok(_) => "ok",
                Err(e) => e.label(),
            };
            let policy = o.policy.name.as_str();
            m.inc(
                Counter::Decisions,
                &[
                    ("policy", policy),
                    ("version", &o.policy.version),
                    ("mode", mode),
                    ("result", result),
                ],
            );
            m.observe(
                Histogram::PolicyEvaluation,
                &[("policy", policy)],
                o.duration.as_secs_f64(),
            );
            m.observe(
                Histogram::PolicyFuel,
                &[("policy", policy)],
                o.fuel_used as f64,
            );
        }
    }
}

/// Runs policy calls, which are CPU-bound up to their deadline, without
/// stalling an async worker: on a multi-threaded tokio runtime the worker hands
/// its other tasks off first (`block_in_place`); elsewhere (the CLI, a
/// current-thread runtime) it runs inline. No sandbox call blocks either way:
/// the sandbox's WASI never waits (see `policy/wasi`).
fn off_async_worker<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
