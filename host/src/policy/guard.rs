//! The regression guard: after a version is activated, this replica watches
//! its first decisions and rolls it back on its own when it fails (traps,
//! limits, policy errors) at a rate past the previous version's by more than
//! a margin. Off unless configured (`HEALER_REGRESSION_GUARD_DECISIONS`).
//!
//! Each activated version is judged once, on the first N decisions this
//! replica saw it make; the rollback is a compare-and-set on the shared
//! policy set that only applies while that version is still the active one,
//! so two replicas judging the same version roll it back once, never twice.
//! Who and why go into the set's `changed-by` (shown by `GET /policies` and
//! the dashboard), the log (error level),
//! `healer_policy_auto_rollbacks_total{policy}` and, in live mode, a message
//! on the `default` notification channel.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::catalog::{Catalog, CatalogError};
use super::set::PolicyPointer;
use super::{PolicyRole, RegistryEntry};

/// How often the guard looks.
const EVERY: Duration = Duration::from_secs(1);

/// What the guard watches for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardConfig {
    /// Decisions a new version makes before it is judged (0: off).
    pub decisions: u64,
    /// How far its failure rate may exceed the previous version's, as a
    /// fraction (0.2: 20 percentage points).
    pub margin: f64,
}

/// A version the guard rolls back.
#[derive(Debug, Clone, PartialEq)]
pub struct Regression {
    /// Policy name.
    pub name: String,
    /// The failing version's sha256.
    pub sha256: String,
    /// Its version string.
    pub version: String,
    /// Failed decisions of its first judged ones.
    pub failed: u64,
    /// Decisions judged.
    pub decided: u64,
    /// The previous version's failure rate on this replica (0 when it made none).
    pub previous_rate: f64,
    /// The previous version's version string.
    pub previous: String,
}

impl Regression {
    /// Why, for the record.
    pub fn reason(&self, margin: f64) -> String {
        format!(
            "regression-guard: {}@{} failed {} of its first {} decisions ({:.0}%) against {:.0}% \
             for {} (margin {:.0} points); rolled back",
            self.name,
            self.version,
            self.failed,
            self.decided,
            100.0 * self.failed as f64 / self.decided.max(1) as f64,
            100.0 * self.previous_rate,
            self.previous,
            100.0 * margin
        )
    }
}

/// Whether the active version of `entry` (the last of `pointer`'s
/// activations) has made its first `cfg.decisions` decisions, and if so
/// whether it regressed. `None` while it is still being watched, or when
/// there is nothing to go back to. `Some(None)`: judged, fine.
pub fn judge(
    entry: &RegistryEntry,
    pointer: &PolicyPointer,
    cfg: GuardConfig,
) -> Option<Option<Regression>> {
    let n = pointer.activations.len();
    let (active, previous) = match n {
        0 | 1 => return None,
        _ => (&pointer.activations[n - 1], &pointer.activations[n - 2]),
    };
    let of = |sha: &str| entry.versions.iter().find(|v| v.sha256 == *sha);
    let now = of(active).filter(|v| v.role == Some(PolicyRole::Active))?;
    if now.decisions < cfg.decisions {
        return None;
    }
    let before = of(previous);
    let previous_rate = before
        .filter(|v| v.decisions > 0)
        .map_or(0.0, |v| v.errors as f64 / v.decisions as f64);
    let rate = now.errors as f64 / now.decisions.max(1) as f64;
    Some((rate > previous_rate + cfg.margin).then(|| Regression {
        name: entry.name.clone(),
        sha256: now.sha256.clone(),
        version: now.version.clone(),
        failed: now.errors,
        decided: now.decisions,
        previous_rate,
        previous: before.map_or_else(|| previous.clone(), |v| v.version.clone()),
    }))
}

/// Runs the guard until `stop` turns true (nothing when it is off);
/// `notify` tells the team of each rollback (live mode).
pub async fn run(
    catalog: Arc<Catalog>,
    cfg: GuardConfig,
    notify: Option<crate::actions::SnsExecutor>,
    mut stop: watch::Receiver<bool>,
) {
    if cfg.decisions == 0 {
        return;
    }
    // (name, sha256) of versions already judged on this replica.
    let mut judged: HashSet<(String, String)> = HashSet::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let set = match catalog.read().await {
            Ok((set, _)) => set,
            Err(e) => {
                tracing::warn!(error = %e, "The regression guard could not read the policy set.");
                continue;
            }
        };
        for entry in catalog.registry().list() {
            let Some(pointer) = set.policies.get(&entry.name) else {
                continue;
            };
            let Some(active) = pointer.activations.last() else {
                continue;
            };
            let key = (entry.name.clone(), active.clone());
            if judged.contains(&key) {
                continue;
            }
            let Some(verdict) = judge(&entry, pointer, cfg) else {
                continue;
            };
            judged.insert(key);
            if let Some(r) = verdict {
                roll_back(&catalog, &r, cfg, notify.as_ref()).await;
            }
        }
    }
}

async fn roll_back(
    catalog: &Catalog,
    r: &Regression,
    cfg: GuardConfig,
    notify: Option<&crate::actions::SnsExecutor>,
) {
    let why = r.reason(cfg.margin);
    match catalog.rollback_if_active(&r.name, &r.sha256, &why).await {
        Ok(Some(to)) => {
            crate::metrics::metrics().inc(
                crate::metrics::Counter::PolicyAutoRollbacks,
                &[("policy", r.name.as_str())],
            );
            tracing::error!(policy = %r.name, from = %r.version, to = %to.version,
                reason = %why, "Regression guard rolled a policy back.");
            if let Some(sns) = notify {
                let subject = format!(
                    "healer regression guard rolled {} back from {} to {}",
                    r.name, r.version, to.version
                );
                if let Err(e) = sns
                    .announce(crate::actions::DEFAULT_CHANNEL, &subject, &why)
                    .await
                {
                    tracing::warn!(policy = %r.name, error = %e,
                        "Regression guard could not notify the rollback.");
                }
            }
        }
        Ok(None) => tracing::info!(policy = %r.name, version = %r.version,
            "Regression guard: the version was already replaced."),
        Err(CatalogError::NoEarlier(_)) => {}
        Err(e) => tracing::warn!(policy = %r.name, error = %e,
            "Regression guard could not roll back."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyVersionInfo;

    fn version(
        sha: &str,
        decisions: u64,
        errors: u64,
        role: Option<PolicyRole>,
    ) -> PolicyVersionInfo {
        PolicyVersionInfo {
            version: sha.to_uppercase(),
            sha256: sha.to_owned(),
            uploaded_at: chrono::Utc::now(),
            size: 1,
            world: "0.2.0",
            decisions,
            errors,
            role,
        }
    }

    fn case(old: (u64, u64), new: (u64, u64)) -> Option<Option<Regression>> {
        let entry = RegistryEntry {
            name: "p".into(),
            handles: Vec::new(),
            versions: vec![
                version("a", old.0, old.1, None),
                version("b", new.0, new.1, Some(PolicyRole::Active)),
            ],
        };
        let pointer = PolicyPointer {
            activations: vec!["a".into(), "b".into()],
            shadow: None,
            changed_at: chrono::Utc::now(),
            changed_by: "test".into(),
            retired: false,
        };
        judge(
            &entry,
            &pointer,
            GuardConfig {
                decisions: 10,
                margin: 0.2,
            },
        )
    }

    #[test]
    fn a_version_is_judged_after_its_first_n_decisions_against_the_previous_rate() {
        assert_eq!(case((100, 0), (9, 9)), None, "still watched");
        let r = case((100, 0), (10, 9)).expect("judged").expect("regressed");
        assert_eq!((r.failed, r.decided, r.previous.as_str()), (9, 10, "A"));
        assert!(r.reason(0.2).contains("90%"), "{}", r.reason(0.2));
        assert_eq!(case((100, 0), (10, 2)), Some(None), "within the margin");
        assert_eq!(case((100, 50), (10, 6)), Some(None), "no worse than before");
        assert!(
            case((0, 0), (10, 3)).expect("judged").is_some(),
            "no baseline: the margin alone"
        );
    }
}
