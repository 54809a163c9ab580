//! Resource facts the governor judges with, one resource at a time: tags
//! (opt-in), operator settings (skip-recovery, allowed actions, cooldown), a
//! group's size and members (blast radius, target guard), a service's task
//! definition and desired count (parameters).
//!
//! They come from the AWS APIs ([`super::AwsFacts`]) and/or the operator
//! ([`StaticFacts`], `--facts`), always about the one resource they are keyed
//! by: an entry for a group says nothing about its members' own tags. The
//! operator's entry for a resource overrides what AWS says about it. A fact that
//! cannot be read stays unknown, with the reason in `lookup_errors`, and the
//! rules that need it deny. This module does no AWS calls itself.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::incident::ResourceRef;
use crate::store::ResourceSettings;

/// An ECS service's deployment, for the parameter rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServiceFacts {
    /// The task definition the service runs (ARN or `family:revision`).
    pub task_definition: String,
    /// Its desired count.
    pub desired_count: u32,
}

/// What the governor knows about one resource. `None` means "could not be
/// read": rules that need it fail safe and deny.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ResourceFacts {
    /// The resource's own tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// As a group (service, Auto Scaling group, target group): its size.
    pub group_size: Option<u32>,
    /// As a group: its known members (ids), for the target guard.
    pub group_members: Vec<String>,
    /// Operator settings (skip-recovery, cooldown, allowed actions); the
    /// pipeline combines them fail-safe with the store's matching records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_config: Option<ResourceSettings>,
    /// The group AWS places the resource in: the Auto Scaling group of an
    /// instance (its `aws:autoscaling:groupName` tag), so an incident that names
    /// no group is counted over it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<ResourceRef>,
    /// As an ECS service: what it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceFacts>,
    /// Why a fact is unknown (the AWS call that failed and its error).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lookup_errors: Vec<String>,
}

/// Nothing known.
static UNKNOWN: ResourceFacts = ResourceFacts {
    tags: None,
    group_size: None,
    group_members: Vec::new(),
    resource_config: None,
    group: None,
    service: None,
    lookup_errors: Vec::new(),
};

impl ResourceFacts {
    /// `" (<errors>)"` when a lookup failed, for a fail-safe denial's reason.
    pub(crate) fn why_unknown(&self) -> String {
        if self.lookup_errors.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.lookup_errors.join("; "))
        }
    }

    /// `other`'s known facts replace this one's; settings combine fail-safe.
    fn overlay(&mut self, other: &ResourceFacts) {
        if other.tags.is_some() {
            self.tags.clone_from(&other.tags);
        }
        if other.group_size.is_some() {
            self.group_size = other.group_size;
        }
        for m in &other.group_members {
            if !self.group_members.contains(m) {
                self.group_members.push(m.clone());
            }
        }
        self.resource_config = match (&self.resource_config, &other.resource_config) {
            (Some(a), Some(b)) => Some(a.combine(b)),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        if other.group.is_some() {
            self.group.clone_from(&other.group);
        }
        if other.service.is_some() {
            self.service.clone_from(&other.service);
        }
    }
}

/// What the governor knows about every resource one decision names, by id
/// (the incident's own spelling for its resource and group).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Facts(pub BTreeMap<String, ResourceFacts>);

impl Facts {
    /// The facts of one resource (all unknown when it was not read).
    pub fn of(&self, id: &str) -> &ResourceFacts {
        self.0.get(id).unwrap_or(&UNKNOWN)
    }

    /// Whether the resource was read.
    pub fn contains(&self, id: &str) -> bool {
        self.0.contains_key(id)
    }

    /// Records what was read about one resource.
    pub fn insert(&mut self, id: impl Into<String>, facts: ResourceFacts) {
        self.0.insert(id.into(), facts);
    }

    /// The facts of one resource, to complete them.
    pub fn entry(&mut self, id: &str) -> &mut ResourceFacts {
        self.0.entry(id.to_owned()).or_default()
    }
}

/// Where resource facts come from.
#[async_trait]
pub trait FactSource: Send + Sync {
    /// What is known about one resource. Never fails: what cannot be read
    /// stays unknown, with the reason in `lookup_errors`.
    async fn resource(&self, r: &ResourceRef) -> ResourceFacts;
}

/// Reads every resource of `refs` that `facts` does not hold yet, each
/// distinct id once, concurrently.
pub async fn gather(source: &dyn FactSource, refs: &[ResourceRef], facts: &mut Facts) {
    let mut todo: Vec<&ResourceRef> = refs.iter().filter(|r| !facts.contains(&r.id)).collect();
    todo.sort_by(|a, b| a.id.cmp(&b.id));
    todo.dedup_by(|a, b| a.id == b.id);
    let found = join_all(todo.iter().map(|r| source.resource(r)).collect()).await;
    for (r, f) in todo.into_iter().zip(found) {
        facts.insert(r.id.clone(), f);
    }
}

/// Polls every future on the current task until all are done; outputs in order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futures.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// Operator-given facts, by resource or group id; each entry is about that
/// resource only.
#[derive(Debug, Clone, Default)]
pub struct StaticFacts(pub BTreeMap<String, ResourceFacts>);

impl StaticFacts {
    /// The operator's entry for `id`, if any, on top of `base`.
    pub fn over(&self, id: &str, mut base: ResourceFacts) -> ResourceFacts {
        if let Some(own) = self.0.get(id) {
            base.overlay(own);
        }
        base
    }
}

#[async_trait]
impl FactSource for StaticFacts {
    async fn resource(&self, r: &ResourceRef) -> ResourceFacts {
        self.0.get(&r.id).cloned().unwrap_or_default()
    }
}

/// AWS facts, with the operator's entry for the same resource on top.
pub struct Layered {
    /// Read from the AWS APIs, when configured.
    pub aws: Option<super::AwsFacts>,
    /// The operator's overrides.
    pub operator: StaticFacts,
}

#[async_trait]
impl FactSource for Layered {
    async fn resource(&self, r: &ResourceRef) -> ResourceFacts {
        let aws = match &self.aws {
            Some(aws) => aws.resource(r).await,
            None => ResourceFacts::default(),
        };
        self.operator.over(&r.id, aws)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::ResourceKind;

    fn tags(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    /// An AWS stand-in for the overlay test: says `SelfHeal=false` of `i-1`.
    struct Aws;

    #[async_trait]
    impl FactSource for Aws {
        async fn resource(&self, r: &ResourceRef) -> ResourceFacts {
            ResourceFacts {
                tags: (r.id == "i-1")
                    .then(|| tags(&[("SelfHeal", "false")]))
                    .flatten(),
                lookup_errors: vec!["x".into()],
                ..ResourceFacts::default()
            }
        }
    }

    /// What the operator's entries make of what [`Aws`] says about `r`.
    async fn layered(operator: BTreeMap<String, ResourceFacts>, r: &ResourceRef) -> ResourceFacts {
        StaticFacts(operator).over(&r.id, Aws.resource(r).await)
    }

    #[tokio::test]
    async fn operator_facts_for_a_group_do_not_replace_its_members_tags() {
        // Issue 11, item 4: the group's `SelfHeal=true` is the group's, not i-1's.
        let operator = BTreeMap::from([(
            "web".to_owned(),
            ResourceFacts {
                tags: tags(&[("SelfHeal", "true")]),
                group_size: Some(6),
                ..ResourceFacts::default()
            },
        )]);
        let i1 = ResourceRef::new(ResourceKind::Ec2Instance, "i-1");
        let f = layered(operator.clone(), &i1).await;
        assert_eq!(f.tags, tags(&[("SelfHeal", "false")]));
        assert_eq!(f.group_size, None);
        assert_eq!(f.why_unknown(), " (x)");
        let web = ResourceRef::new(ResourceKind::AutoscalingGroup, "web");
        assert_eq!(layered(operator, &web).await.group_size, Some(6));
    }

    #[tokio::test]
    async fn operator_entries_override_their_own_resource() {
        let operator = BTreeMap::from([(
            "i-1".to_owned(),
            ResourceFacts {
                tags: tags(&[("SelfHeal", "true")]),
                resource_config: Some(ResourceSettings {
                    skip_recovery: true,
                    ..ResourceSettings::default()
                }),
                ..ResourceFacts::default()
            },
        )]);
        let f = layered(
            operator,
            &ResourceRef::new(ResourceKind::Ec2Instance, "i-1"),
        )
        .await;
        assert_eq!(f.tags, tags(&[("SelfHeal", "true")]));
        assert!(f.resource_config.is_some_and(|c| c.skip_recovery));
    }

    #[tokio::test]
    async fn gather_reads_each_distinct_resource_once() {
        let refs = [
            ResourceRef::new(ResourceKind::Ec2Instance, "i-1"),
            ResourceRef::new(ResourceKind::Target, "i-1"),
            ResourceRef::new(ResourceKind::Ec2Instance, "i-2"),
        ];
        let mut facts = Facts::default();
        facts.insert("i-2", ResourceFacts::default());
        gather(&Aws, &refs, &mut facts).await;
        assert_eq!(facts.0.len(), 2);
        assert!(facts.of("i-1").tags.is_some());
        assert!(
            facts.of("i-2").tags.is_none(),
            "already held: not read again"
        );
        assert!(facts.of("i-9").tags.is_none());
    }
}
