//! Opt-in, judged on the resources each step touches (not the incident's): an
//! EC2 instance a step acts on needs the opt-in tag (`SelfHeal=true` by
//! default) on itself; a resource tagged `SelfHeal=false` or with
//! `skip-recovery` is never touched, and neither is anything in such a group.
//! A group's opt-in tag never opts its members in. Unknown instance tags fail safe.

use crate::decision::NamedKind;

use super::{Ctx, Rule, Verdict};

pub(crate) fn check(ctx: &Ctx<'_>) -> Option<Verdict> {
    let c = ctx.config;
    for r in &ctx.scope.guarded {
        let facts = ctx.facts.of(&r.id);
        if facts
            .resource_config
            .as_ref()
            .is_some_and(|s| s.skip_recovery)
        {
            return Some(Verdict::deny(
                Rule::OptIn,
                format!("skip-recovery is set for {}", r.id),
            ));
        }
        let value = facts.tags.as_ref().and_then(|t| t.get(&c.opt_in_tag_key));
        if value.is_some_and(|v| v.eq_ignore_ascii_case("false")) {
            return Some(Verdict::deny(
                Rule::OptIn,
                format!("{} is tagged {}=false", r.id, c.opt_in_tag_key),
            ));
        }
    }
    let instance = ctx
        .scope
        .named
        .iter()
        .any(|(n, _)| n.is_target && n.kind == NamedKind::Ec2Instance);
    if !instance {
        return None;
    }
    let target = ctx.target()?;
    let facts = ctx.target_facts();
    let Some(tags) = &facts.tags else {
        return Some(Verdict::deny(
            Rule::OptIn,
            format!(
                "the tags of instance {target} could not be read{}; failing safe",
                facts.why_unknown()
            ),
        ));
    };
    (tags.get(&c.opt_in_tag_key) != Some(&c.opt_in_tag_value)).then(|| {
        Verdict::deny(
            Rule::OptIn,
            format!(
                "instance {target} is not tagged {}={}",
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
    use crate::store::ResourceSettings;

    fn tag_map(t: &[(&str, &str)]) -> BTreeMap<String, String> {
        t.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn by_opt_in(v: &Verdict) -> bool {
        matches!(
            v,
            Verdict::Denied {
                rule: Rule::OptIn,
                ..
            }
        )
    }

    #[test]
    fn untagged_opted_out_and_unknown_are_denied() {
        let h = History::default();
        let with = |tags: Option<&[(&str, &str)]>| {
            let mut f = tagged();
            f.entry("i-1").tags = tags.map(tag_map);
            f
        };
        for facts in [
            with(None),
            with(Some(&[])),
            with(Some(&[("SelfHeal", "false")])),
            with(Some(&[("SelfHeal", "yes")])),
        ] {
            let v = judge_one(replace("i-1"), &facts, &h, GovernorConfig::default());
            assert!(by_opt_in(&v), "{facts:?}: {v:?}");
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

    #[test]
    fn confused_deputy_replace_untagged_sibling_is_denied() {
        // Issue 11, item 4: the incident is on tagged i-1, the policy proposes
        // replacing i-2 of the same group, which is untagged or opted out.
        let h = History::default();
        for sibling in [
            None,
            Some(tag_map(&[])),
            Some(tag_map(&[("SelfHeal", "false")])),
        ] {
            let mut facts = tagged();
            facts.entry("web").group_members = vec!["i-1".into(), "i-2".into()];
            facts.entry("i-2").tags = sibling.clone();
            let v = judge_one(replace("i-2"), &facts, &h, GovernorConfig::default());
            assert!(by_opt_in(&v), "{sibling:?}: {v:?}");
        }
    }

    #[test]
    fn group_opt_in_does_not_opt_members_in_but_group_opt_out_protects_them() {
        let h = History::default();
        let mut facts = tagged();
        facts.entry("i-1").tags = Some(tag_map(&[]));
        facts.entry("web").tags = Some(tag_map(&[("SelfHeal", "true")]));
        assert!(by_opt_in(&judge_one(
            replace("i-1"),
            &facts,
            &h,
            GovernorConfig::default()
        )));
        let mut facts = tagged();
        facts.entry("web").tags = Some(tag_map(&[("SelfHeal", "false")]));
        assert!(by_opt_in(&judge_one(
            replace("i-1"),
            &facts,
            &h,
            GovernorConfig::default()
        )));
    }

    #[test]
    fn skip_recovery_on_the_step_target_is_judged_not_the_incidents() {
        let h = History::default();
        let mut facts = tagged();
        facts.entry("web").group_members = vec!["i-2".into()];
        facts.entry("i-2").tags = facts.of("i-1").tags.clone();
        facts.entry("i-2").resource_config = Some(ResourceSettings {
            skip_recovery: true,
            ..ResourceSettings::default()
        });
        let v = judge_one(replace("i-2"), &facts, &h, GovernorConfig::default());
        assert!(
            matches!(&v, Verdict::Denied { rule: Rule::OptIn, reason, .. } if reason.contains("skip-recovery is set for i-2")),
            "{v:?}"
        );
        assert!(judge_one(replace("i-1"), &facts, &h, GovernorConfig::default()).is_approved());
    }
}
