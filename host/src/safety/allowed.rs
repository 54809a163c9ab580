//! Allowed actions: the policy's declared kinds and the resource's
//! `allowed-actions` config.

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
    let allowed = ctx
        .facts
        .resource_config
        .as_ref()?
        .allowed_actions
        .as_ref()?;
    (!allowed.contains(&ctx.kind())).then(|| {
        Verdict::deny(
            Rule::AllowedActions,
            format!("{} is not in the resource's allowed-actions", ctx.kind()),
        )
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
        let scale = crate::decision::Step {
            action: crate::decision::Action::ScaleService {
                cluster: "c".into(),
                service: "web".into(),
                desired_count: 9,
            },
            reason: "r".into(),
        };
        let v = judge_one(scale, &tagged(), &h, GovernorConfig::default());
        assert!(
            matches!(v, Verdict::Denied { rule: Rule::AllowedActions, ref reason, .. } if reason.contains("without declaring")),
            "{v:?}"
        );
        let only_reboot = Facts {
            resource_config: Some(ResourceSettings {
                allowed_actions: Some(vec![ActionKind::RebootInstance]),
                ..ResourceSettings::default()
            }),
            ..tagged()
        };
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
}
