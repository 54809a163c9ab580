//! Where pushed policy components are kept, by sha256, so every replica (and a
//! restarted host) can load the version the persisted policy set points at.
//! A directory by default: on one machine, or on a volume every replica mounts
//! (EFS on Fargate).

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
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    // Renamed into place: a reader sees the whole file or none.
    std::fs::rename(&tmp, path)
}

#[async_trait::async_trait]
impl BlobStore for BlobDir {
    async fn put(&self, sha256: &str, bytes: &[u8]) -> Result<(), BlobError> {
        let path = self.path(sha256)?;
        if path.is_file() {
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
        assert_eq!(blobs.get(&sha).await.expect("get"), Some(bytes));
        std::fs::write(dir.path().join("blobs").join(format!("{sha}.wasm")), b"x").expect("w");
        assert!(matches!(blobs.get(&sha).await, Err(BlobError::Corrupt(_))));
        assert!(matches!(
            blobs.get("../../etc/passwd").await,
            Err(BlobError::BadName(_))
        ));
    }
}
