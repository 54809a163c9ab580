//! The MTTR backtest (`healer replay --mttr`): what the recorded timings
//! say about a candidate's MTTR, without inventing any.

use serde::Serialize;

use super::CaseReport;

/// What the recorded timings say about the candidate's MTTR: where it plans
/// as the recorded version did, the incident's recorded MTTR; where it
/// plans otherwise, unknown (nothing is invented).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MttrBacktest {
    /// Replayed incidents the recorded plan healed.
    pub healed: usize,
    /// Their recorded MTTR, median, ms.
    pub recorded_p50_ms: Option<i64>,
    /// Of those, the ones the candidate plans the same: MTTR known.
    pub known: usize,
    /// Their MTTR, median, ms.
    pub known_p50_ms: Option<i64>,
    /// The ones it plans differently: MTTR unknown.
    pub unknown: usize,
}

impl MttrBacktest {
    pub(super) fn of(reports: &[CaseReport]) -> Self {
        let p50 = |mut v: Vec<i64>| {
            v.sort_unstable();
            v.get(v.len().saturating_sub(1) / 2).copied()
        };
        let healed: Vec<i64> = reports.iter().filter_map(|r| r.recorded_mttr_ms).collect();
        let known: Vec<i64> = reports.iter().filter_map(|r| r.mttr_ms).collect();
        MttrBacktest {
            healed: healed.len(),
            known: known.len(),
            unknown: healed.len() - known.len(),
            recorded_p50_ms: p50(healed),
            known_p50_ms: p50(known),
        }
    }
}
