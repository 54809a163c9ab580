//! The persisted policy set: which version of each policy is active (with the
//! activation history rollback walks) and which runs in shadow, shared by
//! every replica through the store, with the components themselves in a
//! [`BlobStore`].
//!
//! Every change (a push, rollback, shadow, activate, retire) is a
//! compare-and-set of one record in the store's shared control state
//! ([`POLICY_SET_KEY`]); the replica that made it applies it at once, the
//! others when they next [`Catalog::follow`] (every few seconds). Applying is
//! one publication of the registry's snapshot, so a decision runs on the set
//! before or the set after, never on half of a change. A version that cannot
//! be loaded (a blob not there yet, a corrupt one) leaves that policy's
//! current version serving and is tried again at the next follow.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;

use super::blobs::{BlobError, BlobStore};
use super::engine::{LoadedPolicy, sha256_hex};
use super::registry::{PolicyRegistry, PolicyRole, Roles};
use super::{LimitOverride, PolicyError, PolicyId};
use crate::store::{Store, StoreError};

/// Compare-and-set attempts before a change gives up.
const CAS_ATTEMPTS: usize = 16;

use super::set::pointer;
pub use super::set::{POLICY_SET_KEY, PolicyPointer, PolicySet};

/// Catalog failures; each maps to one API error.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The component failed to load (not a component, wrong world, bad metadata).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// Pushed under a name that is not the one its metadata gives.
    #[error("the component is policy {found:?}, not {expected:?}")]
    NameMismatch {
        /// The name asked for.
        expected: String,
        /// The name in its metadata.
        found: String,
    },
    /// No policy of that name in the set.
    #[error("no policy named {0:?}")]
    Unknown(String),
    /// Rollback with one activation only.
    #[error("policy {0:?} has no earlier version to roll back to")]
    NoEarlier(String),
    /// Activate without a shadow version.
    #[error("policy {0:?} has no shadow version")]
    NoShadow(String),
    /// A version asked for that was never pushed.
    #[error("no stored version {sha256} of policy {name:?}")]
    NoVersion {
        /// Policy name.
        name: String,
        /// The sha256 asked for.
        sha256: String,
    },
    /// The blob store failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Other writers kept changing the set.
    #[error("the policy set kept changing under concurrent writers; try again")]
    Contended,
    /// The stored set cannot be read.
    #[error("the stored policy set is unreadable: {0}")]
    Corrupt(serde_json::Error),
    /// A blocking worker failed.
    #[error("policy worker failed: {0}")]
    Worker(String),
}

/// What a push did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Pushed {
    /// The version now in place.
    pub policy: PolicyId,
    /// Its role.
    pub role: PolicyRole,
    /// Its `healer:policy` world.
    pub world: &'static str,
    /// Compile (or precompile-cache load) and validation time, ms.
    pub compile_ms: f64,
    /// From receipt to the new version deciding on this replica, ms
    /// (compile included).
    pub swap_ms: f64,
    /// Whether the set changed (a push of the version already active does not).
    pub changed: bool,
}

/// The persisted policy set and the registry that follows it.
pub struct Catalog {
    registry: Arc<PolicyRegistry>,
    blobs: Arc<dyn BlobStore>,
    store: Arc<dyn Store>,
    /// The set version this replica last applied in full; held while a change
    /// or a follow applies, so local changes never interleave.
    applied: tokio::sync::Mutex<u64>,
    swaps: std::sync::atomic::AtomicU64,
    /// Versions that could not be loaded, and when.
    failed: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
}

/// How long a version that failed to load waits before it is tried again.
const RETRY_FAILED_AFTER: Duration = Duration::from_secs(60);

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").finish_non_exhaustive()
    }
}

/// Milliseconds of a duration, for reports.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Catalog {
    /// A catalog over a registry, a blob store and the shared store.
    pub fn new(
        registry: Arc<PolicyRegistry>,
        blobs: Arc<dyn BlobStore>,
        store: Arc<dyn Store>,
    ) -> Self {
        Catalog {
            registry,
            blobs,
            store,
            applied: tokio::sync::Mutex::new(0),
            swaps: std::sync::atomic::AtomicU64::new(0),
            failed: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The registry decisions run on.
    pub fn registry(&self) -> &Arc<PolicyRegistry> {
        &self.registry
    }

    /// Swaps applied on this replica since start (its own and followed ones).
    pub fn swaps(&self) -> u64 {
        self.swaps.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The persisted set and its version (0: never written).
    pub async fn read(&self) -> Result<(PolicySet, u64), CatalogError> {
        let (raw, version) = self.store.governor_get(POLICY_SET_KEY).await?;
        let set = match raw {
            Some(raw) => serde_json::from_str(&raw).map_err(CatalogError::Corrupt)?,
            None => PolicySet::default(),
        };
        Ok((set, version))
    }

    /// At start: the policies in the host's directory (`files`) join the persisted set
    /// where the set does not name them, or where the file changed after the
    /// set's last change of that name; then the host follows the set. So a
    /// restart comes back with the last active set, and a file edited (or an
    /// image built) after the last push still wins. Files that do not load
    /// were reported by the directory load and are skipped here.
    pub async fn start(&self, files: Vec<super::follow::WasmFile>) -> Result<(), CatalogError> {
        for file in files {
            let Some(policy) = self.registry.loaded(&sha256_hex(&file.bytes)) else {
                continue;
            };
            let (set, _) = self.read().await?;
            let newer = |p: &PolicyPointer| file.modified.is_some_and(|m| m > p.changed_at);
            let stale = match set.policies.get(&policy.id.name) {
                None => true,
                Some(p) if p.retired => newer(p),
                Some(p) => {
                    p.active() != Some(policy.id.sha256.as_str())
                        && file.modified.is_some_and(|m| m > p.changed_at)
                }
            };
            if stale {
                self.blobs.put(&policy.id.sha256, &file.bytes).await?;
                self.change("start", |set| {
                    pointer(set, &policy.id.name).activate(&policy.id.sha256);
                    Ok(())
                })
                .await?;
            }
        }
        self.follow().await.map(drop)
    }

    /// Validates and compiles a component off the async runtime, keeps its
    /// bytes, and makes it the active (or shadow) version of its name on every
    /// replica. `name`, when given, must be the name in its metadata. A
    /// component that fails to load changes nothing.
    pub async fn push(
        &self,
        bytes: Vec<u8>,
        role: PolicyRole,
        name: Option<&str>,
        by: &str,
    ) -> Result<Pushed, CatalogError> {
        let received = Instant::now();
        let registry = self.registry.clone();
        let bytes = Arc::new(bytes);
        let compiled = bytes.clone();
        let policy = tokio::task::spawn_blocking(move || registry.prepare(&compiled))
            .await
            .map_err(|e| CatalogError::Worker(e.to_string()))??;
        let compile_ms = ms(received.elapsed());
        if let Some(expected) = name
            && expected != policy.id.name
        {
            return Err(CatalogError::NameMismatch {
                expected: expected.to_owned(),
                found: policy.id.name.clone(),
            });
        }
        // Known to the registry at once, so applying the change below does
        // not load it a second time.
        self.registry.keep(&policy);
        self.blobs.put(&policy.id.sha256, &bytes).await?;
        let id = policy.id.clone();
        let changed = self
            .change(by, |set| {
                let p = pointer(set, &id.name);
                let before = p.clone();
                match role {
                    PolicyRole::Active => p.activate(&id.sha256),
                    // A retired policy has no active version to shadow.
                    PolicyRole::Shadow if p.retired => {
                        return Err(CatalogError::Unknown(id.name.clone()));
                    }
                    PolicyRole::Shadow => p.shadow = Some(id.sha256.clone()),
                }
                Ok(before.activations != p.activations
                    || before.shadow != p.shadow
                    || before.retired != p.retired)
            })
            .await?;
        Ok(Pushed {
            world: policy.world(),
            policy: id,
            role,
            compile_ms,
            swap_ms: ms(received.elapsed()),
            changed,
        })
    }

    /// Reactivates the version active before the current one.
    pub async fn rollback(&self, name: &str, by: &str) -> Result<PolicyId, CatalogError> {
        let sha = self
            .change(by, |set| {
                let p = known(set, name)?;
                if p.activations.len() < 2 {
                    return Err(CatalogError::NoEarlier(name.to_owned()));
                }
                p.activations.pop();
                Ok(p.active().unwrap_or_default().to_owned())
            })
            .await?;
        self.id_of(name, &sha)
    }

    /// Rolls back to the version before `sha256`, only while `sha256` is
    /// the active version (the regression guard: replicas judging the same
    /// version roll it back once). `None` when another version is active.
    pub async fn rollback_if_active(
        &self,
        name: &str,
        sha256: &str,
        by: &str,
    ) -> Result<Option<PolicyId>, CatalogError> {
        let sha = self
            .change(by, |set| {
                let p = known(set, name)?;
                if p.active() != Some(sha256) {
                    return Ok(None);
                }
                if p.activations.len() < 2 {
                    return Err(CatalogError::NoEarlier(name.to_owned()));
                }
                p.activations.pop();
                Ok(p.active().map(str::to_owned))
            })
            .await?;
        sha.map(|s| self.id_of(name, &s)).transpose()
    }

    /// Promotes the shadow version to active.
    pub async fn activate(&self, name: &str, by: &str) -> Result<PolicyId, CatalogError> {
        let sha = self
            .change(by, |set| {
                let p = known(set, name)?;
                let shadow = p
                    .shadow
                    .clone()
                    .ok_or_else(|| CatalogError::NoShadow(name.to_owned()))?;
                p.activate(&shadow);
                Ok(shadow)
            })
            .await?;
        self.id_of(name, &sha)
    }

    /// Runs a stored version (by sha256) in shadow, or stops the shadow (`None`).
    pub async fn shadow(
        &self,
        name: &str,
        sha256: Option<&str>,
        by: &str,
    ) -> Result<(), CatalogError> {
        let sha256 = sha256.map(str::to_ascii_lowercase);
        if let Some(sha) = &sha256 {
            let policy = self
                .resolve(sha)
                .await
                .map_err(|_| CatalogError::NoVersion {
                    name: name.to_owned(),
                    sha256: sha.clone(),
                })?;
            if policy.id.name != name {
                return Err(CatalogError::NameMismatch {
                    expected: name.to_owned(),
                    found: policy.id.name.clone(),
                });
            }
        }
        self.change(by, |set| {
            known(set, name)?.shadow = sha256.clone();
            Ok(())
        })
        .await
    }

    /// Sets (or, with an empty `limits`, clears) the operator's limits for a
    /// policy on every replica. Refused, with the limit named, when a limit
    /// is above the ceiling or the versions in use would not run under it.
    pub async fn set_limits(
        &self,
        name: &str,
        limits: &LimitOverride,
        by: &str,
    ) -> Result<(), CatalogError> {
        let engine = self.registry.engine();
        engine.check_operator_limits(limits)?;
        let (active, shadow) = self.registry.roles().get(name).cloned().unwrap_or_default();
        for p in active.iter().chain(shadow.iter()) {
            super::profile::resolve(engine.limits(), engine.ceiling(), &p.profile, Some(limits))?;
        }
        self.change(by, |set| {
            known(set, name)?.limits = limits.to_pairs();
            Ok(())
        })
        .await?;
        tracing::info!(policy = %name, by, limits = ?limits, "Policy limits set.");
        Ok(())
    }

    /// Stops running a policy on every replica.
    pub async fn retire(&self, name: &str, by: &str) -> Result<(), CatalogError> {
        self.change(by, |set| {
            let p = known(set, name)?;
            p.retired = true;
            p.shadow = None;
            Ok(())
        })
        .await?;
        tracing::info!(policy = %name, by, "Policy retired from the set.");
        Ok(())
    }

    /// Applies the persisted set if it changed since this replica last did.
    /// Returns whether it applied a change.
    pub async fn follow(&self) -> Result<bool, CatalogError> {
        let mut applied = self.applied.lock().await;
        let (set, version) = self.read().await?;
        if version == *applied {
            return Ok(false);
        }
        if self.apply(&set).await {
            *applied = version;
        }
        Ok(true)
    }

    /// The id of a version the set now points at. The change is committed
    /// whether or not this replica could load it yet, so an unloaded one is
    /// still named (its version unknown here), never reported as a failure.
    fn id_of(&self, name: &str, sha256: &str) -> Result<PolicyId, CatalogError> {
        Ok(match self.registry.loaded(sha256) {
            Some(p) => p.id.clone(),
            None => PolicyId {
                name: name.to_owned(),
                version: "(not loaded on this replica yet)".to_owned(),
                sha256: sha256.to_owned(),
            },
        })
    }

    /// Changes one pointer and stamps who changed it and when.
    async fn change<T>(
        &self,
        by: &str,
        f: impl Fn(&mut PolicySet) -> Result<T, CatalogError>,
    ) -> Result<T, CatalogError> {
        self.change_set(|set| {
            let before = set.clone();
            let out = f(set)?;
            let now = Utc::now();
            for (name, p) in &mut set.policies {
                if before.policies.get(name) != Some(p) {
                    p.changed_at = now;
                    by.clone_into(&mut p.changed_by);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Compare-and-sets the whole set until it sticks, then applies it here.
    async fn change_set<T>(
        &self,
        f: impl Fn(&mut PolicySet) -> Result<T, CatalogError>,
    ) -> Result<T, CatalogError> {
        let mut applied = self.applied.lock().await;
        let mut nonce = [0u8; 16];
        getrandom::getrandom(&mut nonce).map_err(|e| CatalogError::Worker(e.to_string()))?;
        let change = hex::encode(nonce);
        let mut last_error = None;
        let mut unanswered: Option<T> = None;
        for _ in 0..CAS_ATTEMPTS {
            let (mut set, version) = self.read().await?;
            if set.change == change
                && let Some(out) = unanswered.take()
            {
                // An earlier attempt's write landed after its error: done.
                if self.apply(&set).await {
                    *applied = version;
                }
                return Ok(out);
            }
            let out = f(&mut set)?;
            change.clone_into(&mut set.change);
            let raw = serde_json::to_string(&set).map_err(CatalogError::Corrupt)?;
            let written = match self.store.governor_cas(POLICY_SET_KEY, &raw, version).await {
                Ok(true) => true,
                // Lost the race, or lost the answer: only the stored set says which.
                Ok(false) => {
                    let (stored, _) = self.read().await?;
                    stored.change == change
                }
                Err(e) => {
                    let (stored, _) = self.read().await?;
                    let landed = stored.change == change;
                    if !landed {
                        last_error = Some(e);
                    }
                    landed
                }
            };
            if written {
                if self.apply(&set).await {
                    *applied = version + 1;
                }
                return Ok(out);
            }
            unanswered = Some(out);
        }
        Err(last_error.map_or(CatalogError::Contended, CatalogError::Store))
    }

    /// Hands the limits the set names to the engine (before the versions, so
    /// a new version's first decision runs under them).
    fn apply_limits(&self, set: &PolicySet) {
        let by_name = set
            .policies
            .iter()
            .filter(|(_, p)| !p.limits.is_empty())
            .map(|(name, p)| {
                let (limits, unknown) = LimitOverride::from_pairs(&p.limits);
                if !unknown.is_empty() {
                    tracing::warn!(policy = %name, keys = ?unknown,
                        "The policy set names limits this replica does not know; they are ignored here.");
                }
                (name.clone(), limits)
            })
            .collect();
        self.registry.engine().set_api_limits(by_name);
    }

    /// Loads what the set points at and publishes it in one snapshot. A
    /// version that cannot be loaded keeps the policy's current version (and
    /// makes the result false, so the next follow tries again).
    async fn apply(&self, set: &PolicySet) -> bool {
        self.apply_limits(set);
        let current = self.registry.roles();
        let mut complete = true;
        let (mut active, mut shadow) = (Vec::new(), Vec::new());
        for (name, pointer) in set.policies.iter().filter(|(_, p)| !p.retired) {
            let (now_active, now_shadow) = current.get(name).cloned().unwrap_or_default();
            let wanted = [
                (pointer.active(), now_active, &mut active),
                (pointer.shadow.as_deref(), now_shadow, &mut shadow),
            ];
            for (sha, now, into) in wanted {
                let Some(sha) = sha else { continue };
                match self.resolve(sha).await {
                    Ok(p) => into.push(p),
                    Err(e) => {
                        complete = false;
                        tracing::error!(policy = %name, sha256 = %sha, error = %e,
                            "Cannot load the version the policy set points at; the current one keeps serving.");
                        into.extend(now);
                    }
                }
            }
        }
        let shas = |ps: &[Arc<LoadedPolicy>]| {
            ps.iter()
                .map(|p| (p.id.name.clone(), p.id.sha256.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        let before = |pick: fn(&Roles) -> &Option<Arc<LoadedPolicy>>| {
            current
                .iter()
                .filter_map(|(n, r)| pick(r).as_ref().map(|p| (n.clone(), p.id.sha256.clone())))
                .collect::<BTreeMap<_, _>>()
        };
        let swapped = differing(&before(|r| &r.0), &shas(&active))
            + differing(&before(|r| &r.1), &shas(&shadow));
        if swapped > 0 {
            self.registry.converge(active, shadow);
            self.swaps
                .fetch_add(swapped as u64, std::sync::atomic::Ordering::Relaxed);
            crate::metrics::metrics().add(
                crate::metrics::Counter::PolicySwaps,
                &[],
                swapped as u64,
            );
            tracing::info!(changed = swapped, "Policy set applied.");
        }
        complete
    }

    /// A loaded version by sha256, loading it from the blob store when this
    /// replica has not yet.
    async fn resolve(&self, sha256: &str) -> Result<Arc<LoadedPolicy>, CatalogError> {
        if let Some(p) = self.registry.loaded(sha256) {
            return Ok(p);
        }
        // A version that failed is not fetched and compiled again on every
        // follow: it waits out a backoff first.
        let failed_at = self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sha256)
            .copied();
        if let Some(at) = failed_at
            && at.elapsed() < RETRY_FAILED_AFTER
        {
            return Err(CatalogError::NoVersion {
                name: String::new(),
                sha256: sha256.to_owned(),
            });
        }
        let loaded = self.load_blob(sha256).await;
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        match &loaded {
            Ok(_) => failed.remove(sha256),
            Err(_) => failed.insert(sha256.to_owned(), Instant::now()),
        };
        loaded
    }

    async fn load_blob(&self, sha256: &str) -> Result<Arc<LoadedPolicy>, CatalogError> {
        let bytes = self
            .blobs
            .get(sha256)
            .await?
            .ok_or_else(|| CatalogError::NoVersion {
                name: String::new(),
                sha256: sha256.to_owned(),
            })?;
        let registry = self.registry.clone();
        let policy = tokio::task::spawn_blocking(move || registry.prepare(&bytes))
            .await
            .map_err(|e| CatalogError::Worker(e.to_string()))??;
        self.registry.keep(&policy);
        Ok(policy)
    }
}

/// How many names map to a different value (or only on one side).
fn differing(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> usize {
    let names: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    names.into_iter().filter(|n| a.get(*n) != b.get(*n)).count()
}

/// The pointer of a policy the set already names.
fn known<'a>(set: &'a mut PolicySet, name: &str) -> Result<&'a mut PolicyPointer, CatalogError> {
    set.policies
        .get_mut(name)
        .filter(|p| !p.retired)
        .ok_or_else(|| CatalogError::Unknown(name.to_owned()))
}
