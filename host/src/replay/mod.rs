//! Replay: a candidate policy on the exact inputs the store recorded, beside
//! the decisions that were made. A policy is a pure function of its input
//! (virtual clock, seeded randomness), so the recorded version reproduces
//! every recorded decision; a candidate's differences are what deploying it
//! would have changed.

mod diff;
mod mttr;
mod shadow;
mod verdicts;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use diff::{Comparison, FieldChange, PlanDiff, StepChange, compare};
pub use mttr::MttrBacktest;
pub use shadow::shadow_report;
pub use verdicts::{denied, judge as judge_verdicts};

use crate::incident::{IncidentId, IncidentKind};
use crate::policy::{LoadedPolicy, PolicyEngine, PolicyId, PolicyInput};
use crate::store::{IncidentRecord, ListFilter, Provenance, Store, StoreError};

/// Which recorded decisions to replay.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only this kind.
    pub kind: Option<IncidentKind>,
    /// Only incidents detected at or after.
    pub since: Option<DateTime<Utc>>,
    /// Only incidents detected before.
    pub until: Option<DateTime<Utc>>,
}

/// One recorded decision and the input it was made on.
#[derive(Debug, Clone)]
pub struct Case {
    /// The incident.
    pub id: IncidentId,
    /// Its kind.
    pub kind: IncidentKind,
    /// The recorded decision.
    pub recorded: Provenance,
    /// The exact input.
    pub input: PolicyInput,
    /// The incident's MTTR when this decision was the acting one and the
    /// incident healed (what the recorded plan, run, gave).
    pub healed_ms: Option<i64>,
}

/// Recorded decisions left out, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Skipped {
    /// Incidents no version of the compared policy decided.
    pub not_decided_by: usize,
    /// Decisions whose input the store does not hold (recorded before
    /// inputs were kept, or unreadable).
    pub missing_input: usize,
}

/// Inputs asked of the store at once.
const INPUTS_PER_READ: usize = 1000;

/// Reads the decisions of the policy named `name` on the incidents
/// `selection` picks, with their inputs (each distinct input read once).
pub async fn select(
    store: &dyn Store,
    selection: &Selection,
    name: &str,
) -> Result<(Vec<Case>, Skipped), StoreError> {
    let mut decided = Vec::new();
    let mut skipped = Skipped::default();
    scan(store, selection, |record| match decided_by(&record, name) {
        Some(recorded) => {
            let acting = record.provenance.as_ref().is_some_and(|p| {
                p.policy.sha256 == recorded.policy.sha256 && p.input_hash == recorded.input_hash
            });
            let healed = (acting && record.state == crate::store::LifecycleState::Healed)
                .then_some(record.mttr_ms)
                .flatten();
            decided.push((record.incident.id, record.incident.kind, recorded, healed));
        }
        None => skipped.not_decided_by += 1,
    })
    .await?;
    let mut hashes: Vec<String> = decided
        .iter()
        .map(|(_, _, p, _)| p.input_hash.clone())
        .collect();
    hashes.sort_unstable();
    hashes.dedup();
    let mut inputs: BTreeMap<String, PolicyInput> = BTreeMap::new();
    for chunk in hashes.chunks(INPUTS_PER_READ) {
        for (hash, json) in store.policy_inputs(chunk).await? {
            // An unreadable input is one the store does not usefully hold.
            if let Ok(input) = serde_json::from_str::<PolicyInput>(&json) {
                inputs.insert(hash, input);
            }
        }
    }
    let mut cases = Vec::with_capacity(decided.len());
    for (id, kind, recorded, healed_ms) in decided {
        match inputs.get(&recorded.input_hash) {
            Some(input) => cases.push(Case {
                id,
                kind,
                recorded,
                input: input.clone(),
                healed_ms,
            }),
            None => skipped.missing_input += 1,
        }
    }
    Ok((cases, skipped))
}

/// Cases from incidents nothing recorded (`healer replay --events DIR`):
/// `baseline` decides each one it handles (the default context, the
/// incident's detection time as the clock), and its decision stands where
/// a recorded one would. The incidents it does not handle are skipped.
pub fn cases_of(
    engine: &PolicyEngine,
    baseline: &LoadedPolicy,
    incidents: &[crate::Incident],
) -> (Vec<Case>, Skipped) {
    let mut skipped = Skipped::default();
    let mut cases = Vec::with_capacity(incidents.len());
    for incident in incidents {
        if !baseline.metadata.handles.contains(&incident.kind) {
            skipped.not_decided_by += 1;
            continue;
        }
        let input = PolicyInput::new(
            incident,
            &crate::policy::PolicyContext::default(),
            incident.detected_at,
        );
        let outcome = engine.decide(baseline, &input.incident, &input.context, input.now);
        cases.push(Case {
            id: incident.id.clone(),
            kind: incident.kind,
            recorded: Provenance {
                policy: baseline.id.clone(),
                input_hash: input.hash(),
                fuel_used: outcome.fuel_used,
                duration_us: u64::try_from(outcome.duration.as_micros()).unwrap_or(u64::MAX),
                decision: outcome.result.map_err(|e| e.to_string()),
            },
            input,
            healed_ms: None,
        });
    }
    (cases, skipped)
}

/// Calls `f` with every incident record `selection` picks, a page at a time.
async fn scan(
    store: &dyn Store,
    selection: &Selection,
    mut f: impl FnMut(IncidentRecord),
) -> Result<(), StoreError> {
    let filter = ListFilter {
        open: false,
        kind: selection.kind,
        since: selection.since,
    };
    let mut token: Option<String> = None;
    loop {
        let page = store.list(&filter, token.as_deref(), 500).await?;
        page.items
            .into_iter()
            .filter(|r| selection.until.is_none_or(|u| r.incident.detected_at < u))
            .for_each(&mut f);
        token = page.next;
        if token.is_none() {
            return Ok(());
        }
    }
}

/// The decision a version of `name` made on the incident: the acting one,
/// else one recorded beside it (another routed policy, a shadow).
fn decided_by(record: &IncidentRecord, name: &str) -> Option<Provenance> {
    record
        .provenance
        .iter()
        .chain(record.also_decided.iter())
        .find(|p| p.policy.name == name)
        .cloned()
}

/// A recorded figure beside the candidate's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Pair<T> {
    /// Recorded.
    pub recorded: T,
    /// The candidate's.
    pub candidate: T,
}

/// What replaying one recorded decision gave.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CaseReport {
    /// The incident.
    pub incident: IncidentId,
    /// Its kind.
    pub kind: IncidentKind,
    /// The hash of the input both decided on.
    pub input_hash: String,
    /// The version that decided it then.
    pub recorded: PolicyId,
    /// How the candidate's decision compares.
    pub comparison: Comparison,
    /// When the candidate is the recorded version: whether it reproduced the
    /// recorded decision exactly (an error reproduced word for word counts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deterministic: Option<bool>,
    /// Fuel used.
    pub fuel: Pair<u64>,
    /// Decision time in microseconds.
    pub duration_us: Pair<u64>,
    /// The candidate's plan, when it made one (kept for the governor).
    #[serde(skip)]
    pub plan: Option<crate::Decision>,
    /// The recorded MTTR, when the recorded plan acted and the incident healed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_mttr_ms: Option<i64>,
    /// The MTTR backtest: the recorded MTTR where the candidate plans the
    /// same; `None` (unknown, never estimated) where its plan differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mttr_ms: Option<i64>,
    /// With `--verdicts`: the governor's verdicts on the recorded plan and on
    /// the candidate's, judged alike against the store at decision time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdicts: Option<Pair<Vec<crate::safety::StepVerdict>>>,
}

/// Runs `candidate` on every case's input, on `threads` threads (the
/// engine's pool must allow as many instances), in the cases' order.
pub fn replay(
    engine: &PolicyEngine,
    candidate: &LoadedPolicy,
    cases: &[Case],
    threads: usize,
) -> Vec<CaseReport> {
    let threads = threads.clamp(1, cases.len().max(1));
    let mut reports: Vec<(usize, CaseReport)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t..cases.len())
                        .step_by(threads)
                        .filter_map(|i| cases.get(i).map(|c| (i, one(engine, candidate, c))))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    reports.sort_by_key(|(i, _)| *i);
    reports.into_iter().map(|(_, r)| r).collect()
}

fn one(engine: &PolicyEngine, candidate: &LoadedPolicy, case: &Case) -> CaseReport {
    let input = &case.input;
    let recorded = &case.recorded;
    let (comparison, result, fuel, duration_us) = if candidate.metadata.handles.contains(&case.kind)
    {
        let outcome = engine.decide(candidate, &input.incident, &input.context, input.now);
        let us = u64::try_from(outcome.duration.as_micros()).unwrap_or(u64::MAX);
        let comparison = compare(&recorded.decision, &outcome.result);
        (comparison, Some(outcome.result), outcome.fuel_used, us)
    } else {
        (Comparison::NotHandled, None, 0, 0)
    };
    let deterministic = (candidate.id.sha256 == recorded.policy.sha256)
        .then(|| reproduced(&recorded.decision, result.as_ref()));
    CaseReport {
        incident: case.id.clone(),
        kind: case.kind,
        input_hash: recorded.input_hash.clone(),
        recorded: recorded.policy.clone(),
        mttr_ms: case.healed_ms.filter(|_| comparison == Comparison::Same),
        comparison,
        deterministic,
        fuel: Pair {
            recorded: recorded.fuel_used,
            candidate: fuel,
        },
        duration_us: Pair {
            recorded: recorded.duration_us,
            candidate: duration_us,
        },
        recorded_mttr_ms: case.healed_ms,
        plan: result.and_then(Result::ok),
        verdicts: None,
    }
}

/// Whether the candidate's result is the recorded one exactly: the same
/// decision, summary included, or the same error word for word.
fn reproduced(
    recorded: &Result<crate::Decision, String>,
    result: Option<&Result<crate::Decision, crate::policy::PolicyError>>,
) -> bool {
    match (recorded, result) {
        (Ok(was), Some(Ok(now))) => was == now,
        (Err(was), Some(Err(now))) => *was == now.to_string(),
        _ => false,
    }
}

/// Counts of one kind (or of all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Counts {
    /// Decisions replayed.
    pub total: usize,
    /// The same plan.
    pub same: usize,
    /// A different plan (an error fixed included).
    pub changed: usize,
    /// A new error or trap.
    pub new_errors: usize,
    /// Errors before and after.
    pub still_errors: usize,
    /// Kinds the candidate does not declare.
    pub not_handled: usize,
}

impl Counts {
    fn add(&mut self, c: &Comparison) {
        self.total += 1;
        match c {
            Comparison::Same => self.same += 1,
            Comparison::Changed(_) | Comparison::Fixed { .. } => self.changed += 1,
            Comparison::NewError { .. } => self.new_errors += 1,
            Comparison::StillError { .. } => self.still_errors += 1,
            Comparison::NotHandled => self.not_handled += 1,
        }
    }

    /// `part` of the total, in percent.
    pub fn percent(&self, part: usize) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            100.0 * part as f64 / self.total as f64
        }
    }
}

/// The whole replay in numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Summary {
    /// The candidate.
    pub candidate: PolicyId,
    /// Every case.
    #[serde(flatten)]
    pub counts: Counts,
    /// Per incident kind.
    pub by_kind: BTreeMap<IncidentKind, Counts>,
    /// Cases of the candidate's own version that did not reproduce.
    pub determinism_failures: usize,
    /// Recorded decisions left out.
    pub skipped: Skipped,
    /// Mean fuel.
    pub fuel_mean: Pair<u64>,
    /// Median decision time, µs.
    pub duration_p50_us: Pair<u64>,
    /// Replay throughput (decisions per second, store reads excluded).
    pub decisions_per_s: f64,
    /// With `--verdicts`: steps the governor would deny (or hold), of the
    /// recorded plans and of the candidate's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denied: Option<Pair<usize>>,
    /// With `--verdicts`: incidents where the candidate has more steps denied.
    pub denied_more: usize,
    /// The MTTR backtest.
    pub mttr: MttrBacktest,
}

impl Summary {
    /// Sums the reports; `elapsed` is the time `replay` took.
    pub fn of(
        candidate: &PolicyId,
        reports: &[CaseReport],
        skipped: Skipped,
        elapsed: Duration,
    ) -> Summary {
        let mut counts = Counts::default();
        let mut by_kind: BTreeMap<IncidentKind, Counts> = BTreeMap::new();
        for r in reports {
            counts.add(&r.comparison);
            by_kind.entry(r.kind).or_default().add(&r.comparison);
        }
        let decided: Vec<&CaseReport> = reports
            .iter()
            .filter(|r| r.comparison != Comparison::NotHandled)
            .collect();
        let mean = |f: &dyn Fn(&CaseReport) -> u64| -> u64 {
            let n = decided.len().max(1) as u64;
            decided.iter().map(|r| f(r)).sum::<u64>() / n
        };
        let median = |f: &dyn Fn(&CaseReport) -> u64| -> u64 {
            let mut v: Vec<u64> = decided.iter().map(|r| f(r)).collect();
            v.sort_unstable();
            v.get(v.len() / 2).copied().unwrap_or(0)
        };
        let judged: Vec<&Pair<Vec<crate::safety::StepVerdict>>> =
            reports.iter().filter_map(|r| r.verdicts.as_ref()).collect();
        Summary {
            denied: (!judged.is_empty()).then(|| Pair {
                recorded: judged.iter().map(|v| denied(&v.recorded)).sum(),
                candidate: judged.iter().map(|v| denied(&v.candidate)).sum(),
            }),
            denied_more: judged
                .iter()
                .filter(|v| denied(&v.candidate) > denied(&v.recorded))
                .count(),
            mttr: MttrBacktest::of(reports),
            candidate: candidate.clone(),
            counts,
            by_kind,
            determinism_failures: reports
                .iter()
                .filter(|r| r.deterministic == Some(false))
                .count(),
            skipped,
            fuel_mean: Pair {
                recorded: mean(&|r| r.fuel.recorded),
                candidate: mean(&|r| r.fuel.candidate),
            },
            duration_p50_us: Pair {
                recorded: median(&|r| r.duration_us.recorded),
                candidate: median(&|r| r.duration_us.candidate),
            },
            decisions_per_s: if elapsed.is_zero() {
                0.0
            } else {
                decided.len() as f64 / elapsed.as_secs_f64()
            },
        }
    }

    /// Why a gate with `fail_on` fails (empty: it passes). Determinism
    /// failures always fail it.
    pub fn failures(&self, fail_on: &[FailOn]) -> Vec<String> {
        let mut out = Vec::new();
        if self.determinism_failures > 0 {
            out.push(format!(
                "{} decisions of the recorded version did not reproduce",
                self.determinism_failures
            ));
        }
        for f in fail_on {
            match f {
                FailOn::Changed if self.counts.changed > 0 => {
                    out.push(format!("{} plans changed", self.counts.changed));
                }
                FailOn::Errors if self.counts.new_errors > 0 => {
                    out.push(format!("{} new errors", self.counts.new_errors));
                }
                FailOn::DeniedMore if self.denied_more > 0 => {
                    out.push(format!(
                        "{} incidents with more steps the governor would deny",
                        self.denied_more
                    ));
                }
                _ => {}
            }
        }
        out
    }
}

/// What makes a replay gate fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// Any plan differs from the recorded one.
    Changed,
    /// The candidate errs or traps where the recorded version decided.
    Errors,
    /// The governor would deny more of the candidate's steps than of the
    /// recorded plan's on some incident (needs `--verdicts`).
    DeniedMore,
}

/// Selects, replays and sums up, timing the decisions; with `verdicts`,
/// judges both plans of every case (see [`judge_verdicts`]).
pub async fn run(
    store: &dyn Store,
    engine: &PolicyEngine,
    candidate: &LoadedPolicy,
    selection: &Selection,
    against: &str,
    threads: usize,
    verdicts: Option<(&crate::safety::Governor, &crate::safety::Facts)>,
) -> Result<(Vec<CaseReport>, Summary), StoreError> {
    let (cases, skipped) = select(store, selection, against).await?;
    let started = Instant::now();
    let mut reports = replay(engine, candidate, &cases, threads);
    let elapsed = started.elapsed();
    if let Some((governor, facts)) = verdicts {
        judge_verdicts(
            store,
            governor,
            facts,
            Some(&candidate.metadata.proposes),
            &cases,
            &mut reports,
        )
        .await?;
    }
    let summary = Summary::of(&candidate.id, &reports, skipped, elapsed);
    Ok((reports, summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::ActionKind;
    use crate::safety::{Rule, StepVerdict, Verdict};

    fn verdicts(denied: usize) -> Vec<StepVerdict> {
        (0..2)
            .map(|step| StepVerdict {
                step,
                action: ActionKind::Notify,
                target: None,
                group: None,
                verdict: if step < denied {
                    Verdict::deny(Rule::RateLimit, "limit")
                } else {
                    Verdict::Approved
                },
            })
            .collect()
    }

    fn report(recorded: usize, candidate: usize) -> CaseReport {
        CaseReport {
            incident: IncidentId::from_stored("inc-1"),
            kind: IncidentKind::Alarm,
            input_hash: "h".into(),
            recorded: PolicyId {
                name: "p".into(),
                version: "1".into(),
                sha256: "a".into(),
            },
            comparison: Comparison::Same,
            deterministic: None,
            fuel: Pair::default(),
            duration_us: Pair::default(),
            plan: None,
            recorded_mttr_ms: None,
            mttr_ms: None,
            verdicts: Some(Pair {
                recorded: verdicts(recorded),
                candidate: verdicts(candidate),
            }),
        }
    }

    #[test]
    fn denied_more_counts_the_incidents_where_the_candidate_loses_steps() {
        let id = report(0, 0).recorded;
        let reports = [report(0, 1), report(1, 1), report(2, 0)];
        let s = Summary::of(&id, &reports, Skipped::default(), Duration::ZERO);
        assert_eq!(s.denied.map(|d| (d.recorded, d.candidate)), Some((3, 2)));
        assert_eq!(s.denied_more, 1);
        assert_eq!(s.failures(&[FailOn::DeniedMore]).len(), 1);
        let none = Summary::of(&id, &[], Skipped::default(), Duration::ZERO);
        assert_eq!((none.denied, none.denied_more), (None, 0));
    }
}
