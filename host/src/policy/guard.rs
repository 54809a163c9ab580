//! The regression guard: after a version is activated, the host watches the
//! first incidents it decides and rolls it back on its own when they fail
//! (a policy error or trap, an escalation, a failed action) at a rate past
//! the previous version's by more than a margin. Off unless configured
//! (`HEALER_REGRESSION_GUARD_DECISIONS`).
//!
//! The outcomes come from the store (the incidents recorded in the last
//! week, [`Store::recent`]), so every replica judges on the same fleet-wide
//! record. An incident counts once it is settled: closed, or its decision
//! failed. Each activated version is judged once per replica, on its first
//! N settled incidents; the rollback is a compare-and-set on the shared
//! policy set that only applies while that version is still the active one,
//! so replicas judging the same version roll it back once, never twice.
//! Who and why go into the set's `changed-by` (shown by `GET /policies` and
//! the dashboard), the log (error level),
//! `healer_policy_auto_rollbacks_total{policy}` and, in live mode, a message
//! on the `default` notification channel.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::catalog::{Catalog, CatalogError};
use super::set::PolicyPointer;
use crate::store::{IncidentRecord, LifecycleState, Outcome, Store};

/// What the guard's rollbacks are recorded as by (`changed-by` starts with it).
const GUARD: &str = "regression-guard:";

/// Whether a policy's active version is one the guard judges: an
/// activation with an earlier one to go back to, not retired, and not put
/// back by the guard itself (no rollback loop down the history).
fn watched(p: &PolicyPointer) -> bool {
    p.activations.len() >= 2 && !p.retired && !p.changed_by.starts_with(GUARD)
}

/// How often the guard looks.
const EVERY: Duration = Duration::from_secs(1);
/// Recent incidents the guard reads each time.
const WINDOW: usize = 1000;

/// What the guard watches for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardConfig {
    /// Settled incidents a new version decides before it is judged (0: off).
    pub decisions: u64,
    /// How far its failure rate may exceed the previous version's, as a
    /// fraction (0.2: 20 percentage points).
    pub margin: f64,
}

/// One settled incident a version decided: when, and whether it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// When it was decided (detection time when the record has no decided stage).
    pub at: DateTime<Utc>,
    /// The decision failed, the incident escalated, or an action failed.
    pub failed: bool,
    /// The decision itself failed (the policy erred or trapped).
    pub errored: bool,
}

/// The settled incidents of each version (by sha256) of the policy `name`
/// among `records` (its acting decisions only), oldest first.
pub fn settled(records: &[IncidentRecord], name: &str) -> BTreeMap<String, Vec<Settled>> {
    let mut out: BTreeMap<String, Vec<Settled>> = BTreeMap::new();
    for r in records {
        let Some(p) = r.provenance.as_ref().filter(|p| p.policy.name == name) else {
            continue;
        };
        let errored = p.decision.is_err();
        if !(errored || r.state.is_terminal()) {
            continue;
        }
        let failed = errored
            || r.state == LifecycleState::Escalated
            || r.steps
                .iter()
                .any(|s| matches!(s.result, Outcome::Failed(_)));
        let at = r
            .timestamps
            .get(&LifecycleState::Decided)
            .copied()
            .unwrap_or(r.incident.detected_at);
        out.entry(p.policy.sha256.clone())
            .or_default()
            .push(Settled {
                at,
                failed,
                errored,
            });
    }
    for v in out.values_mut() {
        v.sort_by_key(|s| s.at);
    }
    out
}

/// A version the guard rolls back.
#[derive(Debug, Clone, PartialEq)]
pub struct Regression {
    /// Policy name.
    pub name: String,
    /// The failing version's sha256.
    pub sha256: String,
    /// Failed incidents of its first judged ones.
    pub failed: u64,
    /// Incidents judged.
    pub judged: u64,
    /// The previous version's failure rate (0 when it settled none).
    pub previous_rate: f64,
    /// The previous version's sha256.
    pub previous: String,
}

impl Regression {
    /// Why, for the record; versions by their version strings.
    pub fn reason(&self, version: &str, previous: &str, margin: f64) -> String {
        format!(
            "regression-guard: {}@{version} failed {} of its first {} incidents ({:.0}%) \
             against {:.0}% for {previous} (margin {:.0} points): errors, escalations or \
             failed actions; rolled back",
            self.name,
            self.failed,
            self.judged,
            100.0 * self.failed as f64 / self.judged.max(1) as f64,
            100.0 * self.previous_rate,
            100.0 * margin
        )
    }
}

/// Whether the active version of `name` (the last of `pointer`'s
/// activations, made at `pointer.changed_at`) has settled its first
/// `cfg.decisions` incidents decided since, in `outcomes`, and if so whether
/// it regressed against the previous version's incidents decided before.
/// `None` while it is still watched, with nothing to go back to, or when
/// the guard itself put this version back (it is not judged again);
/// `Some(None)`: judged, fine.
///
/// With fewer than `cfg.decisions` settled incidents of the previous
/// version to compare with, only policy errors and traps count (an
/// escalation may be a plan's intent, and there is no rate of it to hold
/// against).
pub fn judge(
    name: &str,
    pointer: &PolicyPointer,
    outcomes: &BTreeMap<String, Vec<Settled>>,
    cfg: GuardConfig,
) -> Option<Option<Regression>> {
    let n = pointer.activations.len();
    if n < 2 || !watched(pointer) {
        return None;
    }
    let (active, previous) = (&pointer.activations[n - 1], &pointer.activations[n - 2]);
    let since = pointer.changed_at;
    let first: Vec<&Settled> = outcomes
        .get(active)?
        .iter()
        .filter(|s| s.at >= since)
        .take(usize::try_from(cfg.decisions).unwrap_or(usize::MAX))
        .collect();
    if (first.len() as u64) < cfg.decisions {
        return None;
    }
    let before: Vec<&Settled> = outcomes
        .get(previous)
        .map(|v| v.iter().filter(|s| s.at < since).collect())
        .unwrap_or_default();
    let baseline = before.len() as u64 >= cfg.decisions;
    let counts = |s: &&&Settled| if baseline { s.failed } else { s.errored };
    let failed = first.iter().filter(counts).count() as u64;
    let previous_rate = if before.is_empty() {
        0.0
    } else {
        before.iter().filter(counts).count() as f64 / before.len() as f64
    };
    let rate = failed as f64 / first.len().max(1) as f64;
    Some((rate > previous_rate + cfg.margin).then(|| Regression {
        name: name.to_owned(),
        sha256: active.clone(),
        failed,
        judged: first.len() as u64,
        previous_rate,
        previous: previous.clone(),
    }))
}

/// Runs the guard until `stop` turns true (nothing when it is off);
/// `notify` tells the team of each rollback (live mode).
pub async fn run(
    catalog: Arc<Catalog>,
    store: Arc<dyn Store>,
    cfg: GuardConfig,
    notify: Option<crate::actions::SnsExecutor>,
    mut stop: watch::Receiver<bool>,
) {
    if cfg.decisions == 0 {
        return;
    }
    // (name, sha256, activation time) of versions already judged here.
    let mut judged: HashSet<(String, String, DateTime<Utc>)> = HashSet::new();
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
        let key = |name: &str, p: &PolicyPointer| {
            (
                name.to_owned(),
                p.active().unwrap_or_default().to_owned(),
                p.changed_at,
            )
        };
        // Only versions still watched make the guard read the incidents.
        let pending: Vec<(&String, &PolicyPointer)> = set
            .policies
            .iter()
            .filter(|(name, p)| watched(p) && !judged.contains(&key(name, p)))
            .collect();
        if pending.is_empty() {
            continue;
        }
        let recent = match store.recent(WINDOW).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "The regression guard could not read the incidents.");
                continue;
            }
        };
        for (name, pointer) in pending {
            let Some(verdict) = judge(name, pointer, &settled(&recent, name), cfg) else {
                continue;
            };
            let done = match verdict {
                None => true,
                Some(r) => roll_back(&catalog, &r, cfg, notify.as_ref()).await,
            };
            // A rollback that failed (the store) is tried again next time.
            if done {
                judged.insert(key(name, pointer));
            }
        }
    }
}

/// The version string of a stored version (its sha256's start when unknown).
fn version_of(catalog: &Catalog, sha256: &str) -> String {
    catalog.registry().loaded(sha256).map_or_else(
        || sha256.get(..12).unwrap_or(sha256).to_owned(),
        |p| p.id.version.clone(),
    )
}

/// Rolls the version back and tells; whether that is settled (rolled
/// back, or already replaced), so it is not tried again.
async fn roll_back(
    catalog: &Catalog,
    r: &Regression,
    cfg: GuardConfig,
    notify: Option<&crate::actions::SnsExecutor>,
) -> bool {
    let (version, previous) = (
        version_of(catalog, &r.sha256),
        version_of(catalog, &r.previous),
    );
    let why = r.reason(&version, &previous, cfg.margin);
    match catalog.rollback_if_active(&r.name, &r.sha256, &why).await {
        Ok(Some(to)) => {
            crate::metrics::metrics().inc(
                crate::metrics::Counter::PolicyAutoRollbacks,
                &[("policy", r.name.as_str())],
            );
            tracing::error!(policy = %r.name, from = %version, to = %to.version,
                reason = %why, "Regression guard rolled a policy back.");
            if let Some(sns) = notify {
                let subject = format!(
                    "healer regression guard rolled {} back from {version} to {}",
                    r.name, to.version
                );
                if let Err(e) = sns
                    .announce(crate::actions::DEFAULT_CHANNEL, &subject, &why)
                    .await
                {
                    tracing::warn!(policy = %r.name, error = %e,
                        "Regression guard could not notify the rollback.");
                }
            }
            true
        }
        Ok(None) => {
            tracing::info!(policy = %r.name, version = %version,
                "Regression guard: the version was already replaced.");
            true
        }
        Err(CatalogError::NoEarlier(_)) => true,
        Err(e) => {
            tracing::warn!(policy = %r.name, error = %e,
                "Regression guard could not roll back; trying again.");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::minutes(minute)
    }

    /// Failures are policy errors when `errors`, escalations otherwise;
    /// the old version's incidents come before the activation (minute 50),
    /// the new one's after.
    fn outcomes(old: &[bool], new: &[bool], errors: bool) -> BTreeMap<String, Vec<Settled>> {
        let list = |v: &[bool], from: i64| {
            v.iter()
                .enumerate()
                .map(|(i, f)| Settled {
                    at: at(from + i as i64),
                    failed: *f,
                    errored: *f && errors,
                })
                .collect::<Vec<_>>()
        };
        BTreeMap::from([
            ("a".to_owned(), list(old, 0)),
            ("b".to_owned(), list(new, 100)),
        ])
    }

    fn pointer(by: &str) -> PolicyPointer {
        PolicyPointer {
            activations: vec!["a".into(), "b".into()],
            shadow: None,
            changed_at: at(50),
            changed_by: by.into(),
            retired: false,
            limits: Default::default(),
        }
    }

    fn case(old: &[bool], new: &[bool]) -> Option<Option<Regression>> {
        judged_with(old, new, true, "api")
    }

    fn judged_with(
        old: &[bool],
        new: &[bool],
        errors: bool,
        by: &str,
    ) -> Option<Option<Regression>> {
        let pointer = pointer(by);
        let cfg = GuardConfig {
            decisions: 4,
            margin: 0.2,
        };
        judge("p", &pointer, &outcomes(old, new, errors), cfg)
    }

    #[test]
    fn closed_incidents_count_and_escalations_and_errors_fail() {
        let record = |n: u32, state: LifecycleState, ok: bool| {
            let incident = crate::Incident::from_json(
                format!(
                    r#"{{"kind":"alarm","source":"t","reason":"r{n}",
                        "resource":{{"kind":"alarm","id":"a{n}"}},"detected-at":"2024-05-01T10:0{n}:00Z"}}"#
                )
                .as_bytes(),
            )
            .expect("incident");
            let mut r = IncidentRecord::detected(incident);
            r.state = state;
            r.provenance = Some(crate::store::Provenance {
                policy: crate::policy::PolicyId {
                    name: "p".into(),
                    version: "2".into(),
                    sha256: "b".into(),
                },
                input_hash: String::new(),
                fuel_used: 0,
                duration_us: 0,
                decision: if ok {
                    Ok(crate::Decision {
                        steps: Vec::new(),
                        verify: None,
                        summary: String::new(),
                    })
                } else {
                    Err("trap".into())
                },
            });
            r
        };
        let records = [
            record(4, LifecycleState::Healed, true),
            record(3, LifecycleState::Escalated, true),
            record(2, LifecycleState::Verifying, true),
            record(1, LifecycleState::Escalated, false),
        ];
        let failed: Vec<bool> = settled(&records, "p")["b"]
            .iter()
            .map(|s| s.failed)
            .collect();
        // Oldest first; the open one is not settled yet.
        assert_eq!(failed, [true, true, false]);
        assert!(settled(&records, "other").is_empty());
    }

    #[test]
    fn only_incidents_after_the_activation_count_and_the_guard_does_not_judge_its_own_rollback() {
        let ok = [false; 10];
        // The new version's incidents all came before its activation: watched.
        let mut o = outcomes(&ok, &[true, true, true, true], true);
        for s in o.get_mut("b").into_iter().flatten() {
            s.at = at(10);
        }
        assert_eq!(
            judge(
                "p",
                &pointer("api"),
                &o,
                GuardConfig {
                    decisions: 4,
                    margin: 0.2
                }
            ),
            None
        );
        // A version the guard put back is not judged again.
        assert_eq!(
            judged_with(&ok, &[true; 4], true, "regression-guard: p@2 failed"),
            None
        );
        // Without a baseline of the previous version, escalations alone do
        // not roll back (they may be the plan); errors still do.
        assert_eq!(judged_with(&[false], &[true; 4], false, "api"), Some(None));
        assert!(
            judged_with(&[false], &[true; 4], true, "api")
                .expect("judged")
                .is_some()
        );
    }

    #[test]
    fn a_version_is_judged_on_its_first_settled_incidents_against_the_previous_rate() {
        let ok = [false; 10];
        assert_eq!(case(&ok, &[true, true, true]), None, "still watched");
        let r = case(&ok, &[true, true, true, false, true])
            .expect("judged")
            .expect("regressed");
        assert_eq!((r.failed, r.judged, r.previous.as_str()), (3, 4, "a"));
        assert!(
            r.reason("2", "1", 0.2).contains("75%"),
            "{}",
            r.reason("2", "1", 0.2)
        );
        let one_in_ten = [
            true, false, false, false, false, false, false, false, false, false,
        ];
        assert_eq!(
            case(&one_in_ten, &[false, false, false, true]),
            Some(None),
            "25% against 10%: within the margin"
        );
        let half = [true, false, true, false];
        assert_eq!(
            case(&half, &[true, true, false, false]),
            Some(None),
            "no worse"
        );
        assert!(
            case(&[], &[true, false, false, false])
                .expect("judged")
                .is_some(),
            "no baseline"
        );
    }
}
