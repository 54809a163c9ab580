//! Max in flight: actions running at once, globally and per group. An action is
//! running until it records its end (or for `in-flight-minutes` if it never does).

use super::{Ctx, Rule, Verdict, pending};

pub(crate) fn check(ctx: &Ctx<'_>) -> Option<Verdict> {
    let pending = pending(ctx, |k| k.is_mutating());
    let global = ctx.tally.running_all + pending;
    if global >= ctx.config.max_in_flight as usize {
        return Some(Verdict::deny(
            Rule::InFlight,
            format!(
                "{global} actions in flight (limit {})",
                ctx.config.max_in_flight
            ),
        ));
    }
    ctx.scope.group.as_ref()?;
    let group = ctx.tally.running_group + pending;
    (group >= ctx.config.max_in_flight_per_group as usize).then(|| {
        Verdict::deny(
            Rule::InFlight,
            format!(
                "{group} actions in flight in the group (limit {})",
                ctx.config.max_in_flight_per_group
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;

    #[test]
    fn running_actions_count_until_they_end() {
        let cfg = GovernorConfig {
            max_in_flight: 2,
            max_in_flight_per_group: 1,
            ..GovernorConfig::default()
        };
        let running_in_group = History {
            group: vec![action(ActionKind::RebootInstance, "i-5", 2, true)],
            all: vec![action(ActionKind::RebootInstance, "i-5", 2, true)],
            ..History::default()
        };
        let v = judge_one(replace("i-1"), &tagged(), &running_in_group, cfg.clone());
        assert!(
            matches!(
                v,
                Verdict::Denied {
                    rule: Rule::InFlight,
                    ..
                }
            ),
            "{v:?}"
        );
        let finished = History {
            group: vec![action(ActionKind::RebootInstance, "i-5", 2, false)],
            all: vec![action(ActionKind::RebootInstance, "i-5", 2, false)],
            ..History::default()
        };
        assert!(judge_one(replace("i-1"), &tagged(), &finished, cfg.clone()).is_approved());
        // A running action older than in-flight-minutes no longer counts.
        let stale = History {
            group: vec![action(ActionKind::RebootInstance, "i-5", 16, true)],
            all: vec![action(ActionKind::RebootInstance, "i-5", 16, true)],
            ..History::default()
        };
        assert!(judge_one(replace("i-1"), &tagged(), &stale, cfg).is_approved());
    }
}
