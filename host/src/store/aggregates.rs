//! Time-bucketed statistics, kept as incidents close so `GET /stats` never
//! loads every record: per grouping (kind, policy, action, healer), per UTC
//! day of detection and per group key, the closed incidents, the healed ones,
//! the MTTR sum and an MTTR histogram on a log scale (four buckets per
//! doubling, so a percentile read from it is within 19 % of the true one).
//! The incidents still open are few and read as they are.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::stats::keys_of;
use super::{GroupBy, IncidentRecord, Stats, StatsRow};

/// Every grouping, in the order aggregates are written.
pub const ALL_GROUPINGS: [GroupBy; 4] = [
    GroupBy::Kind,
    GroupBy::Policy,
    GroupBy::Action,
    GroupBy::Healer,
];

/// One group's closed incidents on one day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AggCell {
    /// Closed incidents.
    pub closed: u64,
    /// Of those, healed.
    pub healed: u64,
    /// Of those, escalated to humans (absent in cells written before it was kept).
    #[serde(default)]
    pub escalated: u64,
    /// Sum of the healed ones' MTTR, ms.
    pub mttr_sum_ms: u64,
    /// Healed incidents by MTTR bucket ([`bucket_of`]).
    pub buckets: BTreeMap<u16, u64>,
}

/// What one closing incident adds to a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    /// Its MTTR when healed.
    pub mttr_ms: Option<u64>,
    /// It closed escalated.
    pub escalated: bool,
}

impl AggCell {
    /// Adds one closed incident.
    pub fn add(&mut self, c: Closed) {
        self.closed += 1;
        self.escalated += u64::from(c.escalated);
        if let Some(ms) = c.mttr_ms {
            self.healed += 1;
            self.mttr_sum_ms += ms;
            *self.buckets.entry(bucket_of(ms)).or_default() += 1;
        }
    }

    /// The nearest-rank percentile `p` (0–1) of the healed incidents' MTTR,
    /// read off the histogram (the bucket's upper bound), ms.
    pub fn percentile(&self, p: f64) -> Option<i64> {
        let rank = ((p * self.healed as f64).ceil() as u64).max(1);
        let mut seen = 0;
        self.buckets.iter().find_map(|(b, n)| {
            seen += n;
            (seen >= rank).then(|| bucket_upper(*b))
        })
    }

    /// Adds another cell.
    pub fn merge(&mut self, other: &AggCell) {
        self.closed += other.closed;
        self.healed += other.healed;
        self.escalated += other.escalated;
        self.mttr_sum_ms += other.mttr_sum_ms;
        for (b, n) in &other.buckets {
            *self.buckets.entry(*b).or_default() += n;
        }
    }
}

/// The histogram bucket of an MTTR: `floor(4 · log2(ms))`, 0 below 2 ms.
pub fn bucket_of(ms: u64) -> u16 {
    if ms < 2 {
        return 0;
    }
    ((ms as f64).log2() * 4.0).floor() as u16
}

/// The upper bound of a bucket, ms.
pub fn bucket_upper(b: u16) -> i64 {
    2f64.powf(f64::from(b + 1) / 4.0).round() as i64
}

/// What a record that just closed adds: (grouping, key) cells on its
/// detection day.
pub fn cells_of(r: &IncidentRecord) -> Vec<(GroupBy, NaiveDate, String, Closed)> {
    let day = r.incident.detected_at.date_naive();
    let closed = Closed {
        mttr_ms: r.mttr_ms.and_then(|m| u64::try_from(m).ok()),
        escalated: r.state == super::LifecycleState::Escalated,
    };
    ALL_GROUPINGS
        .into_iter()
        .flat_map(|by| {
            keys_of(r, by)
                .into_iter()
                .map(move |k| (by, day, k, closed))
        })
        .collect()
}

/// The first day a `since` covers (whole UTC days: a window starts at the
/// midnight at or before `since`).
pub fn first_day(since: DateTime<Utc>) -> NaiveDate {
    since.date_naive()
}

/// The figures: closed cells summed per key, plus the open incidents.
pub fn rows(by: GroupBy, cells: &[(String, AggCell)], open: &[IncidentRecord]) -> Stats {
    let mut sum: BTreeMap<String, (AggCell, usize)> = BTreeMap::new();
    for (k, c) in cells {
        sum.entry(k.clone()).or_default().0.merge(c);
    }
    for r in open {
        for k in keys_of(r, by) {
            sum.entry(k).or_default().1 += 1;
        }
    }
    let rows = sum
        .into_iter()
        .map(|(key, (c, open))| StatsRow {
            key,
            count: usize::try_from(c.closed).unwrap_or(usize::MAX) + open,
            healed: usize::try_from(c.healed).unwrap_or(usize::MAX),
            open,
            mttr_mean_ms: (c.healed > 0).then(|| c.mttr_sum_ms as f64 / c.healed as f64),
            mttr_p50_ms: c.percentile(0.5),
            mttr_p90_ms: c.percentile(0.9),
            mttr_max_ms: c.buckets.keys().next_back().map(|b| bucket_upper(*b)),
        })
        .collect();
    Stats { by, rows }
}

/// One UTC day of closed incidents, every group summed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct TrendPoint {
    /// The day of detection.
    pub day: NaiveDate,
    /// Incidents detected that day and closed since.
    pub closed: u64,
    /// Of those, healed.
    pub healed: u64,
    /// Of those, escalated.
    pub escalated: u64,
    /// Median MTTR of the healed ones, ms (off the histogram).
    pub mttr_p50_ms: Option<i64>,
    /// 90th percentile, ms.
    pub mttr_p90_ms: Option<i64>,
}

/// The MTTR trend: the cells of one grouping summed per day, oldest first.
/// Use a grouping that counts every incident once ([`GroupBy::Kind`] or
/// [`GroupBy::Healer`]).
pub fn trend(cells: &[(NaiveDate, String, AggCell)]) -> Vec<TrendPoint> {
    let mut days: BTreeMap<NaiveDate, AggCell> = BTreeMap::new();
    for (day, _, c) in cells {
        days.entry(*day).or_default().merge(c);
    }
    days.into_iter()
        .map(|(day, c)| TrendPoint {
            day,
            closed: c.closed,
            healed: c.healed,
            escalated: c.escalated,
            mttr_p50_ms: c.percentile(0.5),
            mttr_p90_ms: c.percentile(0.9),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_the_value_within_a_fifth() {
        for ms in [2u64, 3, 10, 999, 60_000, 3_600_000, 86_400_000] {
            let upper = bucket_upper(bucket_of(ms)) as f64;
            assert!(upper >= ms as f64, "{ms}");
            assert!(upper <= ms as f64 * 1.19 + 1.0, "{ms}: {upper}");
        }
    }

    #[test]
    fn cells_sum_and_percentiles_come_from_the_histogram() {
        let mut a = AggCell::default();
        for ms in [1000, 2000, 3000, 4000] {
            a.add(Closed {
                mttr_ms: Some(ms),
                escalated: false,
            });
        }
        a.add(Closed {
            mttr_ms: None,
            escalated: true,
        });
        let s = rows(GroupBy::Kind, &[("alarm".into(), a)], &[]);
        let r = &s.rows[0];
        assert_eq!((r.count, r.healed, r.open), (5, 4, 0));
        assert_eq!(r.mttr_mean_ms, Some(2500.0));
        let p50 = r.mttr_p50_ms.expect("p50");
        assert!((2000..=2400).contains(&p50), "{p50}");
        assert!(r.mttr_max_ms.expect("max") >= 4000);
    }

    #[test]
    fn the_trend_sums_every_key_of_a_day() {
        let cell = |ms: &[u64]| {
            let mut c = AggCell::default();
            for m in ms {
                c.add(Closed {
                    mttr_ms: Some(*m),
                    escalated: false,
                });
            }
            c
        };
        let d1 = NaiveDate::from_ymd_opt(2026, 12, 1).expect("day");
        let d2 = NaiveDate::from_ymd_opt(2026, 12, 2).expect("day");
        let t = trend(&[
            (d2, "b".into(), cell(&[8000])),
            (d1, "a".into(), cell(&[1000, 1000])),
            (d1, "b".into(), cell(&[1000])),
        ]);
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].day, t[0].closed, t[0].healed), (d1, 3, 3));
        assert!((1000..=1200).contains(&t[0].mttr_p50_ms.expect("p50")));
        assert_eq!((t[1].day, t[1].healed), (d2, 1));
    }
}
