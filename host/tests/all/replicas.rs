//! Issue 11, limits that hold across replicas and nothing lost: two pipelines
//! on one store race a burst of incidents and never approve more than the
//! limits allow (SQLite, and DynamoDB on moto); a decision interrupted by a
//! store failure is resumed by the redelivery, not skipped as a duplicate; the
//! exact policy input is stored with every decision.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use healer::decision::ActionKind;
use healer::incident::{
    Incident, IncidentId, IncidentKind, IncidentParts, ResourceKind, ResourceRef,
};
use healer::pipeline::{Pipeline, PipelineError, Recorded};
use healer::policy::{PolicyContext, PolicyInput, PolicyRegistry, PolicyRole};
use healer::safety::{Governor, GovernorConfig, ResourceFacts, StaticFacts};
use healer::store::{
    ActionRecord, DecisionState, DynamoStore, DynamoTables, IncidentRecord, LifecycleState,
    ListFilter, Page, Reservation, ResourceConfigRecord, Scope, SlotClaim, SqliteStore, Store,
    StoreError,
};
use healer_test_artifacts as artifacts;

const SERVICE: &str = "arn:aws:ecs:us-east-1:1:service/prod/race";

fn t0() -> DateTime<Utc> {
    Utc.timestamp_opt(1_714_557_600, 0).single().expect("valid")
}

fn crash(n: usize) -> Incident {
    Incident::new(IncidentParts {
        kind: IncidentKind::TaskCrashed,
        source: "test".into(),
        resource: ResourceRef::new(
            ResourceKind::EcsTask,
            format!("arn:aws:ecs:us-east-1:1:task/prod/{n:032}"),
        ),
        group: Some(ResourceRef::new(ResourceKind::EcsService, SERVICE)),
        reason: "Essential container in task exited".into(),
        detail: BTreeMap::new(),
        detected_at: t0(),
        dedupe_key: format!("race-{n}"),
    })
}

fn registry() -> PolicyRegistry {
    let registry = PolicyRegistry::new(crate::support::engine());
    registry
        .swap(
            &artifacts::bytes(artifacts::ECS_TASK_RESTART),
            PolicyRole::Active,
        )
        .expect("policy");
    registry
}

fn six_tasks() -> StaticFacts {
    StaticFacts(BTreeMap::from([(
        SERVICE.to_owned(),
        ResourceFacts {
            group_size: Some(6),
            ..ResourceFacts::default()
        },
    )]))
}

/// The mutating steps one decision got approved: (kind, target).
async fn decide(pipeline: Pipeline<'static>, inc: Incident) -> Vec<(ActionKind, String)> {
    // `redeploy-after` high: each crash asks for a restart of its own task
    // (with the default, a burst asks for a group-wide redeploy instead).
    let mut context = PolicyContext::default();
    context
        .config
        .insert("redeploy-after".into(), "1000".into());
    context
        .config
        .insert("restart-mode".into(), "stop-task".into());
    let (plan, _) = pipeline
        .on_incident(&inc, &context, t0() + chrono::Duration::seconds(1))
        .await
        .expect("recorded");
    plan.iter()
        .flat_map(|p| p.judgement.iter().flat_map(|j| &j.verdicts))
        .filter(|v| v.verdict.is_approved() && v.action.is_mutating())
        .map(|v| (v.action, v.target.clone().unwrap_or_default()))
        .collect()
}

/// 50 crashes of one 6-task service, every one at once, alternately through
/// each replica: 34% of 6 admits 2 members under action, and 2 in flight per
/// group. (The shared parts are leaked so the decisions can run as tasks.)
async fn burst(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let registry: &'static PolicyRegistry = Box::leak(Box::new(registry()));
    let governor: &'static Governor = Box::leak(Box::new(Governor::new(GovernorConfig::default())));
    let facts: &'static StaticFacts = Box::leak(Box::new(six_tasks()));
    let a: &'static Arc<dyn Store> = Box::leak(Box::new(a));
    let b: &'static Arc<dyn Store> = Box::leak(Box::new(b));
    let stores: [&'static dyn Store; 2] = [a.as_ref(), b.as_ref()];
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..50 {
        let pipeline = Pipeline {
            store: stores[n % 2],
            registry,
            governor,
            facts,
        };
        tasks.spawn(decide(pipeline, crash(n)));
    }
    let mut approved: Vec<(ActionKind, String)> = Vec::new();
    while let Some(done) = tasks.join_next().await {
        approved.extend(done.expect("decision task"));
    }
    let members: BTreeSet<&String> = approved.iter().map(|(_, t)| t).collect();
    assert!(!approved.is_empty(), "the first restarts are approved");
    assert!(
        approved.iter().all(|(k, _)| *k == ActionKind::RestartTask),
        "{approved:?}"
    );
    assert!(
        members.len() <= 2,
        "{} members under action, the blast radius admits 2: {approved:?}",
        members.len()
    );
    assert!(
        approved.len() <= 2,
        "{} restarts approved, 2 may be in flight in one group: {approved:?}",
        approved.len()
    );
    // Every incident is recorded once, whichever replica took it.
    let all = a
        .incidents_of(&Scope::Group(SERVICE.into()))
        .await
        .expect("incidents");
    assert_eq!(all.len(), 50);
    assert!(all.iter().all(|r| r.state != LifecycleState::Detected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_sqlite_never_approve_past_the_blast_radius() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("healer.db");
    let a = SqliteStore::open(&path).await.expect("open");
    let b = SqliteStore::open(&path).await.expect("open again");
    burst(Arc::new(a), Arc::new(b)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_dynamodb_never_approve_past_the_blast_radius() {
    let Some(moto) = crate::moto::start_serial("two_replicas_on_dynamodb") else {
        return;
    };
    let tables = DynamoTables::with_prefix("replicas");
    let a = DynamoStore::new(crate::moto::dynamodb(&moto).await, tables.clone());
    a.init().await.expect("init");
    let b = DynamoStore::new(crate::moto::dynamodb(&moto).await, tables);
    burst(Arc::new(a), Arc::new(b)).await;
}

/// A store that fails the next `failures` conditional writes after an
/// incident exists (the decision's record), then behaves: a fault injected at
/// our own seam, in front of the real SQLite store.
struct Flaky {
    inner: SqliteStore,
    failures: AtomicUsize,
}

#[async_trait]
impl Store for Flaky {
    async fn init(&self) -> Result<(), StoreError> {
        self.inner.init().await
    }
    async fn insert_if_absent(
        &self,
        record: &IncidentRecord,
    ) -> Result<Option<IncidentRecord>, StoreError> {
        self.inner.insert_if_absent(record).await
    }
    async fn get(&self, id: &IncidentId) -> Result<Option<IncidentRecord>, StoreError> {
        self.inner.get(id).await
    }
    async fn compare_and_put(
        &self,
        record: &IncidentRecord,
        expected_version: u64,
    ) -> Result<bool, StoreError> {
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(StoreError::Invalid("injected store failure".into()));
        }
        self.inner.compare_and_put(record, expected_version).await
    }
    async fn put_action(&self, action: &ActionRecord) -> Result<(), StoreError> {
        self.inner.put_action(action).await
    }
    async fn actions_since(
        &self,
        scope: &Scope,
        since: DateTime<Utc>,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        self.inner.actions_since(scope, since).await
    }
    async fn incidents_of(&self, scope: &Scope) -> Result<Vec<IncidentRecord>, StoreError> {
        self.inner.incidents_of(scope).await
    }
    async fn list(
        &self,
        filter: &ListFilter,
        page_token: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.inner.list(filter, page_token, limit).await
    }
    async fn claim(
        &self,
        id: &IncidentId,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.claim(id, owner, ttl, now).await
    }
    async fn release(&self, id: &IncidentId, owner: &str) -> Result<(), StoreError> {
        self.inner.release(id, owner).await
    }
    async fn put_resource_config(&self, config: &ResourceConfigRecord) -> Result<(), StoreError> {
        self.inner.put_resource_config(config).await
    }
    async fn resource_configs(&self) -> Result<Vec<ResourceConfigRecord>, StoreError> {
        self.inner.resource_configs().await
    }
    async fn governor_get(&self, key: &str) -> Result<(Option<String>, u64), StoreError> {
        self.inner.governor_get(key).await
    }
    async fn governor_cas(
        &self,
        key: &str,
        value: &str,
        expected_version: u64,
    ) -> Result<bool, StoreError> {
        self.inner.governor_cas(key, value, expected_version).await
    }
    async fn put_policy_version(
        &self,
        name: &str,
        version: &str,
        sha256: &str,
        uploaded_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner
            .put_policy_version(name, version, sha256, uploaded_at)
            .await
    }
    async fn policy_versions(
        &self,
    ) -> Result<Vec<(String, String, String, DateTime<Utc>)>, StoreError> {
        self.inner.policy_versions().await
    }
    async fn put_policy_input(&self, hash: &str, input: &str) -> Result<(), StoreError> {
        self.inner.put_policy_input(hash, input).await
    }
    async fn add_aggregate(
        &self,
        by: healer::store::GroupBy,
        day: chrono::NaiveDate,
        key: &str,
        closed: healer::store::aggregates::Closed,
    ) -> Result<(), StoreError> {
        self.inner.add_aggregate(by, day, key, closed).await
    }
    async fn aggregates(
        &self,
        by: healer::store::GroupBy,
        from: chrono::NaiveDate,
    ) -> Result<
        Vec<(
            chrono::NaiveDate,
            String,
            healer::store::aggregates::AggCell,
        )>,
        StoreError,
    > {
        self.inner.aggregates(by, from).await
    }
    async fn policy_input(&self, hash: &str) -> Result<Option<String>, StoreError> {
        self.inner.policy_input(hash).await
    }
    async fn reserve(
        &self,
        claims: &[SlotClaim],
        now: DateTime<Utc>,
    ) -> Result<Reservation, StoreError> {
        self.inner.reserve(claims, now).await
    }
    async fn decision_state(
        &self,
        resource: &str,
        group: Option<&str>,
        kill_switch_key: &str,
        since: DateTime<Utc>,
    ) -> Result<DecisionState, StoreError> {
        self.inner
            .decision_state(resource, group, kill_switch_key, since)
            .await
    }
}

/// The store fails after the incident is created; the redelivered signal
/// finds it still `detected` and decides it (it used to be skipped as a
/// duplicate and never decided). The decision's exact input is stored under
/// its provenance hash and reads back as the input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_interrupted_by_the_store_is_resumed_by_the_redelivery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Flaky {
        inner: SqliteStore::open(&dir.path().join("healer.db"))
            .await
            .expect("open"),
        failures: AtomicUsize::new(1),
    };
    let registry = registry();
    let governor = Governor::new(GovernorConfig::default());
    let facts = six_tasks();
    let pipeline = Pipeline {
        store: &store,
        registry: &registry,
        governor: &governor,
        facts: &facts,
    };
    let inc = crash(1);
    let now = t0() + chrono::Duration::seconds(1);
    let first = pipeline
        .on_incident(&inc, &PolicyContext::default(), now)
        .await;
    assert!(matches!(first, Err(PipelineError::Store(_))), "{first:?}");
    let stored = store.get(&inc.id).await.expect("get").expect("created");
    assert_eq!(stored.state, LifecycleState::Detected);

    let (plan, recorded) = pipeline
        .on_incident(&inc, &PolicyContext::default(), now)
        .await
        .expect("redelivery");
    let Recorded::Resumed(record) = recorded else {
        panic!("not resumed: {recorded:?}");
    };
    assert_ne!(record.state, LifecycleState::Detected);
    // A third delivery is a duplicate of a decided incident.
    let (_, third) = pipeline
        .on_incident(&inc, &PolicyContext::default(), now)
        .await
        .expect("third");
    assert!(matches!(third, Recorded::Duplicate(_)));

    let provenance = record.provenance.expect("provenance");
    let json = store
        .policy_input(&provenance.input_hash)
        .await
        .expect("read")
        .expect("the input is stored under its hash");
    let input: PolicyInput = serde_json::from_str(&json).expect("a policy input");
    assert_eq!(input.incident.id, inc.id);
    assert_eq!(input.hash(), provenance.input_hash);
    assert_eq!(plan.expect("plan").input, input);
}

/// A policy host error (here: the instance pool is exhausted, one slot and
/// two decisions at once) is transient: that incident is not escalated, it
/// stays `detected`, and its redelivery decides it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_host_error_is_retried_not_escalated() {
    use healer::policy::{PolicyEngine, PolicyLimits};
    let dir = tempfile::tempdir().expect("tempdir");
    let store: &'static SqliteStore = Box::leak(Box::new(
        SqliteStore::open(&dir.path().join("healer.db"))
            .await
            .expect("open"),
    ));
    // One instance slot; each hostile `loop` decision holds it for its whole
    // 1 s deadline, so two decisions at once overlap.
    let limits = PolicyLimits {
        max_concurrent: 1,
        fuel: u64::MAX / 4,
        deadline_ms: 1000,
        ..PolicyLimits::default()
    };
    let registry = PolicyRegistry::new(PolicyEngine::new(limits, None).expect("engine"));
    registry
        .swap(&artifacts::bytes(artifacts::HOSTILE), PolicyRole::Active)
        .expect("hostile");
    let registry: &'static PolicyRegistry = Box::leak(Box::new(registry));
    let governor: &'static Governor = Box::leak(Box::new(Governor::new(GovernorConfig::default())));
    let facts: &'static StaticFacts = Box::leak(Box::new(StaticFacts::default()));
    let pipeline = Pipeline {
        store,
        registry,
        governor,
        facts,
    };
    let loops: Vec<Incident> = ["loop-a", "loop-b"]
        .iter()
        .map(|id| {
            Incident::new(IncidentParts {
                kind: IncidentKind::Alarm,
                source: "test".into(),
                resource: ResourceRef::new(
                    ResourceKind::Alarm,
                    format!("arn:aws:cloudwatch:us-east-1:1:alarm:{id}"),
                ),
                group: None,
                reason: "loop".into(),
                detail: BTreeMap::new(),
                detected_at: t0(),
                dedupe_key: (*id).to_owned(),
            })
        })
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for inc in loops.clone() {
        let pipeline = Pipeline { ..pipeline };
        tasks.spawn(async move {
            let r = pipeline
                .on_incident(&inc, &PolicyContext::default(), t0())
                .await;
            (inc, r)
        });
    }
    let mut transient = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (inc, r) = done.expect("task");
        match r {
            Err(PipelineError::PolicyHost(_)) => transient.push(inc),
            Ok((_, Recorded::New(rec))) => assert_eq!(rec.state, LifecycleState::Escalated),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(transient.len(), 1, "one decision found the pool full");
    let inc = &transient[0];
    let stored = store.get(&inc.id).await.expect("get").expect("created");
    assert_eq!(stored.state, LifecycleState::Detected, "not escalated");
    let (_, again) = pipeline
        .on_incident(inc, &PolicyContext::default(), t0())
        .await
        .expect("redelivery");
    assert!(matches!(again, Recorded::Resumed(_)), "{again:?}");
}
