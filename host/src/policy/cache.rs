//! On-disk cache of precompiled policy components, keyed by the component's
//! sha256 and the engine's compatibility hash, so a restart (or `healer policy
//! eval`) skips Cranelift. A stale or corrupt entry is recompiled, never trusted.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of `<sha256>-<engine>.cwasm` files.
#[derive(Debug)]
pub(crate) struct PrecompileCache {
    dir: PathBuf,
    engine_tag: String,
    /// Loads answered from the directory, and compiles it could not spare.
    hits: AtomicU64,
    misses: AtomicU64,
}

impl PrecompileCache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        PrecompileCache {
            dir,
            engine_tag: format!("{:016x}", h.finish()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// (hits, misses) since the engine started.
    pub(crate) fn stats(&self) -> (u64, u64) {
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_tag))
    }

    /// Loads a cached artifact; `None` when absent or unusable.
    pub(crate) fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path(sha256);
        if !path.is_file() {
            self.misses.fetch_add(1, Relaxed);
            return None;
        }
        // SAFETY: the file was written by `store` below from `Component::serialize`
        // of the same engine configuration (the file name carries the engine's
        // compatibility hash), and the cache directory belongs to the host.
        // `deserialize_file` still validates the header and rejects mismatches.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => {
                self.hits.fetch_add(1, Relaxed);
                Some(c)
            }
            Err(error) => {
                self.misses.fetch_add(1, Relaxed);
                tracing::warn!(path = %path.display(), error = %error, "Discarding unusable precompiled policy.");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores an artifact atomically (write to a temp file, then rename).
    pub(crate) fn store(&self, sha256: &str, component: &Component) {
        if let Err(error) = self.try_store(sha256, component) {
            tracing::warn!(dir = %self.dir.display(), error = %error, "Could not cache precompiled policy.");
        }
    }

    fn try_store(&self, sha256: &str, component: &Component) -> Result<(), String> {
        let bytes = component.serialize().map_err(|e| format!("{e:#}"))?;
        let path = self.path(sha256);
        let tmp = tmp_path(&path);
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| e.to_string())
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".tmp{}", std::process::id()));
    PathBuf::from(p)
}
