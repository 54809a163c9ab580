//! Resource facts read from the AWS APIs, one resource per lookup: EC2 instance
//! tags (and the Auto Scaling group an instance's tag places it in), ECS
//! service tags, desired count and task definition, Auto Scaling group tags,
//! desired capacity and instances, target group members. Each call has a
//! timeout; answers are cached briefly. A failed call is an unknown fact with
//! its reason, never an error.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::incident::{ResourceKind, ResourceRef};

use super::facts::{FactSource, ResourceFacts, ServiceFacts};

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
/// service tags, desired count and task definition (`DescribeServices`), Auto Scaling group tags,
/// desired capacity and instances (`DescribeAutoScalingGroups`) and target group
/// members (`DescribeTargetHealth`). Each lookup has a timeout; successful
/// lookups are cached for a short TTL so a burst of incidents on one group costs
/// one call. A resource in another region is read with that region's clients.
pub struct AwsFacts {
    shared: aws_config::SdkConfig,
    clients: Mutex<HashMap<Option<String>, Clients>>,
    cache: Mutex<HashMap<(ResourceKind, String), (Instant, ResourceFacts)>>,
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
    async fn lookup(&self, r: &ResourceRef) -> Result<Option<ResourceFacts>, String> {
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
                ResourceKind::Ec2Instance => instance(&clients, r).await.map(Some),
                ResourceKind::Target if r.id.starts_with("i-") => {
                    instance(&clients, r).await.map(Some)
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
    async fn resource(&self, r: &ResourceRef) -> ResourceFacts {
        match self.lookup(r).await {
            Ok(found) => found.unwrap_or_default(),
            Err(e) => ResourceFacts {
                lookup_errors: vec![e],
                ..ResourceFacts::default()
            },
        }
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

async fn instance(c: &Clients, r: &ResourceRef) -> Result<ResourceFacts, String> {
    let id = r.id.as_str();
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
    let tags = tag_map(instance.tags().iter().map(|t| (t.key(), t.value())));
    // An instance of an Auto Scaling group belongs to it even when the signal
    // (a status check, a Health event) did not say so.
    let group = tags.get(ASG_TAG).map(|name| ResourceRef {
        kind: ResourceKind::AutoscalingGroup,
        id: name.clone(),
        region: r.region.clone(),
        account: r.account.clone(),
    });
    Ok(ResourceFacts {
        tags: Some(tags),
        group,
        ..ResourceFacts::default()
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

async fn service(c: &Clients, arn: &str) -> Result<ResourceFacts, String> {
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
    let desired = u32::try_from(svc.desired_count()).ok();
    Ok(ResourceFacts {
        tags: Some(tag_map(svc.tags().iter().map(|t| (t.key(), t.value())))),
        group_size: desired,
        service: svc
            .task_definition()
            .zip(desired)
            .map(|(td, desired_count)| ServiceFacts {
                task_definition: td.to_owned(),
                desired_count,
            }),
        ..ResourceFacts::default()
    })
}

async fn asg(c: &Clients, name: &str) -> Result<ResourceFacts, String> {
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
    Ok(ResourceFacts {
        tags: Some(tag_map(group.tags().iter().map(|t| (t.key(), t.value())))),
        group_size: Some(desired.max(u32::try_from(members.len()).unwrap_or(u32::MAX))),
        group_members: members,
        ..ResourceFacts::default()
    })
}

async fn target_group(c: &Clients, arn: &str) -> Result<ResourceFacts, String> {
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
    Ok(ResourceFacts {
        group_size: u32::try_from(members.len()).ok(),
        group_members: members,
        ..ResourceFacts::default()
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
}
