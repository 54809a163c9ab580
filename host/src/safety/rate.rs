//! Rate limits over the last hour: per action kind, global, and for notify /
//! escalate. A sliding window over the actions index (the store's record of what
//! ran), so limits hold across restarts and replicas.

use super::{Ctx, Rule, Verdict, pending};

pub(crate) fn check(ctx: &Ctx<'_>) -> Option<Verdict> {
    let kind = ctx.kind();
    let limit = ctx
        .config
        .rate_overrides
        .get(&kind)
        .copied()
        .unwrap_or(ctx.config.rate_per_kind_per_hour) as usize;
    let of_kind =
        ctx.tally.per_kind_hour.get(&kind).copied().unwrap_or(0) + pending(ctx, |k| k == kind);
    if of_kind >= limit {
        return Some(Verdict::deny(
            Rule::RateLimit,
            format!("{of_kind} {kind} actions in the last hour (limit {limit})"),
        ));
    }
    let global = ctx.tally.mutating_hour + pending(ctx, |k| k.is_mutating());
    let limit = ctx.config.rate_global_per_hour as usize;
    (global >= limit).then(|| {
        Verdict::deny(
            Rule::RateLimit,
            format!("{global} actions in the last hour (global limit {limit})"),
        )
    })
}

pub(crate) fn notify(ctx: &Ctx<'_>) -> Option<Verdict> {
    let sent = ctx.tally.notify_hour + pending(ctx, |k| !k.is_mutating());
    let limit = ctx.config.notify_per_hour as usize;
    (sent >= limit).then(|| {
        Verdict::deny(
            Rule::RateLimit,
            format!("{sent} notifications in the last hour (limit {limit})"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;

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
        let two = hist(vec![
            action(ActionKind::ReplaceInstance, "i-8", 30, false),
            action(ActionKind::ReplaceInstance, "i-9", 59, false),
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
            action(ActionKind::ReplaceInstance, "i-8", 30, false),
            action(ActionKind::ReplaceInstance, "i-9", 60, false),
        ]);
        assert!(judge_one(replace("i-1"), &tagged(), &old, cfg.clone()).is_approved());
        let mixed = hist(vec![
            action(ActionKind::RebootInstance, "i-7", 5, false),
            action(ActionKind::RebootInstance, "i-8", 5, false),
            action(ActionKind::RestartTask, "t", 5, false),
        ]);
        let v = judge_one(replace("i-1"), &tagged(), &mixed, cfg.clone());
        assert!(
            matches!(v, Verdict::Denied { rule: Rule::RateLimit, ref reason } if reason.contains("global")),
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
}
