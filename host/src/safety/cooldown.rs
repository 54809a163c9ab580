//! Cooldown per resource and action kind (default 10 minutes; the
//! `cooldown-minutes` of the resources a step touches override, the longest
//! wins). Counted on the step's own target, whichever incident acted on it.

use super::{Ctx, Rule, Verdict, counted};

pub(crate) fn check(ctx: &Ctx<'_>) -> Option<Verdict> {
    let target = ctx.target()?;
    let minutes = ctx
        .scope
        .guarded
        .iter()
        .filter_map(|r| {
            ctx.facts
                .of(&r.id)
                .resource_config
                .as_ref()?
                .cooldown_minutes
        })
        .max()
        .unwrap_or(ctx.config.cooldown_minutes);
    let since = ctx.now - Ctx::minutes(minutes);
    let kind = ctx.kind();
    let recent = counted(ctx, &ctx.history.all, |k, t, at| {
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
        // (Our own replacement would also make the incident self-caused.)
        let cfg = GovernorConfig {
            self_caused_window_minutes: 0,
            ..GovernorConfig::default()
        };
        let at = |m| History {
            all: vec![action(ActionKind::ReplaceInstance, "i-1", m, false)],
            ..History::default()
        };
        let v = judge_one(replace("i-1"), &tagged(), &at(9), cfg.clone());
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
        assert!(judge_one(replace("i-1"), &tagged(), &at(10), cfg.clone()).is_approved());
        // Another kind is not cooled down.
        let other = History {
            all: vec![action(ActionKind::RebootInstance, "i-1", 1, false)],
            ..History::default()
        };
        assert!(judge_one(replace("i-1"), &tagged(), &other, cfg.clone()).is_approved());
    }

    #[test]
    fn cooldown_counts_the_step_target_not_the_incident_resource() {
        // Another task's incident redeployed the service 2 minutes ago: this
        // incident (on a different task) must not redeploy it again.
        let redeployed = History {
            all: vec![service_action(ActionKind::ForceNewDeployment, SERVICE, 2)],
            ..History::default()
        };
        let redeploy = crate::decision::Step {
            action: crate::decision::Action::ForceNewDeployment {
                cluster: "prod".into(),
                service: "api".into(),
            },
            reason: "t".into(),
        };
        let v = judge_service_with(
            redeploy,
            &service_facts("api:7", 4),
            &redeployed,
            GovernorConfig::default(),
        );
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
    }
}
