//! The service's metrics, rendered for Prometheus by `GET /metrics`.
//!
//! Names are `healer_<name>_<unit>`: counters end in `_total`, durations are
//! in `_seconds`. Labels are bounded sets (kinds, rules, policy names and
//! versions, results), never resource ids. One process-wide registry: every
//! stage counts into it, the API renders it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// A counter family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Counter {
    /// Signals by origin (`sqs`, `http`) and outcome.
    Signals,
    /// New incidents by kind.
    Incidents,
    /// Policy decisions by policy, version, mode (`active`/`shadow`) and result.
    Decisions,
    /// Governor denials by rule.
    Denials,
    /// Executed steps by action kind and result.
    Actions,
    /// Policy swaps applied on this replica.
    PolicySwaps,
    /// Versions the regression guard rolled back, by policy.
    PolicyAutoRollbacks,
    /// SQS messages by result (`processed`, `rejected`, `failed`, `delete-failed`).
    SqsMessages,
    /// Poll rounds by poller (`targets`, `instances`) and result (`ok`, `failed`).
    Polls,
}

/// A histogram family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Histogram {
    /// Policy evaluation time by policy.
    PolicyEvaluation,
    /// Fuel one decision used, by policy.
    PolicyFuel,
    /// Time one step's execution took, by action kind.
    Action,
    /// Detection to healed, by incident kind, policy and who healed it
    /// (`healer`: verified after acting; `signal`: a recovery signal).
    TimeToRecover,
}

/// A gauge family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Gauge {
    /// Steps executing now.
    RemediationsInProgress,
    /// Age of the oldest message of the last SQS batch when received.
    SqsPollLag,
    /// How far behind its schedule a poller's (`targets`, `instances`) last
    /// round finished: from when it was due to when its signals were recorded.
    PollLag,
    /// Policies with an active version on this replica.
    PoliciesActive,
}

impl Counter {
    fn name(self) -> &'static str {
        match self {
            Counter::Signals => "healer_signals_total",
            Counter::Incidents => "healer_incidents_total",
            Counter::Decisions => "healer_decisions_total",
            Counter::Denials => "healer_governor_denials_total",
            Counter::Actions => "healer_actions_total",
            Counter::PolicySwaps => "healer_policy_swaps_total",
            Counter::PolicyAutoRollbacks => "healer_policy_auto_rollbacks_total",
            Counter::SqsMessages => "healer_sqs_messages_total",
            Counter::Polls => "healer_polls_total",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Counter::Signals => "Signals received, by origin and outcome.",
            Counter::Incidents => "Incidents recorded new, by kind.",
            Counter::Decisions => "Policy decisions, by policy, version, mode and result.",
            Counter::Denials => "Steps the governor denied, by rule.",
            Counter::Actions => "Steps executed, by action and result.",
            Counter::PolicySwaps => "Policy versions swapped in on this replica.",
            Counter::PolicyAutoRollbacks => {
                "Policy versions the regression guard rolled back, by policy."
            }
            Counter::SqsMessages => "SQS messages handled, by result.",
            Counter::Polls => "Poll rounds, by poller and result.",
        }
    }
}

impl Histogram {
    fn name(self) -> &'static str {
        match self {
            Histogram::PolicyEvaluation => "healer_policy_evaluation_seconds",
            Histogram::PolicyFuel => "healer_policy_fuel_units",
            Histogram::Action => "healer_action_seconds",
            Histogram::TimeToRecover => "healer_time_to_recover_seconds",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Histogram::PolicyEvaluation => "Time one policy decision took.",
            Histogram::PolicyFuel => "Fuel one policy decision used.",
            Histogram::Action => "Time one step's execution took.",
            Histogram::TimeToRecover => "Detection to healed, per incident.",
        }
    }

    fn buckets(self) -> &'static [f64] {
        match self {
            Histogram::PolicyEvaluation => &[
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            ],
            Histogram::PolicyFuel => &[1e4, 3e4, 1e5, 3e5, 1e6, 3e6, 1e7, 3e7, 1e8],
            Histogram::Action => &[
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ],
            Histogram::TimeToRecover => &[
                5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
            ],
        }
    }
}

impl Gauge {
    fn name(self) -> &'static str {
        match self {
            Gauge::RemediationsInProgress => "healer_remediations_in_progress",
            Gauge::SqsPollLag => "healer_sqs_poll_lag_seconds",
            Gauge::PollLag => "healer_poll_lag_seconds",
            Gauge::PoliciesActive => "healer_policies_active",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Gauge::RemediationsInProgress => "Steps executing now.",
            Gauge::SqsPollLag => "Age of the oldest message of the last SQS batch at receipt.",
            Gauge::PollLag => {
                "From when a poller's last round was due to when its signals were recorded."
            }
            Gauge::PoliciesActive => "Policies with an active version on this replica.",
        }
    }
}

/// Label values by label name, in a fixed order.
type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone, Default)]
struct Buckets {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Families {
    counters: BTreeMap<Counter, BTreeMap<Labels, u64>>,
    histograms: BTreeMap<Histogram, BTreeMap<Labels, Buckets>>,
    gauges: BTreeMap<Gauge, BTreeMap<Labels, f64>>,
}

/// The registry.
#[derive(Debug, Default)]
pub struct Metrics {
    families: Mutex<Families>,
}

/// The process-wide registry.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

impl Metrics {
    fn families(&self) -> MutexGuard<'_, Families> {
        // Every update is a single map write: a panic cannot leave it torn.
        self.families.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `n` to a counter.
    pub fn add(&self, c: Counter, pairs: &[(&'static str, &str)], n: u64) {
        if n == 0 {
            return;
        }
        *self
            .families()
            .counters
            .entry(c)
            .or_default()
            .entry(labels(pairs))
            .or_default() += n;
    }

    /// Adds one to a counter.
    pub fn inc(&self, c: Counter, pairs: &[(&'static str, &str)]) {
        self.add(c, pairs, 1);
    }

    /// Records one observation.
    pub fn observe(&self, h: Histogram, pairs: &[(&'static str, &str)], value: f64) {
        let bounds = h.buckets();
        let mut f = self.families();
        let b = f
            .histograms
            .entry(h)
            .or_default()
            .entry(labels(pairs))
            .or_insert_with(|| Buckets {
                counts: vec![0; bounds.len()],
                ..Buckets::default()
            });
        for (i, le) in bounds.iter().enumerate() {
            if value <= *le {
                b.counts[i] += 1;
            }
        }
        b.sum += value;
        b.count += 1;
    }

    /// Moves a gauge by `delta`.
    pub fn shift(&self, g: Gauge, pairs: &[(&'static str, &str)], delta: f64) {
        *self
            .families()
            .gauges
            .entry(g)
            .or_default()
            .entry(labels(pairs))
            .or_default() += delta;
    }

    /// Sets a gauge.
    pub fn set(&self, g: Gauge, pairs: &[(&'static str, &str)], value: f64) {
        self.families()
            .gauges
            .entry(g)
            .or_default()
            .insert(labels(pairs), value);
    }

    /// A counter's value (tests and the CLI).
    pub fn counter(&self, c: Counter, pairs: &[(&'static str, &str)]) -> u64 {
        self.families()
            .counters
            .get(&c)
            .and_then(|m| m.get(&labels(pairs)))
            .copied()
            .unwrap_or(0)
    }

    /// Every series of a counter: its labels and value, in label order.
    pub fn series(&self, c: Counter) -> Vec<(Vec<(&'static str, String)>, u64)> {
        self.families()
            .counters
            .get(&c)
            .map(|m| m.iter().map(|(l, v)| (l.clone(), *v)).collect())
            .unwrap_or_default()
    }

    /// The Prometheus text exposition format (0.0.4).
    pub fn render(&self) -> String {
        let f = self.families();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP healer_build_info The running build.\n# TYPE healer_build_info gauge\nhealer_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        for (c, series) in &f.counters {
            header(&mut out, c.name(), c.help(), "counter");
            for (l, v) in series {
                let _ = writeln!(out, "{}{} {v}", c.name(), render_labels(l, None));
            }
        }
        for (g, series) in &f.gauges {
            header(&mut out, g.name(), g.help(), "gauge");
            for (l, v) in series {
                let _ = writeln!(out, "{}{} {v}", g.name(), render_labels(l, None));
            }
        }
        for (h, series) in &f.histograms {
            header(&mut out, h.name(), h.help(), "histogram");
            for (l, b) in series {
                for (le, n) in h.buckets().iter().zip(&b.counts) {
                    let le = le.to_string();
                    let _ = writeln!(
                        out,
                        "{}_bucket{} {n}",
                        h.name(),
                        render_labels(l, Some(&le))
                    );
                }
                let inf = render_labels(l, Some("+Inf"));
                let _ = writeln!(out, "{}_bucket{inf} {}", h.name(), b.count);
                let _ = writeln!(out, "{}_sum{} {}", h.name(), render_labels(l, None), b.sum);
                let _ = writeln!(
                    out,
                    "{}_count{} {}",
                    h.name(),
                    render_labels(l, None),
                    b.count
                );
            }
        }
        out
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn render_labels(l: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let m = Metrics::default();
        m.inc(Counter::Denials, &[("rule", "cooldown")]);
        m.add(Counter::Denials, &[("rule", "cooldown")], 2);
        m.inc(
            Counter::Signals,
            &[("origin", "sqs"), ("outcome", "bad\"one\n")],
        );
        m.observe(Histogram::PolicyEvaluation, &[("policy", "p")], 0.0007);
        m.observe(Histogram::PolicyEvaluation, &[("policy", "p")], 1.0);
        m.shift(Gauge::RemediationsInProgress, &[], 1.0);
        let text = m.render();
        assert!(
            text.contains("# TYPE healer_governor_denials_total counter"),
            "{text}"
        );
        assert!(
            text.contains("healer_governor_denials_total{rule=\"cooldown\"} 3"),
            "{text}"
        );
        assert!(text.contains("outcome=\"bad\\\"one\\n\""), "{text}");
        assert!(
            text.contains("healer_policy_evaluation_seconds_bucket{policy=\"p\",le=\"0.0005\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("healer_policy_evaluation_seconds_bucket{policy=\"p\",le=\"0.001\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("healer_policy_evaluation_seconds_bucket{policy=\"p\",le=\"+Inf\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("healer_policy_evaluation_seconds_count{policy=\"p\"} 2"),
            "{text}"
        );
        assert!(text.contains("healer_remediations_in_progress 1"), "{text}");
        assert!(text.starts_with("# HELP healer_build_info"), "{text}");
        assert_eq!(m.counter(Counter::Denials, &[("rule", "cooldown")]), 3);
    }
}
