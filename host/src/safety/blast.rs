//! Blast radius: at most N% (default 34%) of a group's members under action at
//! once. Beyond it the group is in storm mode: mutating steps are denied and only
//! notify / escalate go out. An unknown group size fails safe (not a storm).

use super::{Ctx, Effect, Rule, Verdict};

pub(crate) fn check(ctx: &Ctx<'_>) -> Option<Verdict> {
    ctx.incident.group.as_ref()?;
    let target = ctx.target()?;
    let Some(size) = ctx.facts.group_size.filter(|s| *s > 0) else {
        return Some(Verdict::deny(
            Rule::BlastRadius,
            format!(
                "the group's size could not be read{}; failing safe",
                ctx.facts.why_unknown()
            ),
        ));
    };
    // Members already under action, plus the new ones this decision adds.
    let mut added: Vec<&str> = ctx
        .approved_before
        .iter()
        .filter_map(|s| s.action.target().map(|(_, id)| id))
        .chain(std::iter::once(target))
        .filter(|t| !ctx.tally.blast_members.contains(t))
        .collect();
    added.sort_unstable();
    added.dedup();
    let under = (ctx.tally.blast_members.len() + added.len()) as u64;
    let limit = u64::from(ctx.config.blast_radius_percent);
    (under * 100 > limit * u64::from(size)).then(|| {
        Verdict::deny_with(
            Rule::BlastRadius,
            Effect::Storm,
            format!(
                "storm mode: {under} of {size} group members would be under action (limit {limit}%); notify and escalate only"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;

    #[test]
    fn at_and_over_the_limit() {
        let cfg = GovernorConfig::default();
        let group = |targets: &[&str]| History {
            group: targets
                .iter()
                .map(|t| action(ActionKind::RebootInstance, t, 1, false))
                .collect(),
            ..History::default()
        };
        // 2 of 6 = 33% <= 34%: allowed; 3 of 6 = 50%: storm.
        assert!(judge_one(replace("i-1"), &tagged(), &group(&["i-2"]), cfg.clone()).is_approved());
        let v = judge_one(
            replace("i-1"),
            &tagged(),
            &group(&["i-2", "i-3"]),
            cfg.clone(),
        );
        assert!(
            matches!(
                v,
                Verdict::Denied {
                    rule: Rule::BlastRadius,
                    effect: Effect::Storm,
                    ..
                }
            ),
            "{v:?}"
        );
        // The same member acted on twice counts once (the cooldown handles repeats).
        assert!(
            judge_one(
                replace("i-1"),
                &tagged(),
                &group(&["i-2", "i-2"]),
                cfg.clone()
            )
            .is_approved()
        );
        // Unknown size fails safe, and is not a storm.
        let unknown = Facts {
            group_size: None,
            ..tagged()
        };
        let v = judge_one(replace("i-1"), &unknown, &History::default(), cfg);
        assert!(
            matches!(
                v,
                Verdict::Denied {
                    rule: Rule::BlastRadius,
                    effect: Effect::Step,
                    ..
                }
            ),
            "{v:?}"
        );
    }
}
