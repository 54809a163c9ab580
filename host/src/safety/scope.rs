//! The incident's scope: where each resource a step names sits relative to the
//! incident (its own resource, its group, a known member of the group, the
//! cluster they run in) or why it is outside it.
//!
//! Matching is on identity, not on spelling: an ARN matches only in full (same
//! account and region as the incident); a bare name is read in the incident's
//! account and region and matches only when its parent matches too, so `api` in
//! cluster `prod` is not `api` in `staging`. Pure: the group's members come in
//! with the facts; nothing is looked up here.

use crate::decision::{Action, Named, NamedKind};
use crate::incident::{Incident, ResourceKind, ResourceRef};

use super::facts::Facts;

/// The parts of an ARN this module compares.
struct Arn<'a> {
    service: &'a str,
    region: &'a str,
    account: &'a str,
    resource: &'a str,
}

fn arn(s: &str) -> Option<Arn<'_>> {
    let mut p = s.splitn(6, ':');
    if p.next()? != "arn" {
        return None;
    }
    let _partition = p.next()?;
    Some(Arn {
        service: p.next()?,
        region: p.next()?,
        account: p.next()?,
        resource: p.next()?,
    })
}

/// Who a resource is, however it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ident<'a> {
    /// The name or id (for a task definition `family:revision`).
    pub name: &'a str,
    /// The cluster of a service or task.
    pub parent: Option<&'a str>,
    /// From an ARN (a bare name has none: it lives in the incident's region).
    pub region: Option<&'a str>,
    /// From an ARN.
    pub account: Option<&'a str>,
}

/// `<prefix><cluster>/<name>`, or `<prefix><name>` in the old format (the
/// default cluster).
fn ecs_path<'a>(resource: &'a str, prefix: &str) -> Option<(&'a str, Option<&'a str>)> {
    let rest = resource.strip_prefix(prefix)?;
    Some(match rest.split_once('/') {
        Some((cluster, name)) => (name, Some(cluster)),
        None => (rest, Some("default")),
    })
}

/// Parses a name, id or ARN of `kind`; `parent` is the cluster written beside a
/// bare service or task. `None` when an ARN is not one of `kind`.
pub(crate) fn ident<'a>(
    kind: NamedKind,
    raw: &'a str,
    parent: Option<&'a str>,
) -> Option<Ident<'a>> {
    use NamedKind as K;
    let Some(a) = arn(raw) else {
        let cluster = match parent {
            Some(p) => Some(ident(K::EcsCluster, p, None)?),
            None => None,
        };
        return Some(Ident {
            name: raw,
            parent: cluster.map(|c| c.name),
            region: cluster.and_then(|c| c.region),
            account: cluster.and_then(|c| c.account),
        });
    };
    let service = match kind {
        K::EcsCluster | K::EcsService | K::EcsTask | K::TaskDefinition => "ecs",
        K::Ec2Instance => "ec2",
        K::TargetGroup => "elasticloadbalancing",
        K::AutoscalingGroup => "autoscaling",
        K::LambdaFunction => "lambda",
        K::Target => a.service,
    };
    if a.service != service {
        return None;
    }
    let (name, parent) = match kind {
        K::EcsCluster => (a.resource.strip_prefix("cluster/")?, None),
        K::EcsService => ecs_path(a.resource, "service/")?,
        K::EcsTask => ecs_path(a.resource, "task/")?,
        K::TaskDefinition => (a.resource.strip_prefix("task-definition/")?, None),
        K::Ec2Instance => (a.resource.strip_prefix("instance/")?, None),
        K::TargetGroup => (
            a.resource
                .strip_prefix("targetgroup/")
                .map(|_| a.resource)?,
            None,
        ),
        K::AutoscalingGroup => (a.resource.split_once("autoScalingGroupName/")?.1, None),
        K::LambdaFunction => (a.resource.strip_prefix("function:")?, None),
        // A Lambda target is named by its whole ARN.
        K::Target => (raw, None),
    };
    Some(Ident {
        name,
        parent,
        region: Some(a.region),
        account: Some(a.account),
    })
}

/// The named kind a resource of the incident is compared as.
fn as_named(kind: ResourceKind) -> Option<NamedKind> {
    Some(match kind {
        ResourceKind::EcsTask => NamedKind::EcsTask,
        ResourceKind::EcsService => NamedKind::EcsService,
        ResourceKind::Ec2Instance => NamedKind::Ec2Instance,
        ResourceKind::Target => NamedKind::Target,
        ResourceKind::TargetGroup => NamedKind::TargetGroup,
        ResourceKind::LambdaFunction => NamedKind::LambdaFunction,
        ResourceKind::AutoscalingGroup => NamedKind::AutoscalingGroup,
        ResourceKind::Alarm => return None,
    })
}

/// Whether a named kind can be a resource of this kind (an instance is also a
/// load-balancer target).
fn fits(named: NamedKind, kind: ResourceKind) -> bool {
    use NamedKind as N;
    use ResourceKind as R;
    matches!(
        (named, kind),
        (N::EcsService, R::EcsService)
            | (N::EcsTask, R::EcsTask)
            | (N::Ec2Instance | N::Target, R::Ec2Instance | R::Target)
            | (N::TargetGroup, R::TargetGroup)
            | (N::AutoscalingGroup, R::AutoscalingGroup)
            | (N::LambdaFunction, R::LambdaFunction)
    )
}

/// Where a named resource sits in the incident's scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    /// The incident's own resource.
    Resource,
    /// The incident's group.
    Group,
    /// A known member of the incident's group (its id as the group lists it).
    Member(String),
    /// The cluster of the incident's resource or group.
    Cluster,
    /// A value the parameter rule judges (a task definition).
    Parameter,
}

/// The incident's account and region, and its cluster, from its resource and
/// group (ARNs, else the references' own fields).
struct Home<'a> {
    region: Option<&'a str>,
    account: Option<&'a str>,
    cluster: Option<&'a str>,
}

impl<'a> Home<'a> {
    fn of(incident: &'a Incident) -> Self {
        let refs = std::iter::once(&incident.resource).chain(incident.group.as_ref());
        let idents: Vec<Ident<'a>> = refs
            .filter_map(|r| ident(as_named(r.kind)?, &r.id, None))
            .collect();
        let r = &incident.resource;
        Home {
            region: idents.iter().find_map(|i| i.region).or(r.region.as_deref()),
            account: idents
                .iter()
                .find_map(|i| i.account)
                .or(r.account.as_deref()),
            cluster: idents.iter().find_map(|i| i.parent),
        }
    }

    /// `named` and `known` are the same resource: same name and parent, and an
    /// ARN's account and region are the incident's.
    fn same(&self, named: &Ident<'_>, known: &Ident<'_>) -> bool {
        let here = |named: Option<&str>, known: Option<&str>, home: Option<&str>| {
            named.is_none_or(|n| known.or(home) == Some(n))
        };
        named.name == known.name
            && named.parent == known.parent
            && here(named.region, known.region, self.region)
            && here(named.account, known.account, self.account)
    }
}

/// Where `named` sits for this incident, or why it is outside its scope.
pub(crate) fn place(
    incident: &Incident,
    named: &Named<'_>,
    facts: &Facts,
) -> Result<Place, String> {
    let home = Home::of(incident);
    let outside = |what: &str| Err(format!("{} {} is not {what}", named.kind, shown(named)));
    let Some(id) = ident(named.kind, named.id, named.parent) else {
        return outside("an ARN of its kind");
    };
    match named.kind {
        NamedKind::TaskDefinition => return Ok(Place::Parameter),
        NamedKind::EcsCluster => {
            let ok = home.cluster.is_some_and(|c| {
                home.same(
                    &id,
                    &Ident {
                        name: c,
                        parent: None,
                        region: None,
                        account: None,
                    },
                )
            });
            return if ok {
                Ok(Place::Cluster)
            } else {
                outside(&format!(
                    "the incident's cluster ({})",
                    home.cluster.unwrap_or("none")
                ))
            };
        }
        _ => {}
    }
    let known = |r: &ResourceRef| {
        fits(named.kind, r.kind)
            && as_named(r.kind)
                .and_then(|k| ident(k, &r.id, None))
                .is_some_and(|k| home.same(&id, &k))
    };
    if known(&incident.resource) {
        return Ok(Place::Resource);
    }
    if let Some(g) = &incident.group {
        if known(g) {
            return Ok(Place::Group);
        }
        let members = &facts.of(&g.id).group_members;
        if let Some(m) = members
            .iter()
            .find(|m| ident(named.kind, m, None).is_some_and(|k| home.same(&id, &k)))
        {
            return Ok(Place::Member(m.clone()));
        }
    }
    outside("the incident's resource, its group or a known member of the group")
}

/// How a named resource is shown in a reason: `prod/api` for a bare name in a cluster.
fn shown(named: &Named<'_>) -> String {
    match named.parent {
        Some(p) if arn(named.id).is_none() => format!("{p}/{}", named.id),
        _ => named.id.to_owned(),
    }
}

/// The resource a place stands for, as the facts know it (`None` for the
/// cluster and parameters, which have no facts).
pub(crate) fn resource_of(
    incident: &Incident,
    named: &Named<'_>,
    place: &Place,
) -> Option<ResourceRef> {
    match place {
        Place::Resource => Some(incident.resource.clone()),
        Place::Group => incident.group.clone(),
        Place::Member(id) => Some(ResourceRef {
            kind: match named.kind {
                NamedKind::Target => ResourceKind::Target,
                NamedKind::EcsTask => ResourceKind::EcsTask,
                _ => ResourceKind::Ec2Instance,
            },
            id: id.clone(),
            region: incident.resource.region.clone(),
            account: incident.resource.account.clone(),
        }),
        Place::Cluster | Place::Parameter => None,
    }
}

/// A step's resources as the governor sees them.
#[derive(Debug, Clone)]
pub(crate) struct StepScope<'a> {
    /// Every resource the action names, and where it sits or why it is outside.
    pub named: Vec<(Named<'a>, Result<Place, String>)>,
    /// The resource the step acts on (`None` for notify / escalate / no-op, or
    /// when its target is outside the scope).
    pub target: Option<ResourceRef>,
    /// Every resource whose protections (`SelfHeal=false`, skip-recovery,
    /// allowed-actions) apply: what the step names and the group it acts in.
    pub guarded: Vec<ResourceRef>,
    /// The group the step counts in for the blast radius and in-flight limits.
    pub group: Option<ResourceRef>,
}

impl<'a> StepScope<'a> {
    /// Resolves every resource `action` names for `incident`.
    pub fn of(incident: &Incident, action: &'a Action, facts: &Facts) -> Self {
        let named: Vec<_> = action
            .resources()
            .into_iter()
            .map(|n| {
                let p = place(incident, &n, facts);
                (n, p)
            })
            .collect();
        let mut guarded: Vec<ResourceRef> = named
            .iter()
            .filter_map(|(n, p)| resource_of(incident, n, p.as_ref().ok()?))
            .collect();
        let target = named
            .iter()
            .find(|(n, _)| n.is_target)
            .and_then(|(n, p)| resource_of(incident, n, p.as_ref().ok()?));
        // A group-wide step on a service that is the incident's own resource
        // counts in that service; anything else counts in the incident's group.
        let group = match (&target, incident.group.as_ref()) {
            (_, Some(g)) => Some(g.clone()),
            (Some(t), None) if action.kind().is_group_wide() => Some(t.clone()),
            _ => None,
        };
        if target.is_some() {
            guarded.extend(incident.group.clone());
        }
        guarded.sort_by(|a, b| a.id.cmp(&b.id));
        guarded.dedup_by(|a, b| a.id == b.id);
        StepScope {
            named,
            target,
            guarded,
            group,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::IncidentParts;

    const TASK: &str = "arn:aws:ecs:eu-west-1:111:task/prod/abc";
    const SERVICE: &str = "arn:aws:ecs:eu-west-1:111:service/prod/api";

    fn task_incident() -> Incident {
        Incident::new(IncidentParts {
            kind: crate::incident::IncidentKind::TaskCrashed,
            source: "test".into(),
            resource: ResourceRef::new(ResourceKind::EcsTask, TASK),
            group: Some(ResourceRef::new(ResourceKind::EcsService, SERVICE)),
            reason: "t".into(),
            detail: Default::default(),
            detected_at: super::super::testkit::now(),
            dedupe_key: "k".into(),
        })
    }

    fn at(kind: NamedKind, id: &str, parent: Option<&str>) -> Result<Place, String> {
        let n = Named {
            kind,
            id,
            parent,
            is_target: true,
        };
        place(&task_incident(), &n, &Facts::default())
    }

    #[test]
    fn bare_names_match_only_in_their_cluster_and_arns_only_in_full() {
        use NamedKind as K;
        assert_eq!(at(K::EcsService, "api", Some("prod")), Ok(Place::Group));
        assert_eq!(at(K::EcsService, SERVICE, Some("prod")), Ok(Place::Group));
        assert!(
            at(K::EcsService, "api", Some("staging")).is_err(),
            "prod/api is not staging/api"
        );
        assert!(
            at(
                K::EcsService,
                "arn:aws:ecs:eu-west-1:111:service/staging/api",
                Some("prod")
            )
            .is_err()
        );
        assert!(
            at(
                K::EcsService,
                "arn:aws:ecs:us-east-1:111:service/prod/api",
                None
            )
            .is_err(),
            "another region"
        );
        assert!(
            at(
                K::EcsService,
                "arn:aws:ecs:eu-west-1:222:service/prod/api",
                None
            )
            .is_err(),
            "another account"
        );
        assert_eq!(at(K::EcsCluster, "prod", None), Ok(Place::Cluster));
        assert_eq!(
            at(
                K::EcsCluster,
                "arn:aws:ecs:eu-west-1:111:cluster/prod",
                None
            ),
            Ok(Place::Cluster)
        );
        assert!(at(K::EcsCluster, "staging", None).is_err());
        assert!(
            at(
                K::EcsCluster,
                "arn:aws:ecs:eu-west-1:222:cluster/prod",
                None
            )
            .is_err()
        );
        assert_eq!(at(K::EcsTask, TASK, Some("prod")), Ok(Place::Resource));
        assert_eq!(at(K::EcsTask, "abc", Some("prod")), Ok(Place::Resource));
        assert!(at(K::EcsTask, "abc", Some("staging")).is_err());
        // An ARN of another kind is not this kind.
        assert!(at(K::LambdaFunction, SERVICE, None).is_err());
        assert_eq!(at(K::TaskDefinition, "other:1", None), Ok(Place::Parameter));
    }

    #[test]
    fn idents_of_every_arn_kind() {
        use NamedKind as K;
        let name = |k, s| ident(k, s, None).map(|i| i.name);
        assert_eq!(
            name(
                K::AutoscalingGroup,
                "arn:aws:autoscaling:r:1:autoScalingGroup:uuid:autoScalingGroupName/web"
            ),
            Some("web")
        );
        assert_eq!(
            name(K::LambdaFunction, "arn:aws:lambda:r:1:function:fragile"),
            Some("fragile")
        );
        assert_eq!(
            name(K::Ec2Instance, "arn:aws:ec2:r:1:instance/i-1"),
            Some("i-1")
        );
        assert_eq!(
            name(K::TaskDefinition, "arn:aws:ecs:r:1:task-definition/api:7"),
            Some("api:7")
        );
        assert_eq!(
            ident(K::EcsService, "arn:aws:ecs:r:1:service/api", None).and_then(|i| i.parent),
            Some("default")
        );
        assert_eq!(
            name(
                K::TargetGroup,
                "arn:aws:elasticloadbalancing:r:1:targetgroup/web/1"
            ),
            Some("targetgroup/web/1")
        );
        assert_eq!(name(K::Ec2Instance, "arn:aws:s3:::bucket"), None);
    }
}
