//! The chaos journal: one JSON file per experiment in a directory (the data
//! directory's `chaos/`), written before each change it covers and replaced
//! atomically (write, then rename), so `healer chaos revert` can undo what a
//! killed or crashed chaos process left behind.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ChaosError, Fault, Reverted, Undo};

/// Where an experiment is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum ExperimentState {
    /// Injected (or being injected): to revert by `revert_at`.
    Active,
    /// Reverted at `at`.
    Reverted {
        at: DateTime<Utc>,
        outcome: Reverted,
    },
}

/// One experiment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Experiment {
    /// `chaos-…`.
    pub id: String,
    /// The fault.
    pub fault: Fault,
    /// The resource the guard checked.
    pub target: String,
    /// When it was injected.
    pub started_at: DateTime<Utc>,
    /// When it is to be reverted.
    pub revert_at: DateTime<Utc>,
    /// What undoes it.
    pub undo: Undo,
    /// Active or reverted.
    #[serde(flatten)]
    pub state: ExperimentState,
}

/// The journal directory.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// The journal in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Journal { dir: dir.into() }
    }

    /// A new experiment id: time-ordered, unique per process.
    pub fn new_id(now: DateTime<Utc>) -> String {
        format!(
            "chaos-{}-{}",
            now.format("%Y%m%dT%H%M%S"),
            std::process::id()
        )
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes `e`, replacing its previous version atomically.
    pub fn save(&self, e: &Experiment) -> Result<(), ChaosError> {
        let io = |source| ChaosError::Journal {
            path: self.dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let json = serde_json::to_vec_pretty(e).map_err(|source| ChaosError::Entry {
            path: self.path(&e.id).display().to_string(),
            source,
        })?;
        let tmp = self.dir.join(format!(".{}.tmp", e.id));
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::rename(&tmp, self.path(&e.id)).map_err(io)
    }

    /// The experiment `id`.
    pub fn get(&self, id: &str) -> Result<Option<Experiment>, ChaosError> {
        read(&self.path(id))
    }

    /// Every experiment, oldest first.
    pub fn list(&self) -> Result<Vec<Experiment>, ChaosError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(ChaosError::Journal {
                    path: self.dir.display().to_string(),
                    source,
                });
            }
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let p = entry.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with("chaos-") && name.ends_with(".json") {
                out.extend(read(&p)?);
            }
        }
        out.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        Ok(out)
    }
}

fn read(path: &Path) -> Result<Option<Experiment>, ChaosError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ChaosError::Journal {
                path: path.display().to_string(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| ChaosError::Entry {
            path: path.display().to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn experiments_are_saved_replaced_and_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::new(dir.path().join("chaos"));
        assert!(j.list().expect("empty").is_empty());
        let now = Utc::now();
        let mut e = Experiment {
            id: Journal::new_id(now),
            fault: Fault::StopTask {
                cluster: "c".into(),
                service: "s".into(),
            },
            target: "t".into(),
            started_at: now,
            revert_at: now,
            undo: Undo::Nothing { why: "w".into() },
            state: ExperimentState::Active,
        };
        j.save(&e).expect("save");
        e.state = ExperimentState::Reverted {
            at: now,
            outcome: Reverted::NothingToDo { why: "w".into() },
        };
        j.save(&e).expect("replace");
        assert_eq!(j.list().expect("list"), vec![e.clone()]);
        assert_eq!(j.get(&e.id).expect("get"), Some(e));
        assert_eq!(j.get("chaos-none").expect("get"), None);
    }
}
