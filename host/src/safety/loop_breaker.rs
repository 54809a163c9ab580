//! Loop breaker: K heals of the same resource or group within a window (default
//! 3 in an hour) stop the automation for it and escalate to humans. This is what
//! ends launch/terminate loops.

use super::{Ctx, Effect, Rule, Verdict, counted};

pub(crate) fn check(ctx: &Ctx<'_>) -> Option<Verdict> {
    let c = ctx.config;
    let since = ctx.now - Ctx::minutes(c.loop_breaker_window_minutes);
    let limit = c.loop_breaker_count as usize;
    let target = ctx.target()?;
    let on_resource = counted(ctx, &ctx.history.all, |k, t, at| {
        k.is_mutating() && t == target && at > since
    });
    if on_resource >= limit {
        return Some(Verdict::deny_with(
            Rule::LoopBreaker,
            Effect::Escalate,
            format!(
                "{target} was healed {on_resource} times in {} minutes; stop and escalate",
                c.loop_breaker_window_minutes
            ),
        ));
    }
    let group = ctx.scope.group.as_ref()?;
    // A group trips when the heals of its members add up to K per member under
    // the blast radius, i.e. the group keeps failing however often it is healed.
    let size = ctx.facts.of(&group.id).group_size.unwrap_or(1).max(1);
    let group_limit = limit * size as usize;
    let on_group = ctx.tally.group_heals + super::pending(ctx, |k| k.is_mutating());
    (on_group >= group_limit).then(|| {
        Verdict::deny_with(
            Rule::LoopBreaker,
            Effect::Escalate,
            format!(
                "group {} was healed {on_group} times in {} minutes; stop and escalate",
                group.id, c.loop_breaker_window_minutes
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;

    #[test]
    fn third_heal_in_the_window_trips() {
        let cfg = GovernorConfig {
            cooldown_minutes: 0,
            self_caused_window_minutes: 0,
            ..GovernorConfig::default()
        };
        let heals = |ages: &[i64]| History {
            all: ages
                .iter()
                .map(|m| action(ActionKind::RebootInstance, "i-1", *m, false))
                .collect(),
            ..History::default()
        };
        assert!(judge_one(replace("i-1"), &tagged(), &heals(&[20, 40]), cfg.clone()).is_approved());
        let v = judge_one(
            replace("i-1"),
            &tagged(),
            &heals(&[10, 20, 40]),
            cfg.clone(),
        );
        assert!(
            matches!(
                v,
                Verdict::Denied {
                    rule: Rule::LoopBreaker,
                    ..
                }
            ),
            "{v:?}"
        );
        // Window edge: a heal exactly 60 minutes ago has left the window.
        assert!(judge_one(replace("i-1"), &tagged(), &heals(&[10, 20, 60]), cfg).is_approved());
    }
}
