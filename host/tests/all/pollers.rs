//! The pollers against moto: target health (a registered instance stopped
//! shows `unused` / `Target.InvalidState`, as in AWS) and instance status
//! (moto never answers `impaired`, so a proxy of the test's own in front of
//! it rewrites the instance check of `DescribeInstanceStatus` the way AWS
//! reports a failed reachability check). Two pollers on one store stand for
//! two replicas.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_ec2 as ec2;
use aws_sdk_elasticloadbalancingv2 as elbv2;
use healer::incident::{IncidentKind, Recovery};
use healer::signals::Signal;
use healer::sources::instances::{InstancePoller, InstancesConfig};
use healer::sources::poll::{FlapRule, Poller};
use healer::sources::targets::{Rate, TargetPoller, TargetsConfig};
use healer::store::{IncidentRecord, LifecycleState, Scope, SqliteStore, Store};
use tokio::sync::watch;

use crate::actions_ecs_ec2::original;
use crate::throttle::{Intercept, Judge, intercepting_proxy};

const RATE: Rate = Rate {
    per_sec: 50.0,
    burst: 50,
};

/// A store and what stands for the pipeline: incidents are recorded as
/// detected (no policy closes them), recoveries go through the pipeline's own
/// `on_recovery`.
struct World {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    registry: healer::policy::PolicyRegistry,
    governor: healer::safety::Governor,
    facts: healer::safety::StaticFacts,
}

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&dir.path().join("healer.db"))
                .await
                .expect("store"),
        );
        World {
            _dir: dir,
            store,
            registry: healer::policy::PolicyRegistry::new(crate::support::engine()),
            governor: healer::safety::Governor::new(Default::default()),
            facts: healer::safety::StaticFacts(Default::default()),
        }
    }

    async fn record(&self, signals: &[Signal]) {
        let pipeline = healer::pipeline::Pipeline {
            store: self.store.as_ref(),
            registry: &self.registry,
            governor: &self.governor,
            facts: &self.facts,
        };
        for s in signals {
            match s {
                Signal::Incident(i) => {
                    self.store
                        .insert_if_absent(&IncidentRecord::detected(i.clone()))
                        .await
                        .expect("insert");
                }
                Signal::Recovery(r) => {
                    pipeline.on_recovery(r).await.expect("recovery");
                }
                other => panic!("a poller yielded {other:?}"),
            }
        }
    }

    async fn incidents(&self, resource: &str) -> Vec<IncidentRecord> {
        let mut all = self
            .store
            .incidents_of(&Scope::Resource(resource.to_owned()))
            .await
            .expect("incidents");
        all.sort_by_key(|r| r.incident.detected_at);
        all
    }
}

async fn observe(p: &mut impl Poller) -> Vec<Signal> {
    let (_tx, mut stop) = watch::channel(false);
    // Each round is later than the last (the store orders incidents by time).
    tokio::time::sleep(Duration::from_millis(5)).await;
    p.observe(chrono::Utc::now(), &mut stop)
        .await
        .expect("observe")
}

fn incidents(signals: &[Signal]) -> Vec<&healer::incident::Incident> {
    signals
        .iter()
        .filter_map(|s| match s {
            Signal::Incident(i) => Some(i),
            _ => None,
        })
        .collect()
}

fn recoveries(signals: &[Signal]) -> Vec<&Recovery> {
    signals
        .iter()
        .filter_map(|s| match s {
            Signal::Recovery(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// An instance registered on port 80 of a new target group.
async fn target(shared: &aws_config::SdkConfig) -> (ec2::Client, String, String) {
    let c = ec2::Client::new(shared);
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
    let tg = tg.target_groups()[0]
        .target_group_arn()
        .expect("tg arn")
        .to_owned();
    elb.register_targets()
        .target_group_arn(&tg)
        .targets(
            elbv2::types::TargetDescription::builder()
                .id(&o.id)
                .port(80)
                .build(),
        )
        .send()
        .await
        .expect("register_targets");
    (c, o.id, tg)
}

async fn stop(c: &ec2::Client, id: &str) {
    c.stop_instances()
        .instance_ids(id)
        .send()
        .await
        .expect("stop");
}

async fn start(c: &ec2::Client, id: &str) {
    c.start_instances()
        .instance_ids(id)
        .send()
        .await
        .expect("start");
}

fn targets(shared: &aws_config::SdkConfig, world: &World, tg: &str, flap: u32) -> TargetPoller {
    TargetPoller::new(
        elbv2::Client::new(shared),
        world.store.clone(),
        TargetsConfig {
            target_groups: vec![tg.to_owned()],
            load_balancers: Vec::new(),
            rate: RATE,
            flap: FlapRule {
                threshold: flap,
                window: Duration::from_secs(600),
            },
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_target_opens_one_incident_across_replicas_and_its_recovery_closes_it() {
    let Some(moto) = crate::moto::start("pollers_target_once") else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let world = World::new().await;
    let (c, id, tg) = target(&shared).await;
    let (mut a, mut b) = (
        targets(&shared, &world, &tg, 4),
        targets(&shared, &world, &tg, 4),
    );

    // First sight, healthy: a recovery (closes what a restart left open).
    let first = observe(&mut a).await;
    assert_eq!(recoveries(&first).len(), 1, "{first:?}");
    assert!(incidents(&first).is_empty());
    world.record(&first).await;

    stop(&c, &id).await;
    let failed = observe(&mut a).await;
    let opened = incidents(&failed);
    assert_eq!(opened.len(), 1, "{failed:?}");
    let x = opened[0].clone();
    assert_eq!(x.kind, IncidentKind::TargetUnhealthy);
    assert_eq!(x.resource.id, id);
    assert_eq!(x.group.as_ref().map(|g| g.id.as_str()), Some(tg.as_str()));
    assert_eq!(x.detail["reason-code"], "Target.InvalidState");
    assert_eq!(x.detail["port"], "80");
    assert_eq!(x.detail["flapping"], "false");
    assert!(x.dedupe_key.ends_with("#after:none"), "{}", x.dedupe_key);
    world.record(&failed).await;
    // Still unhealthy: nothing new on the next round, nor from a second
    // replica seeing it for the first time (the open incident is the store's).
    assert!(observe(&mut a).await.is_empty());
    assert!(incidents(&observe(&mut b).await).is_empty());

    start(&c, &id).await;
    let back = observe(&mut a).await;
    assert_eq!(recoveries(&back).len(), 1, "{back:?}");
    world.record(&back).await;
    let history = world.incidents(&id).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].state, LifecycleState::Healed);
    world.record(&observe(&mut b).await).await;

    // A second failure, seen by both replicas before either records it:
    // the same incident (the key names the previous one, not the poll).
    stop(&c, &id).await;
    let (sa, sb) = (observe(&mut a).await, observe(&mut b).await);
    let (ia, ib) = (incidents(&sa), incidents(&sb));
    assert_eq!((ia.len(), ib.len()), (1, 1), "{sa:?} {sb:?}");
    assert_eq!(ia[0].id, ib[0].id);
    assert_ne!(ia[0].id, x.id);
    assert!(ia[0].dedupe_key.ends_with(&format!("#after:{}", x.id)));
    world.record(&sa).await;
    world.record(&sb).await;
    let history = world.incidents(&id).await;
    assert_eq!(history.len(), 2, "one incident per failure");
    assert!(!history[1].state.is_terminal());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_target_opens_an_incident_marked_flapping_even_when_healthy() {
    let Some(moto) = crate::moto::start("pollers_target_flapping") else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let world = World::new().await;
    let (c, id, tg) = target(&shared).await;
    let mut a = targets(&shared, &world, &tg, 3);
    world.record(&observe(&mut a).await).await;
    stop(&c, &id).await; // transition 1: opens X
    world.record(&observe(&mut a).await).await;
    start(&c, &id).await; // 2: X recovers
    world.record(&observe(&mut a).await).await;
    stop(&c, &id).await; // 3: flapping, unhealthy: Y, marked
    let third = observe(&mut a).await;
    let y = incidents(&third)[0].clone();
    assert_eq!(
        (
            y.detail["flapping"].as_str(),
            y.detail["flap-count"].as_str()
        ),
        ("true", "3")
    );
    world.record(&third).await;
    start(&c, &id).await; // 4: healthy, still flapping: Z replaces Y
    let fourth = observe(&mut a).await;
    let z = incidents(&fourth);
    assert_eq!(z.len(), 1, "{fourth:?}");
    assert_eq!(z[0].detail["flap-count"], "4");
    assert_eq!(z[0].detail["reason-code"], "flapping");
    assert!(z[0].dedupe_key.ends_with(&format!("#after:{}", y.id)));
    world.record(&fourth).await;
    let states: Vec<LifecycleState> = world.incidents(&id).await.iter().map(|r| r.state).collect();
    use LifecycleState::{Detected, Healed};
    assert_eq!(states, [Healed, Healed, Detected], "X, Y closed; Z open");
    // Healthy and flapping: no recovery closes Z.
    assert!(observe(&mut a).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impaired_instance_check_opens_instance_impaired_and_ok_closes_it() {
    let Some(moto) = crate::moto::start("pollers_instance_status") else {
        return;
    };
    let impaired = Arc::new(AtomicBool::new(false));
    let flag = impaired.clone();
    // AWS's answer for a failed reachability check: the instance check's
    // summary `impaired`, its detail `failed`.
    let judge: Judge = Arc::new(move |form: &str| {
        if !form.contains("Action=DescribeInstanceStatus") || !flag.load(Ordering::SeqCst) {
            return Intercept::Forward;
        }
        Intercept::Rewrite(Box::new(|body: Vec<u8>| {
            let xml = String::from_utf8_lossy(&body).into_owned();
            impair(&xml).into_bytes()
        }))
    });
    let endpoint = intercepting_proxy(moto.endpoint.clone(), judge).await;
    let shared = crate::moto::sdk_config(&endpoint).await;
    let world = World::new().await;
    let c = ec2::Client::new(&shared);
    let o = original(&c).await; // tagged SelfHeal=true
    let untagged = c
        .run_instances()
        .image_id(&o.image)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect("run untagged")
        .instances()[0]
        .instance_id()
        .expect("id")
        .to_owned();
    let poller = || {
        InstancePoller::new(
            ec2::Client::new(&shared),
            world.store.clone(),
            InstancesConfig {
                tag: ("SelfHeal".into(), "true".into()),
                rate: RATE,
                flap: FlapRule::default(),
            },
        )
    };
    let (mut a, mut b) = (poller(), poller());
    let first = observe(&mut a).await;
    assert_eq!(
        recoveries(&first).len(),
        1,
        "only the opted-in one: {first:?}"
    );
    assert_eq!(recoveries(&first)[0].resource.id, o.id);

    impaired.store(true, Ordering::SeqCst);
    let seen = observe(&mut a).await;
    let opened = incidents(&seen);
    assert_eq!(opened.len(), 1, "{seen:?}");
    let i = opened[0].clone();
    assert_eq!(i.kind, IncidentKind::InstanceImpaired);
    assert_eq!(i.resource.id, o.id);
    assert_eq!(i.detail["instance-status"], "impaired");
    assert_eq!(i.detail["failed-checks"], "instance:reachability");
    assert_eq!(i.resource.region.as_deref(), Some("us-east-1"));
    world.record(&seen).await;
    assert!(
        observe(&mut b)
            .await
            .iter()
            .all(|s| !matches!(s, Signal::Incident(_)))
    );
    assert!(world.incidents(&untagged).await.is_empty());

    impaired.store(false, Ordering::SeqCst);
    let back = observe(&mut a).await;
    assert_eq!(recoveries(&back).len(), 1, "{back:?}");
    world.record(&back).await;
    let history = world.incidents(&o.id).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].state, LifecycleState::Healed);
}

/// moto's `DescribeInstanceStatus` XML with every instance check impaired.
fn impair(xml: &str) -> String {
    let mut out = String::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<instanceStatus>") {
        let end = rest[start..]
            .find("</instanceStatus>")
            .map_or(rest.len(), |e| start + e);
        out.push_str(&rest[..start]);
        out.push_str(
            &rest[start..end]
                .replace("<status>ok</status>", "<status>impaired</status>")
                .replace("<status>passed</status>", "<status>failed</status>"),
        );
        rest = &rest[end..];
    }
    out.push_str(rest);
    assert!(
        out.contains("impaired"),
        "moto's answer changed shape: {xml}"
    );
    out
}

/// `healer run` with `[pollers]` from its flags: the target's failure reaches
/// the store through the pipeline, and the poll rounds are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healer_run_polls_the_configured_target_group() {
    let Some(moto) = crate::moto::start("pollers_healer_run") else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let (c, id, tg) = target(&shared).await;
    let data = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", crate::support::free_port());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_healer"))
        .args(["run", "--no-cache"])
        .env("HEALER_POLL_TARGET_GROUPS", &tg)
        .env("HEALER_POLL_TARGETS_INTERVAL_SECS", "0.2")
        .env("HEALER_LISTEN", &listen)
        .env("HEALER_DATA_DIR", data.path())
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("healer run starts");
    let endpoint = format!("http://{listen}");
    let wait_for = |what: &str, ok: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !ok() {
            assert!(std::time::Instant::now() < deadline, "{what} within 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let metrics = || crate::support::http(&endpoint, "GET", "/metrics", &[], "").1;
    let rounds = |m: &str| m.contains(r#"healer_polls_total{poller="targets",result="ok"}"#);
    wait_for("a poll round", &|| {
        std::net::TcpStream::connect(&listen).is_ok() && rounds(&metrics())
    });
    stop(&c, &id).await;
    let listed = || {
        let (status, body) = crate::support::http(
            &endpoint,
            "GET",
            "/incidents?kind=target-unhealthy",
            &[],
            "",
        );
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        v["items"].as_array().cloned().unwrap_or_default()
    };
    wait_for("the target-unhealthy incident", &|| !listed().is_empty());
    // Several rounds later, still one.
    std::thread::sleep(Duration::from_millis(800));
    let all = listed();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["incident"]["resource"]["id"], id.as_str());
    assert!(metrics().contains(r#"healer_signals_total{origin="poll",outcome="incident"} 1"#));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("exits");
    assert!(status.success(), "a clean stop: {status}");
}
