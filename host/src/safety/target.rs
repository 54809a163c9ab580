//! Target guard: every resource a step names (its target, and the cluster,
//! service, target group or Auto Scaling group beside it) must be the
//! incident's resource, its group, a known member of the group or the cluster
//! they run in; empty, wildcard and oversized names are denied. Matching is on
//! identity (see `scope`): full ARNs in the incident's account and region, bare
//! names only within their cluster.

use super::{Ctx, Rule, Verdict};

/// Longest name accepted (ARNs are at most 2048 characters).
const MAX_TARGET_LEN: usize = 2048;

/// Why a name cannot be checked at all, if it cannot.
fn malformed(id: &str) -> Option<String> {
    if id.trim().is_empty() {
        Some("the step names an empty resource".to_owned())
    } else if id.contains('*') || id.contains('?') {
        Some(format!("wildcard resource {id:?}"))
    } else if id.len() > MAX_TARGET_LEN {
        Some("oversized resource name".to_owned())
    } else {
        None
    }
}

pub(crate) fn guard(ctx: &Ctx<'_>) -> Option<Verdict> {
    if ctx.scope.named.is_empty() {
        return Some(Verdict::deny(Rule::TargetGuard, "the step names no target"));
    }
    for (named, place) in &ctx.scope.named {
        let why = std::iter::once(named.id)
            .chain(named.parent)
            .find_map(malformed)
            .or_else(|| place.as_ref().err().cloned());
        if let Some(why) = why {
            return Some(Verdict::deny(Rule::TargetGuard, why));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;
    use crate::decision::{Action, Step};

    fn by_guard(v: &Verdict) -> bool {
        matches!(
            v,
            Verdict::Denied {
                rule: Rule::TargetGuard,
                ..
            }
        )
    }

    #[test]
    fn only_the_resource_or_group_members() {
        let h = History::default();
        assert!(judge_one(replace("i-1"), &tagged(), &h, GovernorConfig::default()).is_approved());
        let other = judge_one(replace("i-2"), &tagged(), &h, GovernorConfig::default());
        assert!(by_guard(&other), "{other:?}");
        let mut member = tagged();
        member.entry("web").group_members = vec!["i-2".into()];
        member.entry("i-2").tags = member.of("i-1").tags.clone();
        assert!(judge_one(replace("i-2"), &member, &h, GovernorConfig::default()).is_approved());
        for bad in ["", "*", "i-*", &"i".repeat(3000)] {
            let v = judge_one(replace(bad), &tagged(), &h, GovernorConfig::default());
            assert!(by_guard(&v), "{bad}: {v:?}");
        }
    }

    fn ecs(action: Action) -> Verdict {
        let step = Step {
            action,
            reason: "t".into(),
        };
        judge_service(step, &service_facts("api:7", 4), GovernorConfig::default())
    }

    #[test]
    fn foreign_cluster_service_is_denied() {
        // Issue 11, item 5: `api` in `staging` is not the incident's `prod/api`.
        let redeploy = |cluster: &str, service: &str| {
            ecs(Action::ForceNewDeployment {
                cluster: cluster.into(),
                service: service.into(),
            })
        };
        assert!(redeploy("prod", "api").is_approved());
        assert!(redeploy("prod", SERVICE).is_approved());
        for (cluster, service) in [
            ("staging", "api"),
            ("prod", "arn:aws:ecs:eu-west-1:111:service/staging/api"),
            ("staging", SERVICE),
            ("prod", "arn:aws:ecs:eu-west-1:999:service/prod/api"),
            ("arn:aws:ecs:us-east-1:111:cluster/prod", "api"),
        ] {
            let v = redeploy(cluster, service);
            assert!(by_guard(&v), "{cluster} {service}: {v:?}");
        }
        let v = redeploy("staging", "api");
        assert!(
            matches!(&v, Verdict::Denied { reason, .. } if reason.contains("staging")),
            "{v:?}"
        );
    }

    #[test]
    fn every_named_resource_is_checked_not_only_the_target() {
        // The target is the incident's task, but the cluster is another one.
        let v = ecs(Action::RestartTask {
            cluster: "staging".into(),
            task: TASK.into(),
        });
        assert!(by_guard(&v), "{v:?}");
        // The instance is the incident's, the Auto Scaling group is not its group.
        let unhealthy = Step {
            action: Action::SetInstanceUnhealthy {
                group: "other-asg".into(),
                instance_id: "i-1".into(),
            },
            reason: "t".into(),
        };
        let v = judge_one(
            unhealthy,
            &tagged(),
            &History::default(),
            GovernorConfig::default(),
        );
        assert!(by_guard(&v), "{v:?}");
    }
}
