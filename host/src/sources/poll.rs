//! Building blocks of the pollers (target health, instance status): a token
//! bucket that bounds the rate of each AWS API a poller calls, and a tracker
//! that turns successive health observations of a resource into what the
//! poller should do (open an incident, record a recovery, nothing), counting
//! transitions to detect flapping.
//!
//! Both are pure: the caller passes the time, so they are tested without
//! sleeping and behave the same in every replica. [`run`] drives a
//! [`Poller`] (`targets`, `instances`) on its [`Schedule`] and records what
//! it saw through a [`SignalSink`].

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::retry::ProvideErrorKind;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::Handled;
use crate::signals::Signal;

/// A token bucket: `burst` calls at once, then `per_sec` calls a second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    tokens: f64,
    per_sec: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. A `per_sec` of zero or less (or not a number) is taken
    /// as one call a minute rather than never, so a bad setting slows a
    /// poller instead of stopping it.
    pub fn new(per_sec: f64, burst: u32, now: Instant) -> Self {
        let per_sec = if per_sec.is_finite() && per_sec > 0.0 {
            per_sec
        } else {
            1.0 / 60.0
        };
        let capacity = f64::from(burst.max(1));
        Self {
            capacity,
            tokens: capacity,
            per_sec,
            last: now,
        }
    }

    /// Takes a token, or says how long to wait until one is there.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec))
        }
    }
}

/// A polled resource's health, as the poller classified it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Serving (`healthy`).
    Healthy,
    /// Failing (`unhealthy` with a failure reason, or `unused` with
    /// `Target.InvalidState`, which is how a stopped instance shows).
    Unhealthy,
}

/// What the poller does with one observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Open an incident (the store's dedupe makes it once per resource).
    /// `flapping` is the number of transitions in the window when it reached
    /// the threshold: a flapping resource opens an incident even when it is
    /// healthy at this poll.
    Open { flapping: Option<u32> },
    /// Record a recovery of the resource.
    Recover,
    /// Nothing changed that the store does not know.
    Quiet,
}

/// Flapping: `threshold` transitions within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlapRule {
    /// Transitions that make a resource flapping (default 4).
    pub threshold: u32,
    /// The window they are counted in (default 10 min).
    pub window: Duration,
}

impl Default for FlapRule {
    fn default() -> Self {
        Self {
            threshold: 4,
            window: Duration::from_secs(600),
        }
    }
}

#[derive(Debug)]
struct Tracked {
    health: Health,
    transitions: VecDeque<Instant>,
}

/// Successive observations per resource key (target group, target, port).
#[derive(Debug)]
pub struct Tracker<K> {
    rule: FlapRule,
    resources: HashMap<K, Tracked>,
}

impl<K: Eq + Hash + Clone> Tracker<K> {
    /// An empty tracker.
    pub fn new(rule: FlapRule) -> Self {
        Self {
            rule,
            resources: HashMap::new(),
        }
    }

    /// Records one observation and says what to do. The first observation of
    /// a resource opens when unhealthy and recovers when healthy (an incident
    /// opened before this process started is closed by it). While a resource
    /// flaps, a transition to healthy opens (marked flapping) instead of
    /// recovering, so the policy sees the flapping rather than a string of
    /// short incidents.
    pub fn observe(&mut self, key: &K, health: Health, now: Instant) -> Verdict {
        let rule = self.rule;
        let Some(tracked) = self.resources.get_mut(key) else {
            self.resources.insert(
                key.clone(),
                Tracked {
                    health,
                    transitions: VecDeque::new(),
                },
            );
            return match health {
                Health::Unhealthy => Verdict::Open { flapping: None },
                Health::Healthy => Verdict::Recover,
            };
        };
        while tracked
            .transitions
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > rule.window)
        {
            tracked.transitions.pop_front();
        }
        if tracked.health == health {
            return Verdict::Quiet;
        }
        tracked.health = health;
        tracked.transitions.push_back(now);
        let count = u32::try_from(tracked.transitions.len()).unwrap_or(u32::MAX);
        let flapping = (count >= rule.threshold).then_some(count);
        match (health, flapping) {
            (Health::Unhealthy, _) | (Health::Healthy, Some(_)) => Verdict::Open { flapping },
            (Health::Healthy, None) => Verdict::Recover,
        }
    }

    /// Forgets the resources not in `live` (deregistered targets), so the
    /// tracker's size follows what is registered.
    pub fn retain(&mut self, live: impl Fn(&K) -> bool) {
        self.resources.retain(|k, _| live(k));
    }

    /// How many resources are tracked.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    /// Whether no resource is tracked.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// Forgets every resource: the next observation of each is a first sight,
    /// which the store's state then confirms (after a round whose signals
    /// could not be recorded, so none is lost).
    pub fn clear(&mut self) {
        self.resources.clear();
    }
}

/// Waits for a token of `bucket`, or returns `false` when `stop` is asked first.
pub async fn take(bucket: &mut TokenBucket, stop: &mut watch::Receiver<bool>) -> bool {
    loop {
        match bucket.try_take(Instant::now()) {
            Ok(()) => return true,
            Err(wait) => {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait_for(|s| *s) => return false,
                }
            }
        }
    }
}

/// A poll that failed: the round's observations are dropped and the tracker
/// forgotten, so the next round observes afresh.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// An AWS read failed (after the SDK's retries).
    #[error("{api} failed ({class:?}): {message}")]
    Aws {
        /// The API (`DescribeTargetHealth`).
        api: &'static str,
        /// How it failed.
        class: crate::aws::AwsErrorClass,
        /// The SDK's error, with its context.
        message: String,
    },
    /// The store could not say which incident is open.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// Asked to stop in the middle of the round.
    #[error("stopped")]
    Stopped,
}

impl PollError {
    /// A failed AWS call of `api`.
    pub fn aws<E>(api: &'static str, e: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + ProvideErrorKind + std::error::Error + 'static,
    {
        PollError::Aws {
            api,
            class: crate::aws::classify(e),
            message: DisplayErrorContext(e).to_string(),
        }
    }
}

/// What the store says about opening an incident on a resource a poller
/// saw failing (or flapping) at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opening {
    /// One is still open (whichever source opened it), or the newest was
    /// closed after `at` (the observation is older than the recovery: a
    /// lagging replica's).
    Skip,
    /// A new incident whose dedupe key ends in `suffix`:
    /// `after:<newest incident id>` or `after:none`. Every replica seeing
    /// the same failure computes the same key, so the store records it once.
    New {
        /// The key's suffix.
        suffix: String,
        /// It replaces the open incident (a flapping resource, healthy at
        /// this poll): the caller closes that one first.
        supersedes: bool,
    },
}

/// [`Opening`] for `resource` among its incidents `same` accepts (same
/// kind, group, port). With `supersede`, an open incident does not stop a
/// new one: the new one follows it.
pub async fn opening(
    store: &dyn crate::store::Store,
    resource: &str,
    same: impl Fn(&crate::incident::Incident) -> bool,
    at: DateTime<Utc>,
    supersede: bool,
) -> Result<Opening, crate::store::StoreError> {
    use crate::store::IncidentRecord;
    let history = store
        .incidents_of(&crate::store::Scope::Resource(resource.to_owned()))
        .await?;
    let order = |r: &IncidentRecord| (r.incident.detected_at, r.incident.id.clone());
    let mut newest: Option<&IncidentRecord> = None;
    let mut open = false;
    for r in history.iter().filter(|r| same(&r.incident)) {
        if !r.state.is_terminal() {
            if !supersede {
                return Ok(Opening::Skip);
            }
            open = true;
        }
        if newest.is_none_or(|n| order(r) > order(n)) {
            newest = Some(r);
        }
    }
    let suffix = |id: &dyn std::fmt::Display| format!("after:{id}");
    Ok(match newest {
        None => Opening::New {
            suffix: suffix(&"none"),
            supersedes: false,
        },
        Some(n)
            if n.state.is_terminal()
                && n.timestamps
                    .get(&n.state)
                    .is_some_and(|closed| *closed > at) =>
        {
            Opening::Skip
        }
        Some(n) => Opening::New {
            suffix: suffix(&n.incident.id),
            supersedes: open,
        },
    })
}

/// The detail a poller adds to an incident: `flapping` (`true`/`false`)
/// and, when flapping, `flap-count` (transitions in the window).
pub fn mark_flapping(
    detail: &mut std::collections::BTreeMap<String, String>,
    flapping: Option<u32>,
) {
    detail.insert("flapping".into(), flapping.is_some().to_string());
    if let Some(n) = flapping {
        detail.insert("flap-count".into(), n.to_string());
    }
}

/// One poller: what it reads each round.
#[async_trait::async_trait]
pub trait Poller: Send {
    /// Its metric label (`targets`, `instances`).
    fn name(&self) -> &'static str;
    /// Reads one round at `at` and says what changed. Only reads (AWS and
    /// the store), so a stop may drop it half way.
    async fn observe(
        &mut self,
        at: DateTime<Utc>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Vec<Signal>, PollError>;
    /// Forgets what it tracked: the round's signals were not recorded.
    fn forget(&mut self);
}

/// Where a poller's signals go (the pipeline, and the workers in live mode).
#[async_trait::async_trait]
pub trait SignalSink: Send + Sync {
    /// Records them at `at`, as one payload's.
    async fn record(&self, signals: Vec<Signal>, at: DateTime<Utc>) -> Handled;
}

/// When a poller runs: every `interval`, each wait moved by up to
/// `jitter` of it either way (so replicas and pollers do not call in step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// The period.
    pub interval: Duration,
    /// A fraction of the interval, 0 to 0.5.
    pub jitter: f64,
}

impl Schedule {
    /// The wait before the next round, `interval` jittered.
    pub fn next_wait(&self) -> Duration {
        use std::hash::{BuildHasher, Hasher};
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 0.5)
        } else {
            0.0
        };
        // A fresh random state per call: the standard library's own seed.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0);
        let unit = (h.finish() >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        self.interval.mul_f64(1.0 + jitter * (2.0 * unit - 1.0))
    }
}

/// Runs `poller` on `schedule` until `stop`: each round's signals are
/// recorded through `sink` (a round in hand is recorded even when a stop
/// arrives meanwhile); a round that fails, or whose signals the store
/// refuses, is counted and logged and its observations forgotten.
pub async fn run(
    mut poller: impl Poller,
    schedule: Schedule,
    sink: std::sync::Arc<dyn SignalSink>,
    mut stop: watch::Receiver<bool>,
) {
    use crate::metrics::{Counter, Gauge, metrics};
    let name = poller.name();
    while !*stop.borrow() {
        let due = Instant::now();
        let at = Utc::now();
        let result = poller.observe(at, &mut stop).await;
        let outcome = match result {
            Ok(signals) if signals.is_empty() => "ok",
            Ok(signals) => match sink.record(signals, at).await {
                Handled::Done { .. } => "ok",
                other => {
                    tracing::error!(poller = name, outcome = ?other, "could not record a poll; observing afresh next round");
                    poller.forget();
                    "failed"
                }
            },
            Err(PollError::Stopped) => break,
            Err(e) => {
                tracing::warn!(poller = name, error = %e, "poll failed; observing afresh next round");
                poller.forget();
                "failed"
            }
        };
        metrics().inc(Counter::Polls, &[("poller", name), ("result", outcome)]);
        metrics().set(
            Gauge::PollLag,
            &[("poller", name)],
            due.elapsed().as_secs_f64(),
        );
        tokio::select! {
            _ = tokio::time::sleep(schedule.next_wait()) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    tracing::info!(poller = name, "poller stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 3, t0);
        for _ in 0..3 {
            assert_eq!(b.try_take(t0), Ok(()));
        }
        let wait = b.try_take(t0).expect_err("empty");
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        assert_eq!(b.try_take(t0 + wait), Ok(()));
        // Refills no further than its burst.
        let later = t0 + 100 * S;
        for _ in 0..3 {
            assert_eq!(b.try_take(later), Ok(()));
        }
        assert!(b.try_take(later).is_err());
    }

    #[test]
    fn a_bad_rate_slows_instead_of_stopping() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(f64::NAN, 0, t0);
        assert_eq!(b.try_take(t0), Ok(()));
        let wait = b.try_take(t0).expect_err("empty");
        assert!((wait.as_secs_f64() - 60.0).abs() < 1e-6, "{wait:?}");
    }

    #[test]
    fn transitions_open_and_recover_once_each() {
        let t0 = Instant::now();
        let mut t = Tracker::new(FlapRule::default());
        let k = "tg#i-1:80";
        assert_eq!(t.observe(&k, Health::Healthy, t0), Verdict::Recover);
        assert_eq!(t.observe(&k, Health::Healthy, t0 + 15 * S), Verdict::Quiet);
        assert_eq!(
            t.observe(&k, Health::Unhealthy, t0 + 30 * S),
            Verdict::Open { flapping: None }
        );
        assert_eq!(
            t.observe(&k, Health::Unhealthy, t0 + 45 * S),
            Verdict::Quiet
        );
        assert_eq!(
            t.observe(&k, Health::Healthy, t0 + 60 * S),
            Verdict::Recover
        );
    }

    #[test]
    fn a_first_unhealthy_observation_opens() {
        let mut t = Tracker::new(FlapRule::default());
        assert_eq!(
            t.observe(&"k", Health::Unhealthy, Instant::now()),
            Verdict::Open { flapping: None }
        );
    }

    #[test]
    fn flapping_opens_even_when_healthy_and_expires_with_the_window() {
        let t0 = Instant::now();
        let mut t = Tracker::new(FlapRule::default());
        let k = "k";
        t.observe(&k, Health::Healthy, t0);
        let seq = [
            (Health::Unhealthy, Verdict::Open { flapping: None }),
            (Health::Healthy, Verdict::Recover),
            (Health::Unhealthy, Verdict::Open { flapping: None }),
            (Health::Healthy, Verdict::Open { flapping: Some(4) }),
            (Health::Unhealthy, Verdict::Open { flapping: Some(5) }),
        ];
        for (i, (h, want)) in seq.into_iter().enumerate() {
            let at = t0 + (u32::try_from(i).unwrap_or(0) + 1) * 15 * S;
            assert_eq!(t.observe(&k, h, at), want, "observation {i}");
        }
        // Eleven minutes later the old transitions are out of the window.
        assert_eq!(
            t.observe(&k, Health::Healthy, t0 + 750 * S),
            Verdict::Recover
        );
    }

    #[test]
    fn deregistered_resources_are_forgotten() {
        let t0 = Instant::now();
        let mut t = Tracker::new(FlapRule::default());
        t.observe(&"a", Health::Healthy, t0);
        t.observe(&"b", Health::Healthy, t0);
        t.retain(|k| *k == "a");
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.observe(&"b", Health::Unhealthy, t0),
            Verdict::Open { flapping: None }
        );
    }
}
