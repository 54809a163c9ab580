//! Rate limits: token buckets per action kind, global (all mutating kinds) and
//! for notify / escalate. A bucket holds one hour's worth of its rate (a limit
//! of 20 per hour allows a burst of 20) and refills continuously.
//!
//! The buckets are not kept in memory: they are replayed, for each decision, from
//! the actions index (the store's record of what ran or, in dry run, would have),
//! so limits hold across restarts and replicas. The replay starts an hour back
//! with an empty bucket: an hour of refill fills any bucket, and starting low can
//! only under-count tokens (fail safe), never over-count them.

use chrono::{DateTime, Utc};

use crate::decision::ActionKind;
use crate::store::ActionRecord;

use super::{Ctx, GovernorConfig, Rule, Verdict, pending};

/// One token, in the integer units buckets count in (token-milliseconds per
/// hour), so refill arithmetic is exact.
const TOKEN: i64 = 3_600_000;

/// A token bucket's level now, and how many actions it saw in the last hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bucket {
    /// Tokens left, in [`TOKEN`] units.
    level: i64,
    /// Actions it counted in the last hour (for the denial's reason).
    used: usize,
    /// Capacity and refill rate, tokens per hour.
    per_hour: i64,
    /// Time of the last spend (or the replay's start), epoch ms.
    last: i64,
}

impl Bucket {
    /// An empty bucket of `per_hour` tokens refilling at `per_hour` per hour, at `start_ms`.
    fn empty(per_hour: u32, start_ms: i64) -> Bucket {
        Bucket {
            level: 0,
            used: 0,
            per_hour: i64::from(per_hour),
            last: start_ms,
        }
    }

    fn refilled(&self, at_ms: i64) -> i64 {
        let cap = self.per_hour * TOKEN;
        (self.level + (at_ms - self.last).max(0) * self.per_hour).min(cap)
    }

    /// One action at `at_ms` (not before the previous one).
    fn spend(&mut self, at_ms: i64) {
        self.level = (self.refilled(at_ms) - TOKEN).max(0);
        self.last = at_ms;
        self.used += 1;
    }

    /// The bucket as of `now_ms`.
    fn at(mut self, now_ms: i64) -> Bucket {
        self.level = self.refilled(now_ms);
        self.last = now_ms;
        self
    }

    /// Whether one more action fits after `pending` ones already approved.
    fn admits(&self, pending: usize) -> bool {
        let pending = i64::try_from(pending).unwrap_or(i64::MAX / TOKEN);
        self.level - pending * TOKEN >= TOKEN
    }
}

/// Every bucket of one decision.
pub(crate) struct Buckets {
    /// Kinds with actions in the last hour (at most one entry per kind; few).
    per_kind: Vec<(ActionKind, Bucket)>,
    global: Bucket,
    notify: Bucket,
    /// Where the replay starts (one hour back) and ends, epoch ms.
    start_ms: i64,
    now_ms: i64,
}

impl Buckets {
    /// Replays the actions index over the last hour, in one pass.
    pub fn replay(all: &[ActionRecord], config: &GovernorConfig, now: DateTime<Utc>) -> Buckets {
        let now_ms = now.timestamp_millis();
        let start = now_ms - 3_600_000;
        let mut b = Buckets {
            per_kind: Vec::new(),
            global: Bucket::empty(config.rate_global_per_hour, start),
            notify: Bucket::empty(config.notify_per_hour, start),
            start_ms: start,
            now_ms,
        };
        let events = all
            .iter()
            .map(|a| (a.started_at.timestamp_millis(), a.kind))
            .filter(|(t, _)| *t > start && *t <= now_ms);
        // The store returns actions in time order; others are sorted first.
        if all.is_sorted_by_key(|a| a.started_at) {
            events.for_each(|(t, kind)| b.spend(t, kind, config));
        } else {
            let mut sorted: Vec<_> = events.collect();
            sorted.sort_unstable_by_key(|e| e.0);
            sorted
                .into_iter()
                .for_each(|(t, kind)| b.spend(t, kind, config));
        }
        b
    }

    fn spend(&mut self, t: i64, kind: ActionKind, config: &GovernorConfig) {
        if !kind.is_mutating() {
            self.notify.spend(t);
            return;
        }
        self.global.spend(t);
        match self.per_kind.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, bucket)) => bucket.spend(t),
            None => {
                let mut bucket = Bucket::empty(config.rate_limit(kind), self.start_ms);
                bucket.spend(t);
                self.per_kind.push((kind, bucket));
            }
        }
    }

    /// The bucket of a mutating kind now (full when it saw no action).
    fn kind(&self, kind: ActionKind, per_hour: u32) -> Bucket {
        self.per_kind
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(Bucket::empty(per_hour, self.start_ms), |(_, b)| *b)
            .at(self.now_ms)
    }
}

pub(crate) fn check(ctx: &Ctx<'_>) -> Option<Verdict> {
    let kind = ctx.kind();
    let limit = ctx.config.rate_limit(kind);
    let bucket = ctx.tally.buckets.kind(kind, limit);
    if !bucket.admits(pending(ctx, |k| k == kind)) {
        return Some(Verdict::deny(
            Rule::RateLimit,
            format!(
                "{kind} rate limit reached: {} in the last hour, limit {limit} per hour",
                bucket.used
            ),
        ));
    }
    let global = ctx.tally.buckets.global.at(ctx.tally.buckets.now_ms);
    let limit = ctx.config.rate_global_per_hour;
    (!global.admits(pending(ctx, |k| k.is_mutating()))).then(|| {
        Verdict::deny(
            Rule::RateLimit,
            format!(
                "global rate limit reached: {} actions in the last hour, limit {limit} per hour",
                global.used
            ),
        )
    })
}

pub(crate) fn notify(ctx: &Ctx<'_>) -> Option<Verdict> {
    let bucket = ctx.tally.buckets.notify.at(ctx.tally.buckets.now_ms);
    let limit = ctx.config.notify_per_hour;
    (!bucket.admits(pending(ctx, |k| !k.is_mutating()))).then(|| {
        Verdict::deny(
            Rule::RateLimit,
            format!(
                "notification rate limit reached: {} in the last hour, limit {limit} per hour",
                bucket.used
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;
    use super::{Bucket, Buckets};

    #[test]
    fn per_kind_global_and_notify_limits() {
        let cfg = GovernorConfig {
            rate_per_kind_per_hour: 2,
            rate_global_per_hour: 3,
            notify_per_hour: 1,
            ..GovernorConfig::default()
        };
        let hist = |acts: Vec<ActionRecord>| History {
            all: acts,
            ..History::default()
        };
        let one = hist(vec![action(ActionKind::ReplaceInstance, "i-8", 30, false)]);
        assert!(judge_one(replace("i-1"), &tagged(), &one, cfg.clone()).is_approved());
        // A bucket of 2 refilling at 2/h: two spent 10 and 5 minutes ago leave
        // a sixth of a token.
        let two = hist(vec![
            action(ActionKind::ReplaceInstance, "i-8", 10, false),
            action(ActionKind::ReplaceInstance, "i-9", 5, false),
        ]);
        assert!(matches!(
            judge_one(replace("i-1"), &tagged(), &two, cfg.clone()),
            Verdict::Denied {
                rule: Rule::RateLimit,
                ..
            }
        ));
        // Older than an hour no longer counts.
        let old = hist(vec![
            action(ActionKind::ReplaceInstance, "i-8", 61, false),
            action(ActionKind::ReplaceInstance, "i-9", 60, false),
        ]);
        assert!(judge_one(replace("i-1"), &tagged(), &old, cfg.clone()).is_approved());
        // The bucket refills: empty 35 minutes ago, over a token now.
        let refilled = hist(vec![
            action(ActionKind::ReplaceInstance, "i-8", 40, false),
            action(ActionKind::ReplaceInstance, "i-9", 35, false),
        ]);
        assert!(judge_one(replace("i-1"), &tagged(), &refilled, cfg.clone()).is_approved());
        let mixed = hist(vec![
            action(ActionKind::RebootInstance, "i-7", 5, false),
            action(ActionKind::RebootInstance, "i-8", 5, false),
            action(ActionKind::RestartTask, "t", 5, false),
        ]);
        let v = judge_one(replace("i-1"), &tagged(), &mixed, cfg.clone());
        assert!(
            matches!(v, Verdict::Denied { rule: Rule::RateLimit, ref reason, .. } if reason.contains("global")),
            "{v:?}"
        );
        let notified = hist(vec![action(ActionKind::Notify, "", 5, false)]);
        assert!(matches!(
            judge_one(notify(), &tagged(), &notified, cfg),
            Verdict::Denied {
                rule: Rule::RateLimit,
                ..
            }
        ));
    }

    #[test]
    fn bucket_arithmetic_is_exact() {
        let now = now().timestamp_millis();
        let start = now - 3_600_000;
        let at = |m: i64| now - m * 60_000;
        let replay = |times: &[i64], per_hour: u32| {
            let mut b = Bucket::empty(per_hour, start);
            for &t in times {
                b.spend(t);
            }
            b.at(now)
        };
        // Nothing spent: full, exactly.
        let full = replay(&[], 1);
        assert!(full.admits(0) && !full.admits(1));
        // Limit 1/h, spent 59 minutes ago: 59/60 of a token, not enough.
        assert!(!replay(&[at(59)], 1).admits(0));
        // A zero limit never admits.
        assert!(!replay(&[], 0).admits(0));
        // A burst of the whole bucket at once, then nothing left.
        let burst = replay(&[at(1), at(1), at(1)], 3);
        assert_eq!(burst.used, 3);
        assert!(!burst.admits(0));
        // Spent exactly an hour ago: outside the replay, full again.
        let cfg = GovernorConfig {
            rate_per_kind_per_hour: 1,
            ..GovernorConfig::default()
        };
        let hour_ago = Buckets::replay(
            &[action(ActionKind::ReplaceInstance, "i-1", 60, false)],
            &cfg,
            super::super::testkit::now(),
        );
        assert!(hour_ago.kind(ActionKind::ReplaceInstance, 1).admits(0));
    }
}
