//! How a running host keeps up: it follows the persisted policy set (swaps
//! made on other replicas) and watches its policy directory (a new or changed
//! `.wasm` is validated and pushed like an API upload; a broken file is logged
//! and the old version keeps serving).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::PolicyError;
use super::catalog::{Catalog, CatalogError};
use super::registry::PolicyRole;

/// One `*.wasm` file of a policy directory.
pub struct WasmFile {
    /// Its path.
    pub path: std::path::PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// When it was last modified, if the filesystem says.
    pub modified: Option<DateTime<Utc>>,
}

/// The readable `*.wasm` files of `dir`, by path (unreadable ones are logged).
pub fn wasm_files(dir: &std::path::Path) -> Vec<WasmFile> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|path| match std::fs::read(&path) {
            Ok(bytes) => {
                let modified = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .map(DateTime::<Utc>::from);
                Some(WasmFile {
                    path,
                    bytes,
                    modified,
                })
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "Cannot read policy file.");
                None
            }
        })
        .collect()
}

/// Files of a policy directory by path, as (modified, length) when last seen.
#[derive(Debug)]
pub struct DirWatch {
    dir: PathBuf,
    seen: BTreeMap<PathBuf, (Option<SystemTime>, u64)>,
}

fn stamps(dir: &Path) -> BTreeMap<PathBuf, (Option<SystemTime>, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .filter_map(|p| {
            let m = std::fs::metadata(&p).ok().filter(|m| m.is_file())?;
            Some((p, (m.modified().ok(), m.len())))
        })
        .collect()
}

impl DirWatch {
    /// Watches `dir`, taking what is there now as seen.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let seen = stamps(&dir);
        DirWatch { dir, seen }
    }

    /// Files new or changed since they were last handled, with their stamp
    /// (a removed file changes nothing: retiring a policy is an explicit act).
    pub fn changed(&self) -> Vec<(PathBuf, (Option<SystemTime>, u64))> {
        stamps(&self.dir)
            .into_iter()
            .filter(|(p, s)| self.seen.get(p) != Some(s))
            .collect()
    }

    /// Marks a file handled at `stamp`: swapped in, or refused for what it is.
    fn handled(&mut self, path: PathBuf, stamp: (Option<SystemTime>, u64)) {
        self.seen.insert(path, stamp);
    }
}

/// Pushes every changed file of the watched directory; returns how many
/// were swapped in. Failures are logged; the old version keeps serving.
pub async fn push_changed(catalog: &Catalog, watch: &mut DirWatch) -> usize {
    let mut swapped = 0;
    for (path, stamp) in watch.changed() {
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "Cannot read changed policy file.");
                continue;
            }
        };
        match catalog.push(bytes, PolicyRole::Active, None, "dir").await {
            Ok(p) => {
                swapped += usize::from(p.changed);
                tracing::info!(path = %path.display(), policy = %p.policy.name, version = %p.policy.version,
                    sha256 = %p.policy.sha256, changed = p.changed, "Policy file swapped in.");
                watch.handled(path, stamp);
            }
            // Not a policy (or not one that loads): refused until it changes.
            Err(
                e @ (CatalogError::Policy(
                    PolicyError::InvalidComponent(_)
                    | PolicyError::WrongWorld(_)
                    | PolicyError::InvalidMetadata(_)
                    | PolicyError::Trap(_)
                    | PolicyError::OutOfFuel(_)
                    | PolicyError::Timeout(_)
                    | PolicyError::MemoryLimit { .. }
                    | PolicyError::SandboxLimit { .. }
                    | PolicyError::LimitRefused { .. },
                )
                | CatalogError::NameMismatch { .. }),
            ) => {
                tracing::error!(path = %path.display(), error = %e,
                    "Policy file refused; the current version keeps serving.");
                watch.handled(path, stamp);
            }
            // The store or the blobs failed: tried again at the next poll.
            Err(e) => tracing::warn!(path = %path.display(), error = %e,
                "Could not swap the policy file in yet; retrying."),
        }
    }
    swapped
}

/// Follows the persisted set and pushes what changes in the watched
/// directory (its baseline taken when the directory was loaded), every
/// `interval` until `stop`.
pub async fn follow(
    catalog: Arc<Catalog>,
    mut watch: Option<DirWatch>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => break,
        }
        if let Some(w) = &mut watch {
            push_changed(&catalog, w).await;
        }
        if let Err(e) = catalog.follow().await {
            tracing::error!(error = %e, "Cannot read the policy set; keeping the current one.");
        }
    }
}
