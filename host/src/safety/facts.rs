//! Resource facts the governor needs: the target's tags (opt-in), its group's
//! size and members (blast radius, target guard). They come from the AWS APIs
//! ([`AwsFacts`]) and/or from the operator ([`StaticFacts`], `--facts`); the
//! operator's entries override what AWS says. A fact that cannot be read stays
//! unknown, with the reason in `lookup_errors`, and the rules that need it deny.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::incident::{Incident, ResourceKind, ResourceRef};
use crate::store::ResourceSettings;

/// What the governor knows about the target resource from AWS (or the operator).
/// `None` means "could not be read": rules that need it fail safe and deny.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Facts {
    /// The incident resource's tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// Members of the incident's group.
    pub group_size: Option<u32>,
    /// Known members of the group (ids), for the target guard.
    pub group_members: Vec<String>,
    /// Operator settings for the resource (skip-recovery, cooldown, allowed
    /// actions); the pipeline combines them fail-safe with the store's
    /// matching config records.
    pub resource_config: Option<ResourceSettings>,
    /// The group AWS places the resource in when the incident names none: the
    /// Auto Scaling group of an instance (its `aws:autoscaling:groupName` tag),
    /// so the blast radius counts over it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<ResourceRef>,
    /// Why a fact is unknown (the AWS call that failed and its error).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lookup_errors: Vec<String>,
}

impl Facts {
    /// `" (<errors>)"` when a lookup failed, for a fail-safe denial's reason.
    pub(crate) fn why_unknown(&self) -> String {
        if self.lookup_errors.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.lookup_errors.join("; "))
        }
    }

    /// `other`'s known facts replace this one's.
    fn overlay(&mut self, other: &Facts) {
        if other.tags.is_some() {
            self.tags.clone_from(&other.tags);
        }
        if other.group_size.is_some() {
            self.group_size = other.group_size;
        }
        self.group_members
            .extend(other.group_members.iter().cloned());
        self.resource_config = match (&self.resource_config, &other.resource_config) {
            (Some(a), Some(b)) => Some(a.combine(b)),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        if other.group.is_some() {
            self.group.clone_from(&other.group);
        }
    }
}

/// Where an incident's facts come from.
#[async_trait]
pub trait FactSource: Send + Sync {
    /// The facts of the incident's resource and group. Never fails: what cannot
    /// be read stays unknown, with the reason in `lookup_errors`.
    async fn facts(&self, incident: &Incident) -> Facts;
}

/// Operator-given facts by resource or group id: the group's entry, overlaid
/// with the resource's own.
#[derive(Debug, Clone, Default)]
pub struct StaticFacts(pub BTreeMap<String, Facts>);

impl StaticFacts {
    /// Overlays the entries for the incident's group, then its resource, on `base`.
    fn apply(&self, incident: &Incident, base: &mut Facts) {
        if let Some(g) = incident.group.as_ref().and_then(|g| self.0.get(&g.id)) {
            base.overlay(g);
        }
        if let Some(own) = self.0.get(&incident.resource.id) {
            base.overlay(own);
        }
    }
}

#[async_trait]
impl FactSource for StaticFacts {
    async fn facts(&self, incident: &Incident) -> Facts {
        let mut facts = Facts::default();
        self.apply(incident, &mut facts);
        facts
    }
}

/// AWS facts, with the operator's entries on top.
pub struct Layered {
    /// Read from the AWS APIs, when configured.
    pub aws: Option<AwsFacts>,
    /// The operator's overrides.
    pub operator: StaticFacts,
}

#[async_trait]
impl FactSource for Layered {
    async fn facts(&self, incident: &Incident) -> Facts {
        let mut facts = match &self.aws {
            Some(aws) => aws.facts(incident).await,
            None => Facts::default(),
        };
        self.operator.apply(incident, &mut facts);
        facts
    }
}

/// The SDK clients of one region.
#[derive(Clone)]
struct Clients {
    ec2: aws_sdk_ec2::Client,
    ecs: aws_sdk_ecs::Client,
    autoscaling: aws_sdk_autoscaling::Client,
    elbv2: aws_sdk_elasticloadbalancingv2::Client,
}

impl Clients {
    fn new(shared: &aws_config::SdkConfig, region: Option<&str>) -> Self {
        let region = region.map(|r| aws_config::Region::new(r.to_owned()));
        macro_rules! client {
            ($krate:ident) => {{
                let mut b = $krate::config::Builder::from(shared);
                if let Some(r) = &region {
                    b = b.region(r.clone());
                }
                $krate::Client::from_conf(b.build())
            }};
        }
        Clients {
            ec2: client!(aws_sdk_ec2),
            ecs: client!(aws_sdk_ecs),
            autoscaling: client!(aws_sdk_autoscaling),
            elbv2: client!(aws_sdk_elasticloadbalancingv2),
        }
    }
}

/// What one AWS lookup found about a resource or group.
#[derive(Debug, Clone, Default)]
struct Found {
    tags: Option<BTreeMap<String, String>>,
    size: Option<u32>,
    members: Vec<String>,
}

/// The tag Auto Scaling puts on its instances.
const ASG_TAG: &str = "aws:autoscaling:groupName";

/// The API operations [`AwsFacts`] calls, as IAM actions (the deploy's task role
/// grants exactly these plus the executors' and the store's).
pub const AWS_FACT_ACTIONS: &[&str] = &[
    "autoscaling:DescribeAutoScalingGroups",
    "ec2:DescribeInstances",
    "ecs:DescribeServices",
    "elasticloadbalancing:DescribeTargetHealth",
];

/// Facts read from the AWS APIs: EC2 instance tags (`DescribeInstances`), ECS
/// service tags and desired count (`DescribeServices`), Auto Scaling group tags,
/// desired capacity and instances (`DescribeAutoScalingGroups`) and target group
/// members (`DescribeTargetHealth`). Each lookup has a timeout; successful
/// lookups are cached for a short TTL so a burst of incidents on one group costs
/// one call. A resource in another region is read with that region's clients.
pub struct AwsFacts {
    shared: aws_config::SdkConfig,
    clients: Mutex<HashMap<Option<String>, Clients>>,
    cache: Mutex<HashMap<(ResourceKind, String), (Instant, Found)>>,
    ttl: Duration,
    timeout: Duration,
}

impl AwsFacts {
    /// Facts from the clients `shared` configures (region, endpoint, credentials).
    pub fn new(shared: aws_config::SdkConfig) -> Self {
        AwsFacts {
            shared,
            clients: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
            ttl: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
        }
    }

    /// Facts from the standard AWS environment (`AWS_REGION`,
    /// `AWS_ENDPOINT_URL`, the credentials chain).
    pub async fn from_env() -> Self {
        Self::new(aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await)
    }

    /// How long a successful lookup is reused (default 30 s; zero disables).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Per-call timeout (default 5 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn clients(&self, region: Option<&str>) -> Clients {
        // A region equal to the configured one uses the default clients.
        let key = region
            .filter(|r| self.shared.region().map(|c| c.as_ref()) != Some(*r))
            .map(str::to_owned);
        let mut map = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.clone())
            .or_insert_with(|| Clients::new(&self.shared, key.as_deref()))
            .clone()
    }

    /// Looks one resource or group up (cached), `Ok(None)` when AWS has nothing
    /// to say about this kind.
    async fn lookup(&self, r: &ResourceRef) -> Result<Option<Found>, String> {
        let key = (r.kind, r.id.clone());
        if let Some((at, found)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && at.elapsed() < self.ttl
        {
            return Ok(Some(found.clone()));
        }
        let clients = self.clients(r.region.as_deref());
        let call = async {
            match r.kind {
                ResourceKind::Ec2Instance => instance(&clients, &r.id).await.map(Some),
                ResourceKind::Target if r.id.starts_with("i-") => {
                    instance(&clients, &r.id).await.map(Some)
                }
                ResourceKind::EcsService => service(&clients, &r.id).await.map(Some),
                ResourceKind::AutoscalingGroup => asg(&clients, &r.id).await.map(Some),
                ResourceKind::TargetGroup => target_group(&clients, &r.id).await.map(Some),
                _ => Ok(None),
            }
        };
        let found = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| format!("{} {}: timed out after {:?}", r.kind, r.id, self.timeout))??;
        if let Some(f) = &found
            && !self.ttl.is_zero()
        {
            self.cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, (Instant::now(), f.clone()));
        }
        Ok(found)
    }
}

#[async_trait]
impl FactSource for AwsFacts {
    async fn facts(&self, incident: &Incident) -> Facts {
        let mut facts = Facts::default();
        let (own, mut group) = match &incident.group {
            Some(g) => {
                let (own, group) = tokio::join!(self.lookup(&incident.resource), self.lookup(g));
                (own, Some(group))
            }
            None => (self.lookup(&incident.resource).await, None),
        };
        match own {
            Ok(Some(found)) => facts.tags = found.tags,
            Ok(None) => {}
            Err(e) => facts.lookup_errors.push(e),
        }
        // An instance of an Auto Scaling group belongs to it even when the
        // signal (a status check, a Health event) did not say so.
        if group.is_none()
            && let Some(name) = facts.tags.as_ref().and_then(|t| t.get(ASG_TAG))
        {
            let asg = ResourceRef {
                kind: ResourceKind::AutoscalingGroup,
                id: name.clone(),
                region: incident.resource.region.clone(),
                account: incident.resource.account.clone(),
            };
            group = Some(self.lookup(&asg).await);
            facts.group = Some(asg);
        }
        match group {
            Some(Ok(Some(found))) => {
                facts.group_size = found.size;
                facts.group_members = found.members;
                // A task carries its service's tags (ECS propagates them), so
                // `SelfHeal=false` on a service protects its tasks.
                if facts.tags.is_none() && incident.resource.kind == ResourceKind::EcsTask {
                    facts.tags = found.tags;
                }
            }
            Some(Err(e)) => facts.lookup_errors.push(e),
            Some(Ok(None)) | None => {}
        }
        facts
    }
}

fn sdk_error<E: std::error::Error + 'static>(op: &str, id: &str, e: E) -> String {
    format!("{op} {id}: {}", aws_sdk_ec2::error::DisplayErrorContext(e))
}

fn tag_map<'a>(
    tags: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>,
) -> BTreeMap<String, String> {
    tags.filter_map(|(k, v)| Some((k?.to_owned(), v.unwrap_or_default().to_owned())))
        .collect()
}

async fn instance(c: &Clients, id: &str) -> Result<Found, String> {
    let out = c
        .ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .map_err(|e| sdk_error("ec2:DescribeInstances", id, e))?;
    let instance = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find(|i| i.instance_id() == Some(id))
        .ok_or_else(|| format!("ec2:DescribeInstances {id}: no such instance"))?;
    Ok(Found {
        tags: Some(tag_map(
            instance.tags().iter().map(|t| (t.key(), t.value())),
        )),
        ..Found::default()
    })
}

/// The cluster of a service ARN: `arn:…:service/<cluster>/<name>`, or the
/// default cluster for the old `service/<name>` format.
fn cluster_of(service_arn: &str) -> &str {
    let resource = service_arn.rsplit(':').next().unwrap_or_default();
    let mut parts = resource.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("service"), Some(cluster), Some(_)) => cluster,
        _ => "default",
    }
}

async fn service(c: &Clients, arn: &str) -> Result<Found, String> {
    let out = c
        .ecs
        .describe_services()
        .cluster(cluster_of(arn))
        .services(arn)
        .include(aws_sdk_ecs::types::ServiceField::Tags)
        .send()
        .await
        .map_err(|e| sdk_error("ecs:DescribeServices", arn, e))?;
    let svc = out.services().first().ok_or_else(|| {
        let why = out
            .failures()
            .first()
            .and_then(|f| f.reason())
            .unwrap_or("not found");
        format!("ecs:DescribeServices {arn}: {why}")
    })?;
    Ok(Found {
        tags: Some(tag_map(svc.tags().iter().map(|t| (t.key(), t.value())))),
        size: u32::try_from(svc.desired_count()).ok(),
        members: Vec::new(),
    })
}

async fn asg(c: &Clients, name: &str) -> Result<Found, String> {
    let out = c
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .map_err(|e| sdk_error("autoscaling:DescribeAutoScalingGroups", name, e))?;
    let group = out
        .auto_scaling_groups()
        .iter()
        .find(|g| g.auto_scaling_group_name() == Some(name))
        .ok_or_else(|| format!("autoscaling:DescribeAutoScalingGroups {name}: no such group"))?;
    let members: Vec<String> = group
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .collect();
    let desired = group
        .desired_capacity()
        .and_then(|d| u32::try_from(d).ok())
        .unwrap_or(0);
    Ok(Found {
        tags: Some(tag_map(group.tags().iter().map(|t| (t.key(), t.value())))),
        size: Some(desired.max(u32::try_from(members.len()).unwrap_or(u32::MAX))),
        members,
    })
}

async fn target_group(c: &Clients, arn: &str) -> Result<Found, String> {
    let out = c
        .elbv2
        .describe_target_health()
        .target_group_arn(arn)
        .send()
        .await
        .map_err(|e| sdk_error("elasticloadbalancing:DescribeTargetHealth", arn, e))?;
    let members: Vec<String> = out
        .target_health_descriptions()
        .iter()
        .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_owned))
        .collect();
    Ok(Found {
        tags: None,
        size: u32::try_from(members.len()).ok(),
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_from_service_arn() {
        assert_eq!(
            cluster_of("arn:aws:ecs:eu-west-1:1:service/prod/api"),
            "prod"
        );
        assert_eq!(cluster_of("arn:aws:ecs:eu-west-1:1:service/api"), "default");
        assert_eq!(cluster_of("garbage"), "default");
    }

    #[test]
    fn operator_entries_override_and_group_comes_first() {
        let mut incident = super::super::testkit::instance_incident("i-1");
        incident.group = Some(ResourceRef::new(ResourceKind::EcsService, "svc"));
        let mut map = BTreeMap::new();
        map.insert(
            "svc".to_owned(),
            Facts {
                group_size: Some(6),
                tags: Some(BTreeMap::from([("team".into(), "a".into())])),
                ..Facts::default()
            },
        );
        map.insert(
            incident.resource.id.clone(),
            Facts {
                tags: Some(BTreeMap::from([("SelfHeal".into(), "true".into())])),
                ..Facts::default()
            },
        );
        let mut base = Facts {
            group_size: Some(2),
            lookup_errors: vec!["x".into()],
            ..Facts::default()
        };
        StaticFacts(map).apply(&incident, &mut base);
        assert_eq!(base.group_size, Some(6));
        assert_eq!(
            base.tags,
            Some(BTreeMap::from([("SelfHeal".into(), "true".into())]))
        );
        assert_eq!(base.why_unknown(), " (x)");
    }
}
