//! Cooldown per resource and action kind (default 10 minutes; a resource's
//! `cooldown-minutes` overrides).

use super::{Ctx, Rule, Verdict, counted};

pub(crate) fn check(ctx: &Ctx<'_>) -> Option<Verdict> {
    let target = ctx.target()?;
    let minutes = ctx
        .facts
        .resource_config
        .as_ref()
        .and_then(|r| r.cooldown_minutes)
        .unwrap_or(ctx.config.cooldown_minutes);
    let since = ctx.now - Ctx::minutes(minutes);
    let kind = ctx.kind();
    let recent = counted(ctx, &ctx.history.resource, |k, t, at| {
        k == kind && t == target && at > since
    });
    (recent > 0).then(|| {
        Verdict::deny(
            Rule::Cooldown,
            format!("{kind} ran on {target} less than {minutes} minutes ago"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;

    #[test]
    fn window_edges() {
        let at = |m| History {
            resource: vec![action(ActionKind::ReplaceInstance, "i-1", m, false)],
            ..History::default()
        };
        let v = judge_one(replace("i-1"), &tagged(), &at(9), GovernorConfig::default());
        assert!(
            matches!(
                v,
                Verdict::Denied {
                    rule: Rule::Cooldown,
                    ..
                }
            ),
            "{v:?}"
        );
        // Exactly at the limit: the cooldown is over.
        assert!(
            judge_one(
                replace("i-1"),
                &tagged(),
                &at(10),
                GovernorConfig::default()
            )
            .is_approved()
        );
        // Another kind is not cooled down.
        let other = History {
            resource: vec![action(ActionKind::RebootInstance, "i-1", 1, false)],
            ..History::default()
        };
        assert!(
            judge_one(replace("i-1"), &tagged(), &other, GovernorConfig::default()).is_approved()
        );
    }
}
