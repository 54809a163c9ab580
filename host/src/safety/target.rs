//! Target guard: a step may only touch the incident's resource or a member of
//! its group; empty, wildcard and oversized targets are denied.

use super::{Ctx, Rule, Verdict};

/// Longest target id accepted (ARNs are at most 2048 characters).
const MAX_TARGET_LEN: usize = 2048;

/// `name` is the last path segment of `arn` (a service name for a service ARN).
fn names(arn: &str, name: &str) -> bool {
    arn.rsplit('/').next() == Some(name)
}

pub(crate) fn guard(ctx: &Ctx<'_>) -> Option<Verdict> {
    let target = ctx.target().unwrap_or("");
    if target.trim().is_empty() {
        return Some(Verdict::deny(Rule::TargetGuard, "the step names no target"));
    }
    if target.contains('*') || target.contains('?') {
        return Some(Verdict::deny(
            Rule::TargetGuard,
            format!("wildcard target {target:?}"),
        ));
    }
    if target.len() > MAX_TARGET_LEN {
        return Some(Verdict::deny(Rule::TargetGuard, "oversized target"));
    }
    let inc = ctx.incident;
    let resource = &inc.resource.id;
    let ok = target == resource
        || names(resource, target)
        || inc
            .group
            .as_ref()
            .is_some_and(|g| target == g.id || names(&g.id, target))
        || ctx.facts.group_members.iter().any(|m| m == target);
    (!ok).then(|| {
        Verdict::deny(
            Rule::TargetGuard,
            format!("target {target} is neither the incident's resource {resource} nor a member of its group"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;

    #[test]
    fn only_the_resource_or_group_members() {
        let h = History::default();
        assert!(judge_one(replace("i-1"), &tagged(), &h, GovernorConfig::default()).is_approved());
        let other = judge_one(replace("i-2"), &tagged(), &h, GovernorConfig::default());
        assert!(
            matches!(
                other,
                Verdict::Denied {
                    rule: Rule::TargetGuard,
                    ..
                }
            ),
            "{other:?}"
        );
        let member = Facts {
            group_members: vec!["i-2".into()],
            ..tagged()
        };
        assert!(judge_one(replace("i-2"), &member, &h, GovernorConfig::default()).is_approved());
        for bad in ["", "*", "i-*", &"i".repeat(3000)] {
            let v = judge_one(replace(bad), &tagged(), &h, GovernorConfig::default());
            assert!(
                matches!(
                    v,
                    Verdict::Denied {
                        rule: Rule::TargetGuard,
                        ..
                    }
                ),
                "{bad}: {v:?}"
            );
        }
    }
}
