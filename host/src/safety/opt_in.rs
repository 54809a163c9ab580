//! Opt-in: EC2 instances need the opt-in tag (`SelfHeal=true` by default);
//! `SelfHeal=false` or `skip-recovery` is never touched; unknown tags fail safe.

use crate::incident::ResourceKind;

use super::{Ctx, Rule, Verdict};

pub(crate) fn check(ctx: &Ctx<'_>) -> Option<Verdict> {
    let c = ctx.config;
    if ctx
        .facts
        .resource_config
        .as_ref()
        .is_some_and(|r| r.skip_recovery)
    {
        return Some(Verdict::deny(
            Rule::OptIn,
            "skip-recovery is set for this resource",
        ));
    }
    let ec2 = ctx
        .step
        .action
        .target()
        .is_some_and(|(kind, _)| kind == ResourceKind::Ec2Instance);
    let Some(tags) = &ctx.facts.tags else {
        return ec2.then(|| {
            Verdict::deny(
                Rule::OptIn,
                format!(
                    "the instance's tags could not be read{}; failing safe",
                    ctx.facts.why_unknown()
                ),
            )
        });
    };
    let value = tags.get(&c.opt_in_tag_key);
    if value.is_some_and(|v| v.eq_ignore_ascii_case("false")) {
        return Some(Verdict::deny(
            Rule::OptIn,
            format!("tagged {}=false", c.opt_in_tag_key),
        ));
    }
    (ec2 && value != Some(&c.opt_in_tag_value)).then(|| {
        Verdict::deny(
            Rule::OptIn,
            format!(
                "the instance is not tagged {}={}",
                c.opt_in_tag_key, c.opt_in_tag_value
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::testkit::*;
    use super::super::*;

    #[test]
    fn untagged_opted_out_and_unknown_are_denied() {
        let h = History::default();
        let with = |tags: Option<&[(&str, &str)]>| Facts {
            tags: tags.map(|t| {
                t.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>()
            }),
            ..tagged()
        };
        for facts in [
            with(None),
            with(Some(&[])),
            with(Some(&[("SelfHeal", "false")])),
            with(Some(&[("SelfHeal", "yes")])),
        ] {
            let v = judge_one(replace("i-1"), &facts, &h, GovernorConfig::default());
            assert!(
                matches!(
                    v,
                    Verdict::Denied {
                        rule: Rule::OptIn,
                        ..
                    }
                ),
                "{facts:?}: {v:?}"
            );
        }
        assert!(
            judge_one(
                replace("i-1"),
                &with(Some(&[("SelfHeal", "true")])),
                &h,
                GovernorConfig::default()
            )
            .is_approved()
        );
        let custom = GovernorConfig {
            opt_in_tag_key: "heal".into(),
            opt_in_tag_value: "on".into(),
            ..GovernorConfig::default()
        };
        assert!(
            judge_one(replace("i-1"), &with(Some(&[("heal", "on")])), &h, custom).is_approved()
        );
    }
}
