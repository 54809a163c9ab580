//! Where pushed policy components are kept, by sha256, so every replica (and a
//! restarted host) can load the version the persisted policy set points at.
//! In the store by default ([`StoreBlobs`]: every replica already shares it,
//! SQLite or DynamoDB), or a directory ([`BlobDir`]) on one machine or on a
//! volume every replica mounts.

use std::path::{Path, PathBuf};

/// Blob store failures.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// Reading or writing the blob failed.
    #[error("policy blob {sha256}: {source}")]
    Io {
        /// The blob's sha256.
        sha256: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The stored bytes do not hash to their name: never served.
    #[error("policy blob {0} is corrupt (its bytes do not match its sha256)")]
    Corrupt(String),
    /// Not a sha256 in hex: refused before it reaches a path.
    #[error("{0:?} is not a sha256")]
    BadName(String),
    /// The blocking worker failed.
    #[error("blob worker failed: {0}")]
    Worker(String),
}

/// Policy components by sha256.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync {
    /// Keeps `bytes` under `sha256` (idempotent).
    async fn put(&self, sha256: &str, bytes: &[u8]) -> Result<(), BlobError>;
    /// The bytes under `sha256`, checked against it; `None` when absent.
    async fn get(&self, sha256: &str) -> Result<Option<Vec<u8>>, BlobError>;
}

/// A directory of `<sha256>.wasm` files.
#[derive(Debug, Clone)]
pub struct BlobDir {
    dir: PathBuf,
}

impl BlobDir {
    /// Blobs under `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        BlobDir { dir: dir.into() }
    }

    fn path(&self, sha256: &str) -> Result<PathBuf, BlobError> {
        let hex = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex {
            return Err(BlobError::BadName(sha256.to_owned()));
        }
        Ok(self.dir.join(format!("{sha256}.wasm")))
    }
}

fn io(sha256: &str) -> impl FnOnce(std::io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        sha256: sha256.to_owned(),
        source,
    }
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    // Unique per write: replicas on one volume are often all pid 1.
    let mut nonce = [0u8; 8];
    getrandom::getrandom(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
    let tmp = path.with_extension(format!("tmp-{}", hex::encode(nonce)));
    std::fs::write(&tmp, bytes)?;
    // Renamed into place: a reader sees the whole file or none.
    std::fs::rename(&tmp, path)
}

#[async_trait::async_trait]
impl BlobStore for BlobDir {
    async fn put(&self, sha256: &str, bytes: &[u8]) -> Result<(), BlobError> {
        let path = self.path(sha256)?;
        // Kept only when whole: a corrupt file is written again.
        if matches!(self.get(sha256).await, Ok(Some(_))) {
            return Ok(());
        }
        let (dir, bytes) = (self.dir.clone(), bytes.to_vec());
        let sha = sha256.to_owned();
        tokio::task::spawn_blocking(move || write_atomically(&dir, &path, &bytes).map_err(io(&sha)))
            .await
            .map_err(|e| BlobError::Worker(e.to_string()))?
    }

    async fn get(&self, sha256: &str) -> Result<Option<Vec<u8>>, BlobError> {
        let path = self.path(sha256)?;
        let sha = sha256.to_owned();
        tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(bytes) if super::engine::sha256_hex(&bytes) == sha => Ok(Some(bytes)),
            Ok(_) => Err(BlobError::Corrupt(sha)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&sha)(e)),
        })
        .await
        .map_err(|e| BlobError::Worker(e.to_string()))?
    }
}

/// Raw bytes per stored chunk: base64 makes it 256 KiB, inside DynamoDB's
/// 400 KB item.
const CHUNK_BYTES: usize = 192 << 10;

/// Components in the store's shared control state: a manifest
/// (`policy-blob/<sha256>` → chunk count) and base64 chunks
/// (`policy-blob/<sha256>/<i>`), each written once (insert if absent), the
/// manifest last, so a reader sees a whole component or none.
pub struct StoreBlobs {
    store: std::sync::Arc<dyn crate::store::Store>,
}

impl std::fmt::Debug for StoreBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreBlobs")
    }
}

impl StoreBlobs {
    /// Blobs in `store`.
    pub fn new(store: std::sync::Arc<dyn crate::store::Store>) -> Self {
        StoreBlobs { store }
    }
}

fn store_err(sha256: &str) -> impl FnOnce(crate::store::StoreError) -> BlobError + '_ {
    move |e| BlobError::Io {
        sha256: sha256.to_owned(),
        source: std::io::Error::other(e.to_string()),
    }
}

fn check_name(sha256: &str) -> Result<(), BlobError> {
    let hex = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
    if hex {
        Ok(())
    } else {
        Err(BlobError::BadName(sha256.to_owned()))
    }
}

#[async_trait::async_trait]
impl BlobStore for StoreBlobs {
    async fn put(&self, sha256: &str, bytes: &[u8]) -> Result<(), BlobError> {
        use base64::Engine as _;
        check_name(sha256)?;
        let repair = match self.get(sha256).await {
            Ok(Some(_)) => return Ok(()),
            Err(BlobError::Corrupt(_)) => true,
            _ => false,
        };
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK_BYTES).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let key = format!("policy-blob/{sha256}/{i}");
            let value = base64::engine::general_purpose::STANDARD.encode(chunk);
            // Insert if absent: a chunk already there holds the same bytes
            // (the key names the content), unless the blob read as corrupt:
            // then every differing chunk is written again.
            let (stored, version) = self
                .store
                .governor_get(&key)
                .await
                .map_err(store_err(sha256))?;
            if version == 0 || (repair && stored.as_deref() != Some(value.as_str())) {
                self.store
                    .governor_cas(&key, &value, version)
                    .await
                    .map_err(store_err(sha256))?;
            }
        }
        let manifest = format!("policy-blob/{sha256}");
        let (existing, version) = self
            .store
            .governor_get(&manifest)
            .await
            .map_err(store_err(sha256))?;
        let count = chunks.len().to_string();
        if existing.as_deref() != Some(count.as_str()) {
            self.store
                .governor_cas(&manifest, &count, version)
                .await
                .map_err(store_err(sha256))?;
        }
        Ok(())
    }

    async fn get(&self, sha256: &str) -> Result<Option<Vec<u8>>, BlobError> {
        use base64::Engine as _;
        check_name(sha256)?;
        let (manifest, _) = self
            .store
            .governor_get(&format!("policy-blob/{sha256}"))
            .await
            .map_err(store_err(sha256))?;
        let Some(count) = manifest else {
            return Ok(None);
        };
        let count: usize = count
            .parse()
            .map_err(|_| BlobError::Corrupt(sha256.to_owned()))?;
        let mut bytes = Vec::new();
        for i in 0..count {
            let (chunk, _) = self
                .store
                .governor_get(&format!("policy-blob/{sha256}/{i}"))
                .await
                .map_err(store_err(sha256))?;
            let chunk = chunk.ok_or_else(|| BlobError::Corrupt(sha256.to_owned()))?;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(chunk.as_bytes())
                .map_err(|_| BlobError::Corrupt(sha256.to_owned()))?;
            bytes.extend_from_slice(&raw);
        }
        if super::engine::sha256_hex(&bytes) != sha256 {
            return Err(BlobError::Corrupt(sha256.to_owned()));
        }
        Ok(Some(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blobs_round_trip_and_refuse_what_does_not_match() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = BlobDir::new(dir.path().join("blobs"));
        let bytes = b"\0asm component".to_vec();
        let sha = super::super::engine::sha256_hex(&bytes);
        assert!(blobs.get(&sha).await.expect("get").is_none());
        blobs.put(&sha, &bytes).await.expect("put");
        blobs.put(&sha, &bytes).await.expect("idempotent");
        assert_eq!(blobs.get(&sha).await.expect("get"), Some(bytes.clone()));
        std::fs::write(dir.path().join("blobs").join(format!("{sha}.wasm")), b"x").expect("w");
        assert!(matches!(blobs.get(&sha).await, Err(BlobError::Corrupt(_))));
        assert!(matches!(
            blobs.get("../../etc/passwd").await,
            Err(BlobError::BadName(_))
        ));
        // A corrupt file is written again by the next put.
        blobs.put(&sha, &bytes).await.expect("repair");
        assert_eq!(blobs.get(&sha).await.expect("get"), Some(bytes));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blobs_in_the_store_span_chunks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::SqliteStore::open(&dir.path().join("h.db"))
            .await
            .expect("sqlite");
        let store: std::sync::Arc<dyn crate::store::Store> = std::sync::Arc::new(store);
        let blobs = StoreBlobs::new(store.clone());
        let bytes: Vec<u8> = (0..(CHUNK_BYTES * 2 + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        let sha = super::super::engine::sha256_hex(&bytes);
        assert!(blobs.get(&sha).await.expect("get").is_none());
        blobs.put(&sha, &bytes).await.expect("put");
        blobs.put(&sha, &bytes).await.expect("idempotent");
        assert_eq!(blobs.get(&sha).await.expect("get"), Some(bytes.clone()));
        assert!(matches!(
            blobs.get("nope").await,
            Err(BlobError::BadName(_))
        ));
        // A corrupt chunk reads as corrupt, and the next put repairs it.
        let key = format!("policy-blob/{sha}/1");
        let (_, version) = store.governor_get(&key).await.expect("get");
        assert!(
            store
                .governor_cas(&key, "AAAA", version)
                .await
                .expect("cas")
        );
        assert!(matches!(blobs.get(&sha).await, Err(BlobError::Corrupt(_))));
        blobs.put(&sha, &bytes).await.expect("repair");
        assert_eq!(blobs.get(&sha).await.expect("get"), Some(bytes));
    }
}
