//! The worker's own rules, on a real store and a real policy: the kill
//! switch re-read before each call, a step interrupted by a dead host not
//! repeated unless its executor can tell what the attempt did, a failed step
//! stopping the rest and escalating with a notification, a stopping host
//! handing the incident back. The executor here counts calls instead of
//! making them: what is under test is the host's bookkeeping, not AWS (the
//! AWS side is `live.rs`, on moto).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::Utc;
use healer::actions::{ExecOutcome, Execution, Executor, Executors, PlannedCall, StepRequest};
use healer::aws::AwsErrorClass;
use healer::decision::ActionKind;
use healer::incident::Incident;
use healer::pipeline::{Pipeline, Recorded, WorkOptions, Worker};
use healer::policy::PolicyContext;
use healer::safety::{GovernorConfig, KILL_SWITCH_KEY};
use healer::store::{IncidentRecord, LifecycleState, Outcome, StepRecord, Store};
use healer::verify::SignalOnly;

use crate::support::Ec2World;

/// Counts calls per kind; fails `replace-instance` when told to.
#[derive(Default)]
struct Counting {
    calls: Arc<BTreeMap<ActionKind, AtomicUsize>>,
    fail: bool,
    resumable: bool,
}

impl Counting {
    fn new(fail: bool, resumable: bool) -> Self {
        let calls = [
            ActionKind::RebootInstance,
            ActionKind::ReplaceInstance,
            ActionKind::Notify,
            ActionKind::Escalate,
        ]
        .into_iter()
        .map(|k| (k, AtomicUsize::new(0)))
        .collect();
        Counting {
            calls: Arc::new(calls),
            fail,
            resumable,
        }
    }

    fn count(&self, kind: ActionKind) -> usize {
        self.calls
            .get(&kind)
            .map_or(0, |c| c.load(Ordering::SeqCst))
    }
}

#[async_trait]
impl Executor for Counting {
    fn handles(&self, kind: ActionKind) -> bool {
        self.calls.contains_key(&kind)
    }
    fn plan(&self, req: &StepRequest<'_>) -> Vec<PlannedCall> {
        vec![PlannedCall {
            operation: format!("test:{}", req.action.kind()),
            params: serde_json::json!({}),
        }]
    }
    async fn execute(&self, req: &StepRequest<'_>) -> Execution {
        let kind = req.action.kind();
        if let Some(c) = self.calls.get(&kind) {
            c.fetch_add(1, Ordering::SeqCst);
        }
        let calls = self.plan(req);
        if self.fail && kind == ActionKind::ReplaceInstance {
            return Execution::failed(calls, AwsErrorClass::Permanent, "RunInstances failed");
        }
        Execution {
            outcome: ExecOutcome::Succeeded,
            calls,
            request_ids: vec!["req-1".into()],
            created: Vec::new(),
            note: Some(format!("did {kind}")),
            command: None,
        }
    }
    fn resumable(&self, _kind: ActionKind) -> bool {
        self.resumable
    }
}

/// The ec2-replace world, decided live.
type World = Ec2World;

impl World {
    async fn live() -> World {
        Ec2World::new(GovernorConfig {
            dry_run: false,
            ..GovernorConfig::default()
        })
        .await
    }

    /// An impaired, opted-in instance decided live: `acting`.
    /// An incident decided `acting`, its plan a replacement (`strategy =
    /// replace`: these tests are about the worker, not the ladder).
    async fn acting(&self) -> IncidentRecord {
        let mut ctx = PolicyContext::default();
        ctx.config.insert("strategy".into(), "replace".into());
        self.acting_in("{}", &ctx).await
    }

    /// `acting` for an incident with `detail` (a JSON object).
    async fn acting_with(&self, detail: &str) -> IncidentRecord {
        self.acting_in(detail, &PolicyContext::default()).await
    }

    async fn acting_in(&self, detail: &str, ctx: &PolicyContext) -> IncidentRecord {
        let incident = Incident::from_json(
            format!(
                r#"{{"kind":"instance-impaired","resource":{{"kind":"ec2-instance","id":"i-0abc"}},"detail":{detail},"detected-at":"{}"}}"#,
                Utc::now().to_rfc3339()
            )
            .as_bytes(),
        )
        .expect("incident");
        let (_, recorded) = self
            .pipeline()
            .on_incident(&incident, ctx, Utc::now())
            .await
            .expect("decided");
        let Recorded::New(r) = recorded else {
            panic!("{recorded:?}");
        };
        assert_eq!(r.state, LifecycleState::Acting, "{r:#?}");
        *r
    }
}

static NO_CONTEXT: std::sync::LazyLock<PolicyContext> =
    std::sync::LazyLock::new(PolicyContext::default);

fn worker<'a>(pipeline: &'a Pipeline<'a>, executors: &'a Executors) -> Worker<'a> {
    Worker {
        pipeline,
        executors,
        verifier: &SignalOnly,
        context: &NO_CONTEXT,
        options: WorkOptions::default(),
        on_step: None,
        stopping: None,
    }
}

/// Drives `r` once; the lease must be free.
async fn drive(worker: &Worker<'_>, r: &IncidentRecord) -> IncidentRecord {
    worker
        .drive(&r.incident.id)
        .await
        .expect("driven")
        .expect("lease")
}

/// Whether the record's note says `what`.
fn noted(r: &IncidentRecord, what: &str) -> bool {
    r.note.as_deref().is_some_and(|n| n.contains(what))
}

fn executors(counting: &Counting) -> Executors {
    Executors::new().with(Counting {
        calls: counting.calls.clone(),
        fail: counting.fail,
        resumable: counting.resumable,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_run_in_order_recorded_with_their_requests_then_verifying() {
    let w = World::live().await;
    let r = w.acting().await;
    let counting = Counting::new(false, false);
    let ex = executors(&counting);
    let pipeline = w.pipeline();
    let done = drive(&worker(&pipeline, &ex), &r).await;
    assert_eq!(done.state, LifecycleState::Verifying, "{done:#?}");
    assert_eq!(counting.count(ActionKind::ReplaceInstance), 1);
    assert_eq!(counting.count(ActionKind::Notify), 1);
    let kinds: Vec<_> = done
        .steps
        .iter()
        .map(|s| (s.action.kind(), s.result.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (ActionKind::ReplaceInstance, Outcome::Succeeded),
            (ActionKind::Notify, Outcome::Succeeded)
        ]
    );
    assert_eq!(done.steps[0].request_ids, ["req-1"]);
    assert_eq!(done.steps[0].calls[0].operation, "test:replace-instance");
    assert!(done.steps.iter().all(|s| s.ended_at >= Some(s.started_at)));
    // Driving again does nothing more: every step has ended.
    worker(&pipeline, &ex)
        .drive(&r.incident.id)
        .await
        .expect("driven");
    assert_eq!(counting.count(ActionKind::ReplaceInstance), 1);
}

/// The decision that leaves an incident acting keeps its lease and hands it
/// to the worker with the record it wrote: no other host can take the
/// incident in between, the worker drives it without a claim or a read, and
/// the lease is free once it is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_hands_its_lease_and_record_to_the_worker() {
    let w = World::live().await;
    let incident = Incident::from_json(
        format!(
            r#"{{"kind":"instance-impaired","resource":{{"kind":"ec2-instance","id":"i-0abc"}},"detected-at":"{}"}}"#,
            Utc::now().to_rfc3339()
        )
        .as_bytes(),
    )
    .expect("incident");
    let mut ctx = PolicyContext::default();
    ctx.config.insert("strategy".into(), "replace".into());
    let pipeline = w.pipeline();
    let (_, recorded, lease) = pipeline
        .on_incident_leased(&incident, &ctx, Utc::now())
        .await
        .expect("decided");
    let Recorded::New(r) = recorded else {
        panic!("{recorded:?}");
    };
    let lease = lease.expect("an acting incident keeps its lease");
    let ttl = std::time::Duration::from_secs(30);
    let id = &r.incident.id;
    assert!(
        !w.store
            .claim(id, "other-host", ttl, Utc::now())
            .await
            .expect("claim"),
        "held until handed on"
    );
    let counting = Counting::new(false, false);
    let ex = executors(&counting);
    let done = worker(&pipeline, &ex)
        .drive_handed(lease, *r.clone())
        .await
        .expect("driven")
        .expect("lease in hand");
    assert_eq!(done.state, LifecycleState::Verifying, "{done:#?}");
    assert_eq!(counting.count(ActionKind::ReplaceInstance), 1);
    assert!(
        w.store
            .claim(id, "other-host", ttl, Utc::now())
            .await
            .expect("claim"),
        "released once driven"
    );
}

/// `on_incident` (and `handle`) keep no lease: the incident is free for the
/// workers' sweep at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_not_handed_on_releases_its_lease() {
    let w = World::live().await;
    let r = w.acting().await;
    assert!(
        w.store
            .claim(
                &r.incident.id,
                "other-host",
                std::time::Duration::from_secs(30),
                Utc::now()
            )
            .await
            .expect("claim")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_is_reread_right_before_each_call() {
    let w = World::live().await;
    let r = w.acting().await;
    // Turned on after the decision, before acting.
    let (_, version) = w.store.governor_get(KILL_SWITCH_KEY).await.expect("get");
    assert!(
        w.store
            .governor_cas(KILL_SWITCH_KEY, "on", version)
            .await
            .expect("cas")
    );
    let counting = Counting::new(false, false);
    let ex = executors(&counting);
    let pipeline = w.pipeline();
    let done = drive(&worker(&pipeline, &ex), &r).await;
    assert_eq!(done.state, LifecycleState::Escalated);
    assert!(noted(&done, "kill switch"), "{:?}", done.note);
    assert_eq!(counting.count(ActionKind::ReplaceInstance), 0);
    assert_eq!(counting.count(ActionKind::Notify), 0);
    // The escalation still reaches humans.
    assert_eq!(counting.count(ActionKind::Escalate), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_stops_the_rest_and_escalates_with_a_notification() {
    let w = World::live().await;
    let r = w.acting().await;
    let counting = Counting::new(true, false);
    let ex = executors(&counting);
    let pipeline = w.pipeline();
    let done = drive(&worker(&pipeline, &ex), &r).await;
    assert_eq!(done.state, LifecycleState::Escalated);
    assert!(noted(&done, "RunInstances failed"), "{:?}", done.note);
    assert_eq!(counting.count(ActionKind::Notify), 0, "the rest is not run");
    assert_eq!(counting.count(ActionKind::Escalate), 1);
    let escalation = done.steps.last().expect("escalation step");
    assert_eq!(escalation.action.kind(), ActionKind::Escalate);
    let healer::decision::Action::Escalate { message } = &escalation.action else {
        panic!("{escalation:?}");
    };
    assert!(message.contains("replace-instance: failed"), "{message}");
}

/// A host died after recording a step as started: a step whose executor
/// cannot tell what the attempt did is not sent again; one that can is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_started_by_a_dead_host_is_repeated_only_when_resumable() {
    for resumable in [false, true] {
        let w = World::live().await;
        let r = w.acting().await;
        let action = match &r.provenance.as_ref().expect("decided").decision {
            Ok(d) => d.steps[0].action.clone(),
            Err(e) => panic!("{e}"),
        };
        w.store
            .record_step(&r, StepRecord::started(0, action, Utc::now()))
            .await
            .expect("started");
        let counting = Counting::new(false, resumable);
        let ex = executors(&counting);
        let pipeline = w.pipeline();
        let done = drive(&worker(&pipeline, &ex), &r).await;
        assert_eq!(done.state, LifecycleState::Verifying, "{done:#?}");
        if resumable {
            assert_eq!(counting.count(ActionKind::ReplaceInstance), 1);
            assert_eq!(done.steps[0].result, Outcome::Succeeded);
        } else {
            assert_eq!(counting.count(ActionKind::ReplaceInstance), 0);
            assert_eq!(done.steps[0].result, Outcome::Interrupted);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_host_hands_the_incident_back_and_another_continues() {
    let w = World::live().await;
    let r = w.acting().await;
    let counting = Counting::new(false, false);
    let ex = executors(&counting);
    let pipeline = w.pipeline();
    let stopping = AtomicBool::new(true);
    let mut stopped = worker(&pipeline, &ex);
    stopped.stopping = Some(&stopping);
    let left = stopped
        .drive(&r.incident.id)
        .await
        .expect("driven")
        .expect("lease");
    assert_eq!(left.state, LifecycleState::Acting);
    assert_eq!(counting.count(ActionKind::ReplaceInstance), 0);
    // The lease was released: another worker takes it at once.
    let pending = worker(&pipeline, &ex).pending().await.expect("pending");
    assert_eq!(pending, std::slice::from_ref(&r.incident.id));
    let done = worker(&pipeline, &ex)
        .drive(&r.incident.id)
        .await
        .expect("driven")
        .expect("the lease is free");
    assert_eq!(done.state, LifecycleState::Verifying);
    assert_eq!(counting.count(ActionKind::ReplaceInstance), 1);
}

/// Still impaired, whatever is done.
struct StillImpaired;

#[async_trait]
impl healer::verify::Verifier for StillImpaired {
    async fn check(&self, _record: &IncidentRecord) -> healer::verify::Check {
        healer::verify::Check::NotYet("i-0abc running, instance status impaired".into())
    }
}

/// Moves the incident's verify deadline into the past.
async fn deadline_passes(store: &dyn Store, id: &healer::IncidentId) {
    store
        .update(id, &|r| {
            let back = Utc::now() - chrono::Duration::hours(1);
            r.timestamps.insert(LifecycleState::Verifying, back);
            Ok(())
        })
        .await
        .expect("update");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_verification_asks_the_policy_again_and_it_climbs_the_ladder() {
    let w = World::live().await;
    let r = w
        .acting_with(r#"{"metric":"StatusCheckFailed_Instance"}"#)
        .await;
    let counting = Counting::new(false, false);
    let ex = executors(&counting);
    let pipeline = w.pipeline();
    let still = StillImpaired;
    let worker = Worker {
        verifier: &still,
        ..worker(&pipeline, &ex)
    };
    // Rung 1: reboot; verifying, the deadline not passed yet.
    let done = drive(&worker, &r).await;
    assert_eq!(done.state, LifecycleState::Verifying, "{done:#?}");
    assert_eq!(counting.count(ActionKind::RebootInstance), 1);
    assert_eq!(counting.count(ActionKind::ReplaceInstance), 0);
    // Still impaired past the deadline: asked again, the policy replaces.
    deadline_passes(w.store.as_ref(), &r.incident.id).await;
    let done = drive(&worker, &r).await;
    assert_eq!(done.state, LifecycleState::Verifying, "{done:#?}");
    assert_eq!(counting.count(ActionKind::ReplaceInstance), 1);
    assert_eq!(
        counting.count(ActionKind::RebootInstance),
        1,
        "no second reboot"
    );
    assert_eq!(done.rounds.len(), 1);
    assert!(
        done.rounds[0].verify_seen.contains("impaired"),
        "{:?}",
        done.rounds[0]
    );
    // Round 2's steps are indexed past round 1's (2 steps and its escalation slot).
    assert_eq!(done.step_base, 3);
    let indexes: Vec<usize> = done.steps.iter().map(|s| s.index).collect();
    assert_eq!(indexes, [3, 4]);
    // Still impaired after the replacement: nothing more; escalated.
    deadline_passes(w.store.as_ref(), &r.incident.id).await;
    let done = drive(&worker, &r).await;
    assert_eq!(done.state, LifecycleState::Escalated, "{done:#?}");
    assert!(noted(&done, "proposes nothing more"), "{:?}", done.note);
    assert_eq!(counting.count(ActionKind::Escalate), 1);
    assert_eq!(counting.count(ActionKind::ReplaceInstance), 1);
}
