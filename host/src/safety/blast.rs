//! Blast radius: at most N% (default 34%) of a group's members under action at
//! once. Beyond it the group is in storm mode: mutating steps are denied and only
//! notify / escalate go out. An unknown group size fails safe (not a storm).
//!
//! A group-wide step (force-new-deployment, rollback-deployment, scale-service)
//! touches every member of its service, so it counts as the whole group: it is
//! admitted only while nothing else in the group is under action (the
//! deployment then paces itself), and while it counts, every other step in the
//! group is over the limit.

use super::{Ctx, Effect, Rule, Verdict};

fn storm(reason: String) -> Verdict {
    Verdict::deny_with(
        Rule::BlastRadius,
        Effect::Storm,
        format!("storm mode: {reason}; notify and escalate only"),
    )
}

pub(crate) fn check(ctx: &Ctx<'_>) -> Option<Verdict> {
    let group = ctx.scope.group.as_ref()?;
    let target = ctx.target()?;
    let limit = u64::from(ctx.config.blast_radius_percent);
    if limit >= 100 {
        return None;
    }
    let t = ctx.tally;
    let pending_group_wide = ctx.approved_before.iter().any(|a| a.kind.is_group_wide());
    if ctx.kind().is_group_wide() {
        let busy = t.blast_members.len() + super::pending(ctx, |k| k.is_mutating());
        return (t.blast_group_wide || busy > 0).then(|| {
            storm(format!(
                "{} would put every member of {} under action, and {busy} already are (limit {limit}%)",
                ctx.kind(),
                group.id
            ))
        });
    }
    let facts = ctx.facts.of(&group.id);
    let Some(size) = facts.group_size.filter(|s| *s > 0) else {
        return Some(Verdict::deny(
            Rule::BlastRadius,
            format!(
                "the size of group {} could not be read{}; failing safe",
                group.id,
                facts.why_unknown()
            ),
        ));
    };
    if t.blast_group_wide || pending_group_wide {
        return Some(storm(format!(
            "a group-wide action puts all {size} members of {} under action (limit {limit}%)",
            group.id
        )));
    }
    // Members already under action, plus the new ones this decision adds.
    let mut added: Vec<&str> = ctx
        .approved_before
        .iter()
        .filter_map(|a| a.target.as_deref())
        .chain(std::iter::once(target))
        .filter(|t| !ctx.tally.blast_members.contains(t))
        .collect();
    added.sort_unstable();
    added.dedup();
    let under = (t.blast_members.len() + added.len()) as u64;
    (under * 100 > limit * u64::from(size)).then(|| {
        storm(format!(
            "{under} of {size} group members would be under action (limit {limit}%)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;
    use crate::decision::{Action, Step};

    fn storm(v: &Verdict) -> bool {
        matches!(
            v,
            Verdict::Denied {
                rule: Rule::BlastRadius,
                effect: Effect::Storm,
                ..
            }
        )
    }

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
        assert!(storm(&v), "{v:?}");
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
        let mut unknown = tagged();
        unknown.entry("web").group_size = None;
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

    fn redeploy() -> Step {
        Step {
            action: Action::ForceNewDeployment {
                cluster: "prod".into(),
                service: "api".into(),
            },
            reason: "t".into(),
        }
    }

    fn restart(task: &str) -> Step {
        Step {
            action: Action::RestartTask {
                cluster: "prod".into(),
                task: task.into(),
            },
            reason: "t".into(),
        }
    }

    #[test]
    fn group_wide_redeploy_counts_as_the_whole_group() {
        // Issue 11, item 7: one task of six is being restarted; a new deployment
        // replaces all six, so it is over the limit (it counted as one before).
        let cfg = GovernorConfig::default();
        let facts = service_facts("api:7", 6);
        let one_restarted = History {
            group: vec![service_action(ActionKind::RestartTask, "task-x", 2)],
            ..History::default()
        };
        let v = judge_service_with(redeploy(), &facts, &one_restarted, cfg.clone());
        assert!(storm(&v), "{v:?}");
        // Alone in the group, the deployment paces itself: admitted.
        assert!(
            judge_service_with(redeploy(), &facts, &History::default(), cfg.clone()).is_approved()
        );
        // While a redeploy counts, a restart of the incident's task is over the limit.
        let redeployed = History {
            group: vec![service_action(ActionKind::ForceNewDeployment, SERVICE, 2)],
            ..History::default()
        };
        let v = judge_service_with(restart(TASK), &facts, &redeployed, cfg.clone());
        assert!(storm(&v), "{v:?}");
        // In one decision: a redeploy after an approved restart is over the limit.
        let j = judge_service_steps(vec![restart(TASK), redeploy()], &facts, cfg);
        assert!(j.verdicts[0].verdict.is_approved(), "{j:?}");
        assert!(storm(&j.verdicts[1].verdict), "{j:?}");
        assert!(j.storm);
    }
}
