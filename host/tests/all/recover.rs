//! `recover-instance` on moto through the real EC2 client: stop and start in
//! place, once, across a resumed step; superseded when a human stopped it.

use aws_sdk_ec2 as ec2;
use healer::actions::{ExecOutcome, Executor, RECOVERY_TAG, StepRequest};
use healer::decision::Action;
use healer::incident::Incident;

use crate::actions_ecs_ec2::{
    Original, count, executor, incident, instance, original, recorded_operations, start_recording,
    state,
};

/// moto with one opted-in instance (and its Elastic IP), the incident on it
/// and the recovery action.
struct World {
    moto: crate::moto::Moto,
    shared: aws_config::SdkConfig,
    c: ec2::Client,
    o: Original,
    inc: Incident,
    action: Action,
}

impl World {
    async fn start(name: &str) -> Option<World> {
        let moto = crate::moto::start(name)?;
        let shared = crate::moto::sdk_config(&moto.endpoint).await;
        let c = ec2::Client::new(&shared);
        let o = original(&c).await;
        let inc = incident(&o.id);
        let action = Action::RecoverInstance {
            instance_id: o.id.clone(),
        };
        Some(World {
            moto,
            shared,
            c,
            o,
            inc,
            action,
        })
    }

    fn step(&self) -> StepRequest<'_> {
        StepRequest {
            incident: &self.inc,
            step: 0,
            action: &self.action,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_instance_stops_and_starts_in_place_once() {
    let Some(w) = World::start("recover_instance_stops_and_starts_in_place_once").await else {
        return;
    };
    let (moto, shared, c, o, req) = (&w.moto, &w.shared, &w.c, &w.o, w.step());
    let recording = start_recording(&moto.endpoint).await;
    let first = executor(shared).execute(&req).await;
    // The same step again (a redelivery, a resumed host): the instance is
    // running with this step's recovery tag, so it is not stopped twice.
    let again = executor(shared).execute(&req).await;
    let ops = recorded_operations(&moto.endpoint);
    drop(recording);
    assert_eq!(first.outcome, ExecOutcome::Succeeded, "{first:?}");
    assert_eq!(again.outcome, ExecOutcome::Succeeded, "{again:?}");
    assert!(
        again
            .note
            .as_deref()
            .unwrap_or("")
            .contains("earlier attempt"),
        "{again:?}"
    );
    assert_eq!(count(&ops, "StopInstances"), 1, "{ops:?}");
    assert_eq!(count(&ops, "StartInstances"), 1, "{ops:?}");
    assert_eq!(count(&ops, "CreateTags"), 1, "{ops:?}");
    // Same id, running again, its Elastic IP kept.
    let i = instance(c, &o.id).await;
    assert_eq!(state(&i), "running");
    let token = req.token();
    assert!(
        i.tags()
            .iter()
            .any(|t| t.key() == Some(RECOVERY_TAG) && t.value() == Some(token.as_str())),
        "{:?}",
        i.tags()
    );
    let addresses = c
        .describe_addresses()
        .allocation_ids(&o.allocation)
        .send()
        .await
        .expect("describe_addresses");
    assert_eq!(
        addresses.addresses()[0].instance_id(),
        Some(o.id.as_str()),
        "the Elastic IP stays on the recovered instance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_instance_of_an_instance_a_human_stopped_is_superseded() {
    let Some(w) =
        World::start("recover_instance_of_an_instance_a_human_stopped_is_superseded").await
    else {
        return;
    };
    let (moto, shared, c, o, req) = (&w.moto, &w.shared, &w.c, &w.o, w.step());
    c.stop_instances()
        .instance_ids(&o.id)
        .send()
        .await
        .expect("stop");
    let recording = start_recording(&moto.endpoint).await;
    let e = executor(shared).execute(&req).await;
    let ops = recorded_operations(&moto.endpoint);
    drop(recording);
    assert!(matches!(e.outcome, ExecOutcome::Superseded { .. }), "{e:?}");
    assert_eq!(ops, ["DescribeInstances"]);
    assert_eq!(state(&instance(c, &o.id).await), "stopped");
}
