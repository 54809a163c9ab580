//! Allowed actions: the policy's declared kinds and the `allowed-actions`
//! config of every resource the step touches (its target and the group it acts
//! in; each one's list must allow the kind).

use super::{Ctx, Rule, Verdict};

pub(crate) fn declared(ctx: &Ctx<'_>) -> Option<Verdict> {
    (!ctx.declared.contains(&ctx.kind())).then(|| {
        Verdict::deny(
            Rule::AllowedActions,
            format!(
                "the policy proposed {} without declaring it in its metadata",
                ctx.kind()
            ),
        )
    })
}

pub(crate) fn per_resource(ctx: &Ctx<'_>) -> Option<Verdict> {
    ctx.scope.guarded.iter().find_map(|r| {
        let allowed = ctx
            .facts
            .of(&r.id)
            .resource_config
            .as_ref()?
            .allowed_actions
            .as_ref()?;
        (!allowed.contains(&ctx.kind())).then(|| {
            Verdict::deny(
                Rule::AllowedActions,
                format!("{} is not in the allowed-actions of {}", ctx.kind(), r.id),
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;
    use crate::store::ResourceSettings;

    #[test]
    fn undeclared_and_disallowed_kinds_are_denied() {
        let h = History::default();
        let escalate = crate::decision::Step {
            action: crate::decision::Action::Escalate {
                message: "m".into(),
            },
            reason: "r".into(),
        };
        let v = judge_one(escalate, &tagged(), &h, GovernorConfig::default());
        assert!(
            matches!(v, Verdict::Denied { rule: Rule::AllowedActions, ref reason, .. } if reason.contains("without declaring")),
            "{v:?}"
        );
        let mut only_reboot = tagged();
        only_reboot.entry("i-1").resource_config = Some(ResourceSettings {
            allowed_actions: Some(vec![ActionKind::RebootInstance]),
            ..ResourceSettings::default()
        });
        let v = judge_one(replace("i-1"), &only_reboot, &h, GovernorConfig::default());
        assert!(
            matches!(
                v,
                Verdict::Denied {
                    rule: Rule::AllowedActions,
                    ..
                }
            ),
            "{v:?}"
        );
    }

    #[test]
    fn allowed_actions_of_the_step_target_are_judged() {
        let h = History::default();
        let mut facts = tagged();
        facts.entry("web").group_members = vec!["i-2".into()];
        facts.entry("i-2").tags = facts.of("i-1").tags.clone();
        facts.entry("i-2").resource_config = Some(ResourceSettings {
            allowed_actions: Some(vec![ActionKind::RebootInstance]),
            ..ResourceSettings::default()
        });
        let v = judge_one(replace("i-2"), &facts, &h, GovernorConfig::default());
        assert!(
            matches!(&v, Verdict::Denied { rule: Rule::AllowedActions, reason, .. } if reason.contains("i-2")),
            "{v:?}"
        );
    }
}
