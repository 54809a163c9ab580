//! Incident statistics: counts and MTTR (mean, p50, p90, max) grouped by incident
//! kind, deciding policy or action kind. Computed the same way for every backend.

use std::collections::BTreeMap;

use serde::Serialize;

use super::IncidentRecord;

/// What to group by.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum GroupBy {
    /// Incident kind.
    #[default]
    Kind,
    /// Deciding policy name.
    Policy,
    /// Action kind of each executed step (an incident counts once per action kind).
    Action,
    /// Whether healer acted: `healer-acted` (a mutating step succeeded) or
    /// `without-healer` (it recovered on its own, or only dry-run,
    /// superseded or notification steps ran), so healer's MTTR is reported
    /// apart from recoveries it did not cause.
    Healer,
}

impl GroupBy {
    /// The grouping's name (`kind`, `policy`, `action`, `healer`).
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Kind => "kind",
            GroupBy::Policy => "policy",
            GroupBy::Action => "action",
            GroupBy::Healer => "healer",
        }
    }
}

/// One group's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct StatsRow {
    /// Group key.
    pub key: String,
    /// Incidents.
    pub count: usize,
    /// Healed incidents.
    pub healed: usize,
    /// Incidents still open.
    pub open: usize,
    /// Mean MTTR of healed incidents, ms.
    pub mttr_mean_ms: Option<f64>,
    /// Median MTTR, ms.
    pub mttr_p50_ms: Option<i64>,
    /// 90th percentile MTTR, ms.
    pub mttr_p90_ms: Option<i64>,
    /// Longest MTTR, ms.
    pub mttr_max_ms: Option<i64>,
}

/// Figures per group, ordered by key.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Stats {
    /// Grouping.
    pub by: GroupBy,
    /// Rows.
    pub rows: Vec<StatsRow>,
}

/// The groups one record counts in under `by` (an incident counts once per
/// action kind it ran).
pub(crate) fn keys_of(r: &IncidentRecord, by: GroupBy) -> Vec<String> {
    match by {
        GroupBy::Kind => vec![r.incident.kind.to_string()],
        GroupBy::Policy => vec![
            r.provenance
                .as_ref()
                .map_or_else(|| "(none)".to_owned(), |p| p.policy.name.clone()),
        ],
        GroupBy::Action => {
            let mut kinds: Vec<String> = r
                .steps
                .iter()
                .map(|s| s.action.kind().to_string())
                .collect();
            kinds.sort();
            kinds.dedup();
            if kinds.is_empty() {
                kinds.push("(none)".to_owned());
            }
            kinds
        }
        GroupBy::Healer => {
            let acted = r
                .steps
                .iter()
                .any(|s| s.result == super::Outcome::Succeeded && s.action.kind().is_mutating());
            vec![
                if acted {
                    "healer-acted"
                } else {
                    "without-healer"
                }
                .to_owned(),
            ]
        }
    }
}

/// Nearest-rank percentile of a sorted, non-empty slice.
fn percentile(sorted: &[i64], p: f64) -> i64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Stats {
    /// Aggregates records.
    pub fn compute(records: &[IncidentRecord], by: GroupBy) -> Stats {
        let mut groups: BTreeMap<String, Vec<&IncidentRecord>> = BTreeMap::new();
        for r in records {
            let keys = keys_of(r, by);
            for k in keys {
                groups.entry(k).or_default().push(r);
            }
        }
        let rows = groups
            .into_iter()
            .map(|(key, rs)| {
                let mut mttrs: Vec<i64> = rs.iter().filter_map(|r| r.mttr_ms).collect();
                mttrs.sort_unstable();
                let (mean, p50, p90, max) = if mttrs.is_empty() {
                    (None, None, None, None)
                } else {
                    (
                        Some(mttrs.iter().sum::<i64>() as f64 / mttrs.len() as f64),
                        Some(percentile(&mttrs, 0.5)),
                        Some(percentile(&mttrs, 0.9)),
                        mttrs.last().copied(),
                    )
                };
                StatsRow {
                    key,
                    count: rs.len(),
                    healed: mttrs.len(),
                    open: rs.iter().filter(|r| !r.state.is_terminal()).count(),
                    mttr_mean_ms: mean,
                    mttr_p50_ms: p50,
                    mttr_p90_ms: p90,
                    mttr_max_ms: max,
                }
            })
            .collect();
        Stats { by, rows }
    }
}
