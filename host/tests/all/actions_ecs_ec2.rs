//! The executors of issue 12 on moto through the real SDK clients: each
//! semantic changes real (emulated) state, checked with the SDK, and moto's
//! request recorder audits the exact calls where "exactly one" matters.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use aws_sdk_autoscaling as asg;
use aws_sdk_ec2 as ec2;
use aws_sdk_ecs as ecs;
use aws_sdk_elasticloadbalancingv2 as elbv2;
use healer::actions::{
    AutoscalingExecutor, Ec2Executor, EcsExecutor, Elbv2Executor, ExecOutcome, Executor,
    StepRequest,
};
use healer::decision::Action;
use healer::incident::Incident;

pub(crate) fn incident(resource: &str) -> Incident {
    Incident::from_json(
        format!(
            r#"{{"kind":"instance-impaired","resource":{{"kind":"ec2-instance","id":"{resource}"}},"detected-at":"2024-05-01T10:00:00Z"}}"#
        )
        .as_bytes(),
    )
    .expect("incident")
}

/// One request to moto's own API (`/moto-api/...`); returns the body.
pub(crate) fn moto_api(endpoint: &str, method: &str, path: &str, body: &str) -> String {
    let addr = endpoint.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect to moto");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out.split(' ').nth(1).unwrap_or_default();
    assert!(status.starts_with('2'), "{out}");
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// moto's recorder writes one file, `moto_recording` in its working
/// directory (the test's), whichever server records: one recording at a time.
static RECORDER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts moto's request recorder afresh; recording lasts while the guard lives.
pub(crate) async fn start_recording(endpoint: &str) -> tokio::sync::MutexGuard<'static, ()> {
    let guard = RECORDER.lock().await;
    moto_api(endpoint, "POST", "/moto-api/recorder/reset-recording", "");
    moto_api(endpoint, "POST", "/moto-api/recorder/start-recording", "");
    guard
}

/// Stops the recorder; returns the operation of every request recorded, in
/// order (the form's `Action=`, or the JSON protocols' `X-Amz-Target`).
pub(crate) fn recorded_operations(endpoint: &str) -> Vec<String> {
    moto_api(endpoint, "POST", "/moto-api/recorder/stop-recording", "");
    let recording = moto_api(endpoint, "GET", "/moto-api/recorder/download-recording", "");
    let _ = std::fs::remove_file("moto_recording");
    recording
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("recorded request");
            if let Some(target) = v["headers"]["X-Amz-Target"].as_str() {
                return target.rsplit('.').next().unwrap_or(target).to_owned();
            }
            let body = v["body"].as_str().unwrap_or_default();
            let body = if v["body_encoded"].as_bool() == Some(true) {
                String::from_utf8_lossy(&crate::support::base64(body)).into_owned()
            } else {
                body.to_owned()
            };
            body.split('&')
                .find_map(|kv| kv.strip_prefix("Action="))
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

pub(crate) fn count(ops: &[String], op: &str) -> usize {
    ops.iter().filter(|o| *o == op).count()
}

pub(crate) fn tag(k: &str, v: &str) -> ec2::types::Tag {
    ec2::types::Tag::builder().key(k).value(v).build()
}

/// An original worth replacing: AMI, type, subnet, security group, key pair,
/// user data, tags, and an Elastic IP on it.
pub(crate) struct Original {
    pub(crate) id: String,
    pub(crate) image: String,
    pub(crate) subnet: String,
    pub(crate) group: String,
    pub(crate) allocation: String,
}

pub(crate) async fn original(c: &ec2::Client) -> Original {
    let images = c.describe_images().send().await.expect("describe_images");
    let image = images.images()[0].image_id().expect("image").to_owned();
    let vpc = c
        .create_vpc()
        .cidr_block("10.9.0.0/16")
        .send()
        .await
        .expect("create_vpc");
    let vpc = vpc.vpc().and_then(|v| v.vpc_id()).expect("vpc").to_owned();
    let subnet = c
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.9.1.0/24")
        .send()
        .await
        .expect("create_subnet");
    let subnet = subnet
        .subnet()
        .and_then(|s| s.subnet_id())
        .expect("subnet")
        .to_owned();
    let group = c
        .create_security_group()
        .group_name("web")
        .description("web")
        .vpc_id(&vpc)
        .send()
        .await
        .expect("create_security_group")
        .group_id()
        .expect("group")
        .to_owned();
    c.create_key_pair()
        .key_name("ops")
        .send()
        .await
        .expect("create_key_pair");
    let out = c
        .run_instances()
        .image_id(&image)
        .instance_type(ec2::types::InstanceType::T3Micro)
        .subnet_id(&subnet)
        .security_group_ids(&group)
        .key_name("ops")
        .user_data("aGVsbG8=")
        .min_count(1)
        .max_count(1)
        .tag_specifications(
            ec2::types::TagSpecification::builder()
                .resource_type(ec2::types::ResourceType::Instance)
                .tags(tag("SelfHeal", "true"))
                .tags(tag("team", "web"))
                .build(),
        )
        .send()
        .await
        .expect("run_instances");
    let id = out.instances()[0].instance_id().expect("id").to_owned();
    let allocation = c
        .allocate_address()
        .domain(ec2::types::DomainType::Vpc)
        .send()
        .await
        .expect("allocate_address")
        .allocation_id()
        .expect("allocation")
        .to_owned();
    c.associate_address()
        .allocation_id(&allocation)
        .instance_id(&id)
        .send()
        .await
        .expect("associate_address");
    Original {
        id,
        image,
        subnet,
        group,
        allocation,
    }
}

pub(crate) async fn instance(c: &ec2::Client, id: &str) -> ec2::types::Instance {
    c.describe_instances()
        .instance_ids(id)
        .send()
        .await
        .expect("describe_instances")
        .reservations()[0]
        .instances()[0]
        .clone()
}

pub(crate) fn state(i: &ec2::types::Instance) -> &str {
    i.state().and_then(|s| s.name()).map_or("", |n| n.as_str())
}

fn tag_of<'a>(i: &'a ec2::types::Instance, key: &str) -> Option<&'a str> {
    i.tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// Instances (any state) tagged with this incident.
async fn twins(c: &ec2::Client, incident: &Incident) -> Vec<String> {
    c.describe_instances()
        .filters(
            ec2::types::Filter::builder()
                .name("tag:HealerIncident")
                .values(incident.id.as_str())
                .build(),
        )
        .send()
        .await
        .expect("describe_instances")
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .collect()
}

pub(crate) fn executor(shared: &aws_config::SdkConfig) -> Ec2Executor {
    Ec2Executor::new(shared)
        .with_launch_deadline(Duration::from_secs(10))
        .with_poll_interval(Duration::from_millis(100))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_instance_launches_a_running_twin_moves_the_eip_and_terminates_the_original() {
    let Some(moto) = crate::moto::start(
        "replace_instance_launches_a_running_twin_moves_the_eip_and_terminates_the_original",
    ) else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let c = ec2::Client::new(&shared);
    let o = original(&c).await;
    let inc = incident(&o.id);
    let action = Action::ReplaceInstance {
        instance_id: o.id.clone(),
        move_elastic_ip: true,
    };
    let req = StepRequest {
        incident: &inc,
        step: 1,
        action: &action,
    };
    let e = executor(&shared).execute(&req).await;
    assert_eq!(e.outcome, ExecOutcome::Succeeded, "{e:?}");
    assert_eq!(e.created.len(), 1, "{e:?}");
    let twin_id = &e.created[0];
    let note = e.note.as_deref().unwrap_or_default();
    assert!(
        note.starts_with(&format!("{} → {twin_id}, Elastic IP ", o.id)),
        "{note}"
    );
    assert!(!e.request_ids.is_empty());

    let twin = instance(&c, twin_id).await;
    assert_eq!(state(&twin), "running");
    assert_eq!(twin.image_id(), Some(o.image.as_str()));
    assert_eq!(twin.instance_type().map(|t| t.as_str()), Some("t3.micro"));
    assert_eq!(twin.subnet_id(), Some(o.subnet.as_str()));
    assert_eq!(twin.key_name(), Some("ops"));
    let groups: Vec<_> = twin
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id())
        .collect();
    assert_eq!(groups, [o.group.as_str()]);
    assert_eq!(tag_of(&twin, "SelfHeal"), Some("true"));
    assert_eq!(tag_of(&twin, "team"), Some("web"));
    assert_eq!(tag_of(&twin, "SelfHealed"), Some("true"));
    assert_eq!(tag_of(&twin, "ReplacedInstance"), Some(o.id.as_str()));
    assert_eq!(tag_of(&twin, "HealerIncident"), Some(inc.id.as_str()));
    assert_eq!(tag_of(&twin, "HealerStep"), Some("1"));
    let healed_at = tag_of(&twin, "HealedAt").expect("HealedAt");
    assert!(
        chrono::DateTime::parse_from_rfc3339(healed_at).is_ok(),
        "{healed_at}"
    );
    let user_data = c
        .describe_instance_attribute()
        .instance_id(twin_id)
        .attribute(ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .expect("describe_instance_attribute");
    assert_eq!(
        user_data.user_data().and_then(|v| v.value()),
        Some("aGVsbG8=")
    );

    let addrs = c
        .describe_addresses()
        .allocation_ids(&o.allocation)
        .send()
        .await
        .expect("describe_addresses");
    assert_eq!(addrs.addresses()[0].instance_id(), Some(twin_id.as_str()));

    let old = instance(&c, &o.id).await;
    assert_eq!(state(&old), "terminated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_replace_instance_launches_exactly_one_twin() {
    let Some(moto) = crate::moto::start("a_redelivered_replace_instance_launches_exactly_one_twin")
    else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let c = ec2::Client::new(&shared);
    let o = original(&c).await;
    let inc = incident(&o.id);
    let action = Action::ReplaceInstance {
        instance_id: o.id.clone(),
        move_elastic_ip: true,
    };
    let req = StepRequest {
        incident: &inc,
        step: 0,
        action: &action,
    };
    let exec = executor(&shared);
    let recording = start_recording(&moto.endpoint).await;
    let first = exec.execute(&req).await;
    assert_eq!(first.outcome, ExecOutcome::Succeeded, "{first:?}");
    // The same step again: a redelivery, or a restart after a crash.
    let second = exec.execute(&req).await;
    let ops = recorded_operations(&moto.endpoint);
    drop(recording);
    assert_eq!(second.outcome, ExecOutcome::Succeeded, "{second:?}");
    assert_eq!(
        second.created, first.created,
        "continued from the same twin"
    );
    assert_eq!(twins(&c, &inc).await, first.created, "exactly one twin");
    assert_eq!(
        count(&ops, "RunInstances"),
        1,
        "exactly one RunInstances: {ops:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_resumed_after_the_launch_continues_from_the_launched_twin() {
    let Some(moto) =
        crate::moto::start("a_replace_resumed_after_the_launch_continues_from_the_launched_twin")
    else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let c = ec2::Client::new(&shared);
    let o = original(&c).await;
    let inc = incident(&o.id);
    // An earlier attempt launched the twin and crashed before moving the
    // address and terminating the original.
    let launched = c
        .run_instances()
        .image_id(&o.image)
        .subnet_id(&o.subnet)
        .min_count(1)
        .max_count(1)
        .tag_specifications(
            ec2::types::TagSpecification::builder()
                .resource_type(ec2::types::ResourceType::Instance)
                .tags(tag("HealerIncident", inc.id.as_str()))
                .tags(tag("HealerStep", "3"))
                .build(),
        )
        .send()
        .await
        .expect("run_instances");
    let twin = launched.instances()[0]
        .instance_id()
        .expect("id")
        .to_owned();
    let action = Action::ReplaceInstance {
        instance_id: o.id.clone(),
        move_elastic_ip: true,
    };
    let req = StepRequest {
        incident: &inc,
        step: 3,
        action: &action,
    };
    let recording = start_recording(&moto.endpoint).await;
    let e = executor(&shared).execute(&req).await;
    let ops = recorded_operations(&moto.endpoint);
    drop(recording);
    assert_eq!(e.outcome, ExecOutcome::Succeeded, "{e:?}");
    assert_eq!(e.created, std::slice::from_ref(&twin));
    assert_eq!(count(&ops, "RunInstances"), 0, "{ops:?}");
    assert_eq!(count(&ops, "TerminateInstances"), 1, "{ops:?}");
    let addrs = c
        .describe_addresses()
        .allocation_ids(&o.allocation)
        .send()
        .await
        .expect("describe_addresses");
    assert_eq!(addrs.addresses()[0].instance_id(), Some(twin.as_str()));
    assert_eq!(state(&instance(&c, &o.id).await), "terminated");
    // Another step of the same incident is a different replacement.
    let other = StepRequest { step: 4, ..req };
    let plan = executor(&shared).plan(&other);
    assert_eq!(plan[0].params["Filters"][1]["Values"][0], "4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twin_that_cannot_launch_fails_and_leaves_the_original_running() {
    let Some(moto) =
        crate::moto::start("a_twin_that_cannot_launch_fails_and_leaves_the_original_running")
    else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let c = ec2::Client::new(&shared);
    let o = original(&c).await;
    // moto launches any AMI id, so the launch is broken another way: the
    // original's security group no longer exists (InvalidGroup.NotFound).
    c.delete_security_group()
        .group_id(&o.group)
        .send()
        .await
        .expect("delete_security_group");
    let inc = incident(&o.id);
    let action = Action::ReplaceInstance {
        instance_id: o.id.clone(),
        move_elastic_ip: true,
    };
    let req = StepRequest {
        incident: &inc,
        step: 0,
        action: &action,
    };
    let e = executor(&shared).execute(&req).await;
    let ExecOutcome::Failed { reason, .. } = &e.outcome else {
        panic!("expected a failure: {e:?}");
    };
    assert!(reason.contains("RunInstances"), "{reason}");
    assert!(e.created.is_empty(), "{e:?}");
    assert_eq!(
        e.calls.last().map(|c| c.operation.as_str()),
        Some("ec2:RunInstances")
    );
    assert_eq!(state(&instance(&c, &o.id).await), "running");
    assert!(twins(&c, &inc).await.is_empty());
    let addrs = c
        .describe_addresses()
        .allocation_ids(&o.allocation)
        .send()
        .await
        .expect("describe_addresses");
    assert_eq!(addrs.addresses()[0].instance_id(), Some(o.id.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_instance_sends_reboot_instances() {
    let Some(moto) = crate::moto::start("reboot_instance_sends_reboot_instances") else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let c = ec2::Client::new(&shared);
    let o = original(&c).await;
    let inc = incident(&o.id);
    let action = Action::RebootInstance {
        instance_id: o.id.clone(),
    };
    let req = StepRequest {
        incident: &inc,
        step: 0,
        action: &action,
    };
    let recording = start_recording(&moto.endpoint).await;
    let e = executor(&shared).execute(&req).await;
    let ops = recorded_operations(&moto.endpoint);
    drop(recording);
    assert_eq!(e.outcome, ExecOutcome::Succeeded, "{e:?}");
    assert_eq!(e.request_ids.len(), 1);
    assert_eq!(ops, ["RebootInstances"]);
    assert_eq!(state(&instance(&c, &o.id).await), "running");
    // An unknown instance is a classified failure, not a panic.
    let missing = Action::RebootInstance {
        instance_id: "i-0123456789abcdef0".into(),
    };
    let e = executor(&shared)
        .execute(&StepRequest {
            action: &missing,
            ..req
        })
        .await;
    assert!(matches!(e.outcome, ExecOutcome::Failed { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_instance_unhealthy_flips_the_auto_scaling_health() {
    let Some(moto) = crate::moto::start("set_instance_unhealthy_flips_the_auto_scaling_health")
    else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let c = ec2::Client::new(&shared);
    let images = c.describe_images().send().await.expect("describe_images");
    let image = images.images()[0].image_id().expect("image").to_owned();
    let a = asg::Client::new(&shared);
    a.create_launch_configuration()
        .launch_configuration_name("web")
        .image_id(&image)
        .instance_type("t3.micro")
        .send()
        .await
        .expect("create_launch_configuration");
    a.create_auto_scaling_group()
        .auto_scaling_group_name("web")
        .launch_configuration_name("web")
        .min_size(1)
        .max_size(1)
        .desired_capacity(1)
        .availability_zones("us-east-1a")
        .send()
        .await
        .expect("create_auto_scaling_group");
    let health = || async {
        let out = a
            .describe_auto_scaling_groups()
            .auto_scaling_group_names("web")
            .send()
            .await
            .expect("describe_auto_scaling_groups");
        let i = &out.auto_scaling_groups()[0].instances()[0];
        (
            i.instance_id().expect("member").to_owned(),
            i.health_status().expect("health").to_owned(),
        )
    };
    let (member, before) = health().await;
    assert_eq!(before, "Healthy");
    let inc = incident(&member);
    let action = Action::SetInstanceUnhealthy {
        group: "web".into(),
        instance_id: member.clone(),
    };
    let req = StepRequest {
        incident: &inc,
        step: 0,
        action: &action,
    };
    let recording = start_recording(&moto.endpoint).await;
    let e = AutoscalingExecutor::new(&shared).execute(&req).await;
    let ops = recorded_operations(&moto.endpoint);
    drop(recording);
    assert_eq!(e.outcome, ExecOutcome::Succeeded, "{e:?}");
    assert_eq!(ops, ["SetInstanceHealth"]);
    assert_eq!(health().await, (member, "Unhealthy".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_and_deregister_target_change_the_target_health() {
    let Some(moto) = crate::moto::start("register_and_deregister_target_change_the_target_health")
    else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let c = ec2::Client::new(&shared);
    let o = original(&c).await;
    let vpc = c
        .describe_subnets()
        .subnet_ids(&o.subnet)
        .send()
        .await
        .expect("describe_subnets")
        .subnets()[0]
        .vpc_id()
        .expect("vpc")
        .to_owned();
    let elb = elbv2::Client::new(&shared);
    let tg = elb
        .create_target_group()
        .name("web")
        .protocol(elbv2::types::ProtocolEnum::Http)
        .port(80)
        .vpc_id(vpc)
        .send()
        .await
        .expect("create_target_group");
    let tg = tg.target_groups()[0]
        .target_group_arn()
        .expect("tg arn")
        .to_owned();
    let members = || async {
        elb.describe_target_health()
            .target_group_arn(&tg)
            .send()
            .await
            .expect("describe_target_health")
            .target_health_descriptions()
            .iter()
            .map(|d| {
                (
                    d.target()
                        .and_then(|t| t.id())
                        .unwrap_or_default()
                        .to_owned(),
                    d.target().and_then(|t| t.port()),
                    d.target_health()
                        .and_then(|h| h.state())
                        .map_or(String::new(), |s| s.as_str().to_owned()),
                )
            })
            .collect::<Vec<_>>()
    };
    assert!(members().await.is_empty());
    let inc = incident(&o.id);
    let exec = Elbv2Executor::new(&shared);
    let register = Action::RegisterTarget {
        target_group: tg.clone(),
        target_id: o.id.clone(),
        port: Some(8080),
    };
    let req = StepRequest {
        incident: &inc,
        step: 0,
        action: &register,
    };
    let e = exec.execute(&req).await;
    assert_eq!(e.outcome, ExecOutcome::Succeeded, "{e:?}");
    assert_eq!(e.request_ids.len(), 1);
    assert_eq!(
        members().await,
        [(o.id.clone(), Some(8080), "healthy".to_owned())]
    );
    let deregister = Action::DeregisterTarget {
        target_group: tg.clone(),
        target_id: o.id.clone(),
        port: Some(8080),
    };
    let e = exec
        .execute(&StepRequest {
            action: &deregister,
            ..req
        })
        .await;
    assert_eq!(e.outcome, ExecOutcome::Succeeded, "{e:?}");
    assert!(members().await.is_empty(), "{:?}", members().await);
    // An unknown target group is a classified failure.
    let missing = Action::RegisterTarget {
        target_group:
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/none/0123456789abcdef"
                .into(),
        target_id: o.id.clone(),
        port: None,
    };
    let e = exec
        .execute(&StepRequest {
            action: &missing,
            ..req
        })
        .await;
    assert!(matches!(e.outcome, ExecOutcome::Failed { .. }), "{e:?}");
}

/// ECS on moto: a cluster, three revisions of `api` (the second deregistered),
/// a service on the third, and a subnet of a VPC with DNS hostnames (which
/// moto's RunTask needs). Tasks stay where they are put (manual transitions).
pub(crate) struct EcsWorld {
    pub(crate) ecs: ecs::Client,
    pub(crate) revisions: Vec<String>,
    subnet: String,
    group: String,
}

pub(crate) async fn ecs_world(
    moto: &crate::moto::Moto,
    shared: &aws_config::SdkConfig,
) -> EcsWorld {
    moto_api(
        &moto.endpoint,
        "POST",
        "/moto-api/state-manager/set-transition",
        r#"{"model_name":"ecs::task","transition":{"progression":"manual","times":1000000}}"#,
    );
    let c = ec2::Client::new(shared);
    let vpc = c
        .create_vpc()
        .cidr_block("10.8.0.0/16")
        .send()
        .await
        .expect("create_vpc");
    let vpc = vpc.vpc().and_then(|v| v.vpc_id()).expect("vpc").to_owned();
    c.modify_vpc_attribute()
        .vpc_id(&vpc)
        .enable_dns_hostnames(
            ec2::types::AttributeBooleanValue::builder()
                .value(true)
                .build(),
        )
        .send()
        .await
        .expect("modify_vpc_attribute");
    let subnet = c
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.8.1.0/24")
        .send()
        .await
        .expect("create_subnet")
        .subnet()
        .and_then(|s| s.subnet_id())
        .expect("subnet")
        .to_owned();
    // moto's RunTask needs security groups in an awsvpc configuration.
    let group = c
        .create_security_group()
        .group_name("api")
        .description("api")
        .vpc_id(&vpc)
        .send()
        .await
        .expect("create_security_group")
        .group_id()
        .expect("group")
        .to_owned();
    let e = ecs::Client::new(shared);
    e.create_cluster()
        .cluster_name("prod")
        .send()
        .await
        .expect("create_cluster");
    let mut revisions = Vec::new();
    for image in ["api:1", "api:2", "api:3"] {
        let out = e
            .register_task_definition()
            .family("api")
            .requires_compatibilities(ecs::types::Compatibility::Fargate)
            .network_mode(ecs::types::NetworkMode::Awsvpc)
            .cpu("256")
            .memory("512")
            .container_definitions(
                ecs::types::ContainerDefinition::builder()
                    .name("api")
                    .image(image)
                    .memory(128)
                    .build(),
            )
            .send()
            .await
            .expect("register_task_definition");
        revisions.push(
            out.task_definition()
                .and_then(|t| t.task_definition_arn())
                .expect("arn")
                .to_owned(),
        );
    }
    e.deregister_task_definition()
        .task_definition(&revisions[1])
        .send()
        .await
        .expect("deregister_task_definition");
    e.create_service()
        .cluster("prod")
        .service_name("api")
        .task_definition(&revisions[2])
        .desired_count(2)
        .send()
        .await
        .expect("create_service");
    EcsWorld {
        ecs: e,
        revisions,
        subnet,
        group,
    }
}

impl EcsWorld {
    pub(crate) async fn service(&self) -> ecs::types::Service {
        self.ecs
            .describe_services()
            .cluster("prod")
            .services("api")
            .send()
            .await
            .expect("describe_services")
            .services()[0]
            .clone()
    }

    /// Runs one Fargate task of revision 1, in `group` when given.
    pub(crate) async fn run(&self, group: Option<&str>) -> String {
        let out = self
            .ecs
            .run_task()
            .cluster("prod")
            .task_definition(&self.revisions[0])
            .launch_type(ecs::types::LaunchType::Fargate)
            .set_group(group.map(str::to_owned))
            .network_configuration(
                ecs::types::NetworkConfiguration::builder()
                    .awsvpc_configuration(
                        ecs::types::AwsVpcConfiguration::builder()
                            .subnets(&self.subnet)
                            .security_groups(&self.group)
                            .build()
                            .expect("awsvpc"),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("run_task");
        out.tasks()[0].task_arn().expect("task arn").to_owned()
    }

    /// Registers `batch` (not awsvpc) and runs one standalone task of it:
    /// (task definition ARN, task ARN). Not awsvpc because moto's RunTask
    /// needs security groups there, which DescribeTasks does not return (as
    /// in AWS), so the rerun of an awsvpc task carries its subnets only and
    /// moto refuses it.
    pub(crate) async fn run_standalone(&self) -> (String, String) {
        let batch = self
            .ecs
            .register_task_definition()
            .family("batch")
            .container_definitions(
                ecs::types::ContainerDefinition::builder()
                    .name("batch")
                    .image("batch:1")
                    .memory(128)
                    .build(),
            )
            .send()
            .await
            .expect("register_task_definition")
            .task_definition()
            .and_then(|t| t.task_definition_arn())
            .expect("arn")
            .to_owned();
        let out = self
            .ecs
            .run_task()
            .cluster("prod")
            .task_definition(&batch)
            .launch_type(ecs::types::LaunchType::Fargate)
            .send()
            .await
            .expect("run_task");
        let task = out.tasks()[0].task_arn().expect("task arn").to_owned();
        (batch, task)
    }

    pub(crate) async fn stop(&self, task: &str) {
        self.ecs
            .stop_task()
            .cluster("prod")
            .task(task)
            .send()
            .await
            .expect("stop_task");
    }

    pub(crate) async fn task(&self, task: &str) -> ecs::types::Task {
        self.ecs
            .describe_tasks()
            .cluster("prod")
            .tasks(task)
            .send()
            .await
            .expect("describe_tasks")
            .tasks()[0]
            .clone()
    }
}

fn step<'a>(incident: &'a Incident, action: &'a Action) -> StepRequest<'a> {
    StepRequest {
        incident,
        step: 0,
        action,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_deployment_picks_the_newest_earlier_active_revision() {
    let Some(moto) =
        crate::moto::start("rollback_deployment_picks_the_newest_earlier_active_revision")
    else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let w = ecs_world(&moto, &shared).await;
    let inc = incident("api");
    let exec = EcsExecutor::new(&shared);
    let rollback = Action::RollbackDeployment {
        cluster: "prod".into(),
        service: "api".into(),
        task_definition: None,
    };
    let e = exec.execute(&step(&inc, &rollback)).await;
    assert_eq!(e.outcome, ExecOutcome::Succeeded, "{e:?}");
    // Revision 2 is INACTIVE: the newest earlier ACTIVE one is 1.
    assert_eq!(e.note.as_deref(), Some("api:3 → api:1"));
    assert_eq!(
        w.service().await.task_definition(),
        Some(w.revisions[0].as_str())
    );

    // A named revision is used as named.
    let named = Action::RollbackDeployment {
        cluster: "prod".into(),
        service: "api".into(),
        task_definition: Some(w.revisions[2].clone()),
    };
    let e = exec.execute(&step(&inc, &named)).await;
    assert_eq!(e.outcome, ExecOutcome::Succeeded, "{e:?}");
    assert_eq!(e.note.as_deref(), Some("api:1 → api:3"));
    assert_eq!(
        w.service().await.task_definition(),
        Some(w.revisions[2].as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_service_and_force_new_deployment_update_the_service() {
    let Some(moto) =
        crate::moto::start("scale_service_and_force_new_deployment_update_the_service")
    else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let w = ecs_world(&moto, &shared).await;
    let inc = incident("api");
    let exec = EcsExecutor::new(&shared);
    let scale = Action::ScaleService {
        cluster: "prod".into(),
        service: "api".into(),
        desired_count: 5,
    };
    let e = exec.execute(&step(&inc, &scale)).await;
    assert_eq!(e.outcome, ExecOutcome::Succeeded, "{e:?}");
    assert_eq!(e.request_ids.len(), 1);
    assert_eq!(w.service().await.desired_count(), 5);

    let before = w.service().await.deployments()[0].id().map(str::to_owned);
    let force = Action::ForceNewDeployment {
        cluster: "prod".into(),
        service: "api".into(),
    };
    let e = exec.execute(&step(&inc, &force)).await;
    assert_eq!(e.outcome, ExecOutcome::Succeeded, "{e:?}");
    let after = w.service().await.deployments()[0].id().map(str::to_owned);
    assert_ne!(before, after, "a new deployment");
    assert_eq!(w.service().await.desired_count(), 5);

    let missing = Action::ScaleService {
        cluster: "prod".into(),
        service: "none".into(),
        desired_count: 1,
    };
    let e = exec.execute(&step(&inc, &missing)).await;
    assert!(matches!(e.outcome, ExecOutcome::Failed { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_task_stops_a_running_task_with_the_incident_as_reason() {
    let Some(moto) =
        crate::moto::start("restart_task_stops_a_running_task_with_the_incident_as_reason")
    else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let w = ecs_world(&moto, &shared).await;
    let task = w.run(Some("service:api")).await;
    let inc = incident("task");
    let action = Action::RestartTask {
        cluster: "prod".into(),
        task: task.clone(),
    };
    let e = EcsExecutor::new(&shared)
        .execute(&step(&inc, &action))
        .await;
    assert_eq!(e.outcome, ExecOutcome::Succeeded, "{e:?}");
    let stopped = w.task(&task).await;
    assert_eq!(stopped.last_status(), Some("STOPPED"));
    assert_eq!(
        stopped.stopped_reason(),
        Some(format!("healer {}", inc.id.as_str()).as_str())
    );
    assert!(e.created.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_task_of_a_stopped_service_task_is_superseded_without_a_call() {
    let Some(moto) =
        crate::moto::start("restart_task_of_a_stopped_service_task_is_superseded_without_a_call")
    else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let w = ecs_world(&moto, &shared).await;
    let task = w.run(Some("service:api")).await;
    w.stop(&task).await;
    let inc = incident("task");
    let action = Action::RestartTask {
        cluster: "prod".into(),
        task: task.clone(),
    };
    let recording = start_recording(&moto.endpoint).await;
    let e = EcsExecutor::new(&shared)
        .execute(&step(&inc, &action))
        .await;
    let ops = recorded_operations(&moto.endpoint);
    drop(recording);
    let ExecOutcome::Superseded { seen } = &e.outcome else {
        panic!("expected superseded: {e:?}");
    };
    assert!(seen.contains("already STOPPED"), "{seen}");
    assert_eq!(ops, ["DescribeTasks"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_task_reruns_a_stopped_standalone_task_exactly_once() {
    let Some(moto) =
        crate::moto::start("restart_task_reruns_a_stopped_standalone_task_exactly_once")
    else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let w = ecs_world(&moto, &shared).await;
    let (batch, task) = w.run_standalone().await;
    w.stop(&task).await;
    assert_eq!(w.task(&task).await.group(), Some("family:batch"));
    let inc = incident("task");
    let action = Action::RestartTask {
        cluster: "prod".into(),
        task: task.clone(),
    };
    let exec = EcsExecutor::new(&shared);
    let recording = start_recording(&moto.endpoint).await;
    let first = exec.execute(&step(&inc, &action)).await;
    // The same step again: a redelivery finds the task it ran.
    let second = exec.execute(&step(&inc, &action)).await;
    let ops = recorded_operations(&moto.endpoint);
    drop(recording);
    assert_eq!(first.outcome, ExecOutcome::Succeeded, "{first:?}");
    assert_eq!(second.outcome, ExecOutcome::Succeeded, "{second:?}");
    assert_eq!(count(&ops, "RunTask"), 1, "{ops:?}");
    assert_eq!(count(&ops, "StopTask"), 0, "{ops:?}");
    assert_eq!(first.created.len(), 1, "{first:?}");
    assert_eq!(second.created, first.created, "{second:?}");
    let rerun = w.task(&first.created[0]).await;
    assert_eq!(rerun.task_definition_arn(), Some(batch.as_str()));
    assert_eq!(rerun.launch_type(), Some(&ecs::types::LaunchType::Fargate));
    assert_eq!(rerun.group(), Some("family:batch"));
}

/// Re-check before acting: the original was terminated between the decision
/// and the action (a human, or its group, got there first): no twin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_instance_of_an_instance_terminated_meanwhile_is_superseded() {
    let Some(moto) =
        crate::moto::start("replace_instance_of_an_instance_terminated_meanwhile_is_superseded")
    else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let c = ec2::Client::new(&shared);
    let o = original(&c).await;
    c.terminate_instances()
        .instance_ids(&o.id)
        .send()
        .await
        .expect("terminate_instances");
    let inc = incident(&o.id);
    let action = Action::ReplaceInstance {
        instance_id: o.id.clone(),
        move_elastic_ip: true,
    };
    let recording = start_recording(&moto.endpoint).await;
    let e = executor(&shared).execute(&step(&inc, &action)).await;
    let ops = recorded_operations(&moto.endpoint);
    drop(recording);
    let ExecOutcome::Superseded { seen } = &e.outcome else {
        panic!("{e:?}");
    };
    assert!(seen.contains("terminated"), "{seen}");
    assert_eq!(count(&ops, "RunInstances"), 0, "{ops:?}");
    assert!(twins(&c, &inc).await.is_empty());
}
