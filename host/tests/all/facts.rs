//! The governor's resource facts read from the AWS APIs, on moto through the
//! real SDK clients: EC2 tags, ECS service and Auto Scaling group size, target
//! group members; a failed lookup is unknown, with its reason, and fails safe.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aws_sdk_autoscaling as asg;
use aws_sdk_ec2 as ec2;
use aws_sdk_ecs as ecs;
use aws_sdk_elasticloadbalancingv2 as elbv2;
use chrono::{TimeZone, Utc};
use healer::decision::{Action, ActionKind, Decision, Step};
use healer::incident::{Incident, IncidentKind, IncidentParts, ResourceKind, ResourceRef};
use healer::safety::{AwsFacts, FactSource, Facts, Governor, History, Rule, Verdict, gather};
use healer_test_artifacts as artifacts;

fn incident(resource: ResourceRef, group: Option<ResourceRef>) -> Incident {
    Incident::new(IncidentParts {
        kind: IncidentKind::InstanceImpaired,
        source: "test".into(),
        dedupe_key: format!("{}#facts", resource.id),
        resource,
        group,
        reason: "test".into(),
        detail: BTreeMap::new(),
        detected_at: Utc.timestamp_opt(1_714_557_600, 0).single().expect("valid"),
    })
}

fn tag(k: &str, v: &str) -> ec2::types::Tag {
    ec2::types::Tag::builder().key(k).value(v).build()
}

/// Launches one instance with these tags; returns its id.
async fn launch(client: &ec2::Client, image: &str, tags: &[(&str, &str)]) -> String {
    let mut req = client
        .run_instances()
        .image_id(image)
        .instance_type(ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1);
    if !tags.is_empty() {
        let mut spec = ec2::types::TagSpecification::builder()
            .resource_type(ec2::types::ResourceType::Instance);
        for (k, v) in tags {
            spec = spec.tags(tag(k, v));
        }
        req = req.tag_specifications(spec.build());
    }
    let out = req.send().await.expect("run_instances");
    out.instances()[0]
        .instance_id()
        .expect("instance id")
        .to_owned()
}

/// What moto holds for the test: instances, a service, an ASG, a target group.
struct World {
    tagged: String,
    untagged: String,
    service_arn: String,
    target_group_arn: String,
    asg_member: String,
}

async fn world(shared: &aws_config::SdkConfig) -> World {
    let ec2c = ec2::Client::new(shared);
    let images = ec2c
        .describe_images()
        .send()
        .await
        .expect("describe_images");
    let image = images.images()[0].image_id().expect("image id").to_owned();
    let tagged = launch(&ec2c, &image, &[("SelfHeal", "true"), ("team", "web")]).await;
    let untagged = launch(&ec2c, &image, &[]).await;

    let ecsc = ecs::Client::new(shared);
    ecsc.create_cluster()
        .cluster_name("prod")
        .send()
        .await
        .expect("create_cluster");
    ecsc.register_task_definition()
        .family("api")
        .container_definitions(
            ecs::types::ContainerDefinition::builder()
                .name("api")
                .image("nginx")
                .memory(128)
                .build(),
        )
        .send()
        .await
        .expect("register_task_definition");
    let svc = ecsc
        .create_service()
        .cluster("prod")
        .service_name("api")
        .task_definition("api")
        .desired_count(6)
        .tags(
            ecs::types::Tag::builder()
                .key("SelfHeal")
                .value("false")
                .build(),
        )
        .send()
        .await
        .expect("create_service");
    let service_arn = svc
        .service()
        .and_then(|s| s.service_arn())
        .expect("service arn")
        .to_owned();

    let asgc = asg::Client::new(shared);
    asgc.create_launch_configuration()
        .launch_configuration_name("web")
        .image_id(&image)
        .instance_type("t3.micro")
        .send()
        .await
        .expect("create_launch_configuration");
    asgc.create_auto_scaling_group()
        .auto_scaling_group_name("web")
        .launch_configuration_name("web")
        .min_size(3)
        .max_size(3)
        .desired_capacity(3)
        .availability_zones("us-east-1a")
        .tags(
            asg::types::Tag::builder()
                .key("SelfHeal")
                .value("true")
                .resource_id("web")
                .resource_type("auto-scaling-group")
                .propagate_at_launch(true)
                .build(),
        )
        .send()
        .await
        .expect("create_auto_scaling_group");

    let vpcs = ec2c.describe_vpcs().send().await.expect("describe_vpcs");
    let vpc = vpcs.vpcs()[0].vpc_id().expect("vpc id").to_owned();
    let elb = elbv2::Client::new(shared);
    let tg = elb
        .create_target_group()
        .name("web")
        .protocol(elbv2::types::ProtocolEnum::Http)
        .port(80)
        .vpc_id(vpc)
        .send()
        .await
        .expect("create_target_group");
    let target_group_arn = tg.target_groups()[0]
        .target_group_arn()
        .expect("tg arn")
        .to_owned();
    elb.register_targets()
        .target_group_arn(&target_group_arn)
        .targets(
            elbv2::types::TargetDescription::builder()
                .id(&tagged)
                .build(),
        )
        .targets(
            elbv2::types::TargetDescription::builder()
                .id(&untagged)
                .build(),
        )
        .send()
        .await
        .expect("register_targets");
    let asg_member = asgc
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("web")
        .send()
        .await
        .expect("describe asg")
        .auto_scaling_groups()[0]
        .instances()[0]
        .instance_id()
        .expect("member id")
        .to_owned();
    World {
        tagged,
        untagged,
        service_arn,
        target_group_arn,
        asg_member,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_are_read_from_the_aws_apis() {
    let Some(moto) = crate::moto::start("facts_are_read_from_the_aws_apis") else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let w = world(&shared).await;
    let facts = AwsFacts::new(shared.clone());
    let ec2_ref = |id: &str| ResourceRef::new(ResourceKind::Ec2Instance, id);

    // EC2 tags: the opt-in tag, an untagged instance, a missing one.
    let f = facts.resource(&ec2_ref(&w.tagged)).await;
    let tags = f.tags.expect("tags read");
    assert_eq!(tags.get("SelfHeal").map(String::as_str), Some("true"));
    assert_eq!(tags.get("team").map(String::as_str), Some("web"));
    let f = facts.resource(&ec2_ref(&w.untagged)).await;
    assert_eq!(f.tags, Some(BTreeMap::new()), "known and empty");
    let f = facts.resource(&ec2_ref("i-0123456789abcdef0")).await;
    assert_eq!(f.tags, None, "unknown");
    assert!(
        f.lookup_errors[0].contains("ec2:DescribeInstances i-0123456789abcdef0"),
        "{:?}",
        f.lookup_errors
    );

    // An ECS service: desired count, tags and the task definition it runs.
    let service = ResourceRef::new(ResourceKind::EcsService, w.service_arn.clone());
    let f = facts.resource(&service).await;
    assert_eq!(f.group_size, Some(6), "{f:?}");
    let running = f.service.as_ref().expect("service facts");
    assert_eq!(running.desired_count, 6);
    assert!(
        running.task_definition.ends_with("task-definition/api:1"),
        "{running:?}"
    );
    assert_eq!(
        f.tags
            .as_ref()
            .and_then(|t| t.get("SelfHeal"))
            .map(String::as_str),
        Some("false")
    );
    // Its tasks are protected by the service's `SelfHeal=false`.
    let task = ResourceRef::new(
        ResourceKind::EcsTask,
        "arn:aws:ecs:us-east-1:123456789012:task/prod/0123456789abcdef0123456789abcdef",
    );
    let inc = incident(task.clone(), Some(service.clone()));
    let mut known = Facts::default();
    gather(&facts, &[task.clone(), service], &mut known).await;
    let restart = Decision {
        steps: vec![Step {
            action: Action::RestartTask {
                cluster: "prod".into(),
                task: task.id.clone(),
            },
            reason: "t".into(),
        }],
        verify: None,
        summary: "t".into(),
    };
    let j = Governor::default().judge(
        &inc,
        &restart,
        &[ActionKind::RestartTask],
        &known,
        &History::default(),
        inc.detected_at,
    );
    assert!(
        matches!(&j.verdicts[0].verdict, Verdict::Denied { rule: Rule::OptIn, reason, .. } if reason.contains("SelfHeal=false")),
        "{j:?}"
    );

    // An Auto Scaling group: desired capacity and members.
    let f = facts
        .resource(&ResourceRef::new(ResourceKind::AutoscalingGroup, "web"))
        .await;
    assert_eq!(f.group_size, Some(3), "{f:?}");
    assert_eq!(f.group_members.len(), 3);

    // An ASG instance: its aws:autoscaling:groupName tag puts it in its group
    // (a status check signal names none).
    let f = facts.resource(&ec2_ref(&w.asg_member)).await;
    assert_eq!(
        f.group,
        Some(ResourceRef::new(ResourceKind::AutoscalingGroup, "web")),
        "{f:?}"
    );
    assert_eq!(
        facts.resource(&ec2_ref(&w.tagged)).await.group,
        None,
        "a standalone instance has no group"
    );

    // A target group: its registered members; a target instance: its own tags.
    let tg = ResourceRef::new(ResourceKind::TargetGroup, w.target_group_arn.clone());
    let f = facts.resource(&tg).await;
    assert_eq!(f.group_size, Some(2), "{f:?}");
    assert!(f.group_members.contains(&w.tagged));
    let target = ResourceRef::new(ResourceKind::Target, w.untagged.clone());
    assert_eq!(facts.resource(&target).await.tags, Some(BTreeMap::new()));

    // A missing service: unknown size, with the reason.
    let ghost = ResourceRef::new(
        ResourceKind::EcsService,
        "arn:aws:ecs:us-east-1:123456789012:service/prod/ghost",
    );
    let f = facts.resource(&ghost).await;
    assert_eq!(f.group_size, None);
    assert!(
        f.lookup_errors
            .iter()
            .any(|e| e.contains("ecs:DescribeServices")),
        "{:?}",
        f.lookup_errors
    );

    // Cached: a lookup within the TTL does not call AWS again.
    drop(moto);
    let f = facts.resource(&ec2_ref(&w.tagged)).await;
    assert!(f.tags.is_some(), "served from the cache");
    let uncached = AwsFacts::new(shared)
        .with_ttl(Duration::ZERO)
        .with_timeout(Duration::from_secs(2));
    let f = uncached.resource(&ec2_ref(&w.tagged)).await;
    assert_eq!(f.tags, None, "AWS unreachable: unknown");
    assert!(!f.lookup_errors.is_empty());
}

/// `healer plan --aws-facts`: the opt-in tag is read from EC2, so the tagged
/// instance's replacement is approved and the untagged one's is not (the policy
/// itself sees no opt-in tag and only notifies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_reads_the_opt_in_tag_from_ec2() {
    let Some(moto) = crate::moto::start("plan_reads_the_opt_in_tag_from_ec2") else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let w = world(&shared).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    std::fs::copy(artifacts::EC2_REPLACE, policies.join("ec2.wasm")).expect("copy");
    let fixture =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "../tests/fixtures/aws-events/health/ec2-instance-store-drive-degraded-issue.json",
        ))
        .expect("fixture");
    let endpoint = moto.endpoint.clone();
    let data = dir.path().join("data");
    let plan = move |instance: &str| {
        let event = dir.path().join(format!("{instance}.json"));
        std::fs::write(
            &event,
            fixture
                .replace("i-abcd1111", instance)
                .replace("us-west-2", "us-east-1"),
        )
        .expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_healer"))
            .args(["plan", "--no-cache", "--aws-facts", "--policies"])
            .arg(&policies)
            .arg(&event)
            .env("HEALER_DATA_DIR", &data)
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON")
    };
    let (tagged, untagged, member) = (w.tagged.clone(), w.untagged.clone(), w.asg_member.clone());
    let (tagged, untagged, member) =
        tokio::task::spawn_blocking(move || (plan(&tagged), plan(&untagged), plan(&member)))
            .await
            .expect("plans");
    // The instance's Auto Scaling group is discovered: the policy sees it (and
    // lets the group replace the instance), the blast radius counts over its 3
    // members.
    let step = &member["plan"]["decisions"]["active"][0]["decision"]["steps"][0];
    assert_eq!(step["action"], "set-instance-unhealthy", "{member}");
    assert_eq!(step["group"], "web", "{member}");
    assert_eq!(member["plan"]["facts"]["web"]["group-size"], 3, "{member}");
    assert_eq!(
        member["plan"]["judgement"]["verdicts"][0]["verdict"], "approved",
        "{member}"
    );
    let verdicts = &tagged["plan"]["judgement"]["verdicts"];
    assert_eq!(verdicts[0]["action"], "replace-instance", "{tagged}");
    assert_eq!(verdicts[0]["verdict"], "approved", "{tagged}");
    assert_eq!(
        tagged["plan"]["facts"][w.tagged.as_str()]["tags"]["SelfHeal"],
        "true",
        "{tagged}"
    );
    let steps = &untagged["plan"]["judgement"]["verdicts"];
    assert!(
        steps
            .as_array()
            .expect("verdicts")
            .iter()
            .all(|v| v["action"] != "replace-instance"),
        "{untagged}"
    );
}
