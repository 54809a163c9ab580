//! One store test suite, run against SQLite (temp dir) and DynamoDB (moto).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use healer::decision::{Action, Decision};
use healer::incident::{Incident, IncidentKind, IncidentParts, ResourceKind, ResourceRef};
use healer::policy::PolicyId;
use healer::safety::VerdictKind;
use healer::store::{
    ActionRecord, DynamoStore, DynamoTables, GroupBy, LifecycleState, ListFilter, Outcome,
    Provenance, ResourceConfigRecord, ResourceSelector, Scope, SqliteStore, StepRecord, Store,
    StoreError, VerdictRecord,
};

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_714_557_600 + secs, 0)
        .single()
        .expect("valid")
}

fn incident(n: usize, kind: IncidentKind, detected: i64) -> Incident {
    let resource = format!("arn:aws:ecs:us-east-1:1:task/c/{n}");
    Incident::new(IncidentParts {
        kind,
        source: "test".into(),
        resource: ResourceRef::new(ResourceKind::EcsTask, resource.clone()),
        group: Some(ResourceRef::new(
            ResourceKind::EcsService,
            "arn:aws:ecs:us-east-1:1:service/c/api",
        )),
        reason: "test".into(),
        detail: Default::default(),
        detected_at: t(detected),
        dedupe_key: format!("{resource}#{n}"),
    })
}

fn provenance(policy: &str) -> Provenance {
    Provenance {
        policy: PolicyId {
            name: policy.into(),
            version: "1.0.0".into(),
            sha256: "ab".repeat(32),
        },
        input_hash: "cd".repeat(32),
        fuel_used: 20_000,
        duration_us: 40,
        decision: Ok(Decision {
            steps: vec![],
            verify: None,
            summary: "restart".into(),
        }),
    }
}

fn step(inc: &Incident, at: i64) -> StepRecord {
    let action = Action::RestartTask {
        cluster: "c".into(),
        task: inc.resource.id.clone(),
    };
    StepRecord {
        ended_at: Some(t(at + 1)),
        result: Outcome::Succeeded,
        ..StepRecord::started(0, action, t(at))
    }
}

/// Runs an incident through its whole life and heals it `mttr` seconds later.
async fn heal(store: &dyn Store, inc: &Incident, mttr: i64, policy: &str) {
    let d = inc.detected_at.timestamp() - t(0).timestamp();
    let (created, _) = store.create_incident(inc).await.expect("create");
    let verdicts = vec![VerdictRecord {
        step: 0,
        verdict: VerdictKind::Approved,
        rule: None,
        reason: "within limits".into(),
        target: None,
        group: None,
    }];
    store
        .record_decisions(
            &created,
            provenance(policy),
            Vec::new(),
            verdicts,
            t(d + 1),
            None,
        )
        .await
        .expect("decided");
    let acting = store
        .transition(&inc.id, LifecycleState::Acting, t(d + 2), None)
        .await
        .expect("acting");
    store
        .record_step(&acting, step(inc, d + 2))
        .await
        .expect("step");
    store
        .transition(&inc.id, LifecycleState::Verifying, t(d + 3), None)
        .await
        .expect("verifying");
    store
        .transition(&inc.id, LifecycleState::Healed, t(d + mttr), None)
        .await
        .expect("healed");
}

async fn lifecycle(store: &dyn Store) {
    let inc = incident(1, IncidentKind::TaskCrashed, 0);
    heal(store, &inc, 90, "ecs-task-restart").await;
    let r = store.get(&inc.id).await.expect("get").expect("exists");
    assert_eq!(r.state, LifecycleState::Healed);
    assert_eq!(r.mttr_ms, Some(90_000));
    assert_eq!(r.timestamps.len(), 5, "{:?}", r.timestamps);
    assert_eq!(r.steps.len(), 1);
    assert_eq!(r.verdicts[0].reason, "within limits");
    let p = r.provenance.as_ref().expect("provenance");
    assert_eq!(p.policy.name, "ecs-task-restart");
    assert_eq!(p.fuel_used, 20_000);
    assert!(r.version >= 6);

    // Queries the governor needs.
    let actions = store
        .actions_since(&Scope::Resource(inc.resource.id.clone()), t(0))
        .await
        .expect("actions");
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].incident_id, inc.id.to_string());
    let group = Scope::Group("arn:aws:ecs:us-east-1:1:service/c/api".into());
    assert_eq!(
        store
            .actions_since(&group, t(0))
            .await
            .expect("actions")
            .len(),
        1
    );
    assert!(
        store
            .actions_since(&group, t(10))
            .await
            .expect("actions")
            .is_empty(),
        "window"
    );
    assert!(store.open_incidents(&group).await.expect("open").is_empty());

    let open = incident(2, IncidentKind::TaskCrashed, 5);
    store.create_incident(&open).await.expect("create");
    let by_resource = store
        .open_incidents(&Scope::Resource(open.resource.id.clone()))
        .await
        .expect("open");
    assert_eq!(by_resource.len(), 1);
    assert_eq!(store.open_incidents(&group).await.expect("open").len(), 1);
}

async fn illegal_transitions(store: &dyn Store) {
    let inc = incident(10, IncidentKind::TaskCrashed, 100);
    store.create_incident(&inc).await.expect("create");
    // Healed before detected.
    let err = store
        .transition(&inc.id, LifecycleState::Healed, t(50), None)
        .await
        .expect_err("before detection");
    assert!(err.to_string().contains("before its detection"), "{err}");
    // Acting without a decision.
    let err = store
        .transition(&inc.id, LifecycleState::Acting, t(101), None)
        .await
        .expect_err("not decided");
    assert!(matches!(err, StoreError::IllegalTransition { .. }), "{err}");
    // Acting on a denied incident.
    store
        .transition(
            &inc.id,
            LifecycleState::Denied,
            t(101),
            Some("blast radius".into()),
        )
        .await
        .expect("denied");
    let err = store
        .transition(&inc.id, LifecycleState::Acting, t(102), None)
        .await
        .expect_err("denied is final");
    assert!(err.to_string().contains("denied → acting"), "{err}");
    let denied = store.get(&inc.id).await.expect("get").expect("exists");
    let err = store
        .record_step(&denied, step(&inc, 102))
        .await
        .expect_err("no steps on denied");
    assert!(matches!(err, StoreError::IllegalTransition { .. }));
    let r = store.get(&inc.id).await.expect("get").expect("exists");
    assert_eq!(r.note.as_deref(), Some("blast radius"));
    let missing = incident(11, IncidentKind::TaskCrashed, 0);
    assert!(matches!(
        store
            .transition(&missing.id, LifecycleState::Decided, t(1), None)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

async fn idempotent_create(store: Arc<dyn Store>) {
    let inc = incident(20, IncidentKind::TaskHealthCheckFailed, 200);
    let (a, b) = tokio::join!(
        {
            let (s, i) = (store.clone(), inc.clone());
            tokio::spawn(async move { s.create_incident(&i).await })
        },
        {
            let (s, i) = (store.clone(), inc.clone());
            tokio::spawn(async move { s.create_incident(&i).await })
        }
    );
    let (ra, created_a) = a.expect("task").expect("create");
    let (rb, created_b) = b.expect("task").expect("create");
    assert!(created_a ^ created_b, "exactly one writer creates");
    assert_eq!(ra.incident.id, rb.incident.id);
    let (_, again) = store.create_incident(&inc).await.expect("redelivery");
    assert!(!again);
    let all = store
        .incidents_of(&Scope::Resource(inc.resource.id.clone()))
        .await
        .expect("query");
    assert_eq!(all.len(), 1, "one incident");
}

async fn leases(store: &dyn Store) {
    let inc = incident(30, IncidentKind::TaskCrashed, 300);
    store.create_incident(&inc).await.expect("create");
    let ttl = Duration::from_secs(30);
    assert!(
        store
            .claim(&inc.id, "replica-a", ttl, t(300))
            .await
            .expect("claim")
    );
    assert!(
        !store
            .claim(&inc.id, "replica-b", ttl, t(310))
            .await
            .expect("claim"),
        "held"
    );
    assert!(
        store
            .claim(&inc.id, "replica-a", ttl, t(310))
            .await
            .expect("renew")
    );
    // Expired (renewed until 340): b takes over, a cannot.
    assert!(
        store
            .claim(&inc.id, "replica-b", ttl, t(341))
            .await
            .expect("takeover")
    );
    assert!(
        !store
            .claim(&inc.id, "replica-a", ttl, t(342))
            .await
            .expect("lost")
    );
    store.release(&inc.id, "replica-b").await.expect("release");
    assert!(
        store
            .claim(&inc.id, "replica-a", ttl, t(343))
            .await
            .expect("free again")
    );
    let missing = incident(31, IncidentKind::TaskCrashed, 0);
    assert!(
        !store
            .claim(&missing.id, "a", ttl, t(0))
            .await
            .expect("no incident, no lease")
    );
}

async fn stats_and_pagination(store: &dyn Store) {
    // Known data: task-crashed MTTRs 10, 20, 30, 40, 100 s (by policy p1);
    // one open function-errors incident (policy none).
    for (i, mttr) in [10, 20, 30, 40, 100].into_iter().enumerate() {
        let inc = incident(100 + i, IncidentKind::TaskCrashed, 1_000 + i as i64 * 10);
        heal(store, &inc, mttr, "p1").await;
    }
    store
        .create_incident(&incident(200, IncidentKind::FunctionErrors, 2_000))
        .await
        .expect("create");
    let stats = store
        .stats(GroupBy::Kind, Some(t(1_000)))
        .await
        .expect("stats");
    let crashed = stats
        .rows
        .iter()
        .find(|r| r.key == "task-crashed")
        .expect("row");
    assert_eq!(crashed.count, 5);
    assert_eq!(crashed.healed, 5);
    assert_eq!(crashed.mttr_mean_ms, Some(40_000.0));
    assert_eq!(crashed.mttr_p50_ms, Some(30_000));

    // The aggregates kept as incidents close give the same figures as a
    // scan of the same whole day, with percentiles off a histogram.
    let midnight = t(0)
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    for by in [
        GroupBy::Kind,
        GroupBy::Policy,
        GroupBy::Action,
        GroupBy::Healer,
    ] {
        let exact = store.stats(by, Some(midnight)).await.expect("stats");
        let kept = store
            .stats_aggregated(by, midnight)
            .await
            .expect("aggregated");
        assert_eq!(
            exact
                .rows
                .iter()
                .map(|r| (&r.key, r.count, r.healed, r.open))
                .collect::<Vec<_>>(),
            kept.rows
                .iter()
                .map(|r| (&r.key, r.count, r.healed, r.open))
                .collect::<Vec<_>>(),
            "{by:?}"
        );
        for (e, k) in exact.rows.iter().zip(&kept.rows) {
            assert_eq!(e.mttr_mean_ms, k.mttr_mean_ms, "{by:?} {}", e.key);
            if let (Some(e50), Some(k50)) = (e.mttr_p50_ms, k.mttr_p50_ms) {
                assert!(
                    k50 >= e50 && (k50 as f64) <= e50 as f64 * 1.19 + 1.0,
                    "{by:?} {e50} {k50}"
                );
            }
        }
    }
    assert_eq!(crashed.mttr_p90_ms, Some(100_000));
    assert_eq!(crashed.mttr_max_ms, Some(100_000));
    let errors = stats
        .rows
        .iter()
        .find(|r| r.key == "function-errors")
        .expect("row");
    assert_eq!(
        (errors.count, errors.open, errors.mttr_p50_ms),
        (1, 1, None)
    );
    let by_policy = store
        .stats(GroupBy::Policy, Some(t(1_000)))
        .await
        .expect("stats");
    assert_eq!(
        by_policy
            .rows
            .iter()
            .find(|r| r.key == "p1")
            .map(|r| r.count),
        Some(5)
    );
    let by_action = store
        .stats(GroupBy::Action, Some(t(1_000)))
        .await
        .expect("stats");
    assert_eq!(
        by_action
            .rows
            .iter()
            .find(|r| r.key == "restart-task")
            .map(|r| r.healed),
        Some(5)
    );

    // By healer: the five healed after a succeeded restart-task are healer's;
    // the open one without a step is not.
    let by_healer = store
        .stats(GroupBy::Healer, Some(t(1_000)))
        .await
        .expect("stats");
    let row = |key: &str| by_healer.rows.iter().find(|r| r.key == key).cloned();
    assert_eq!(
        row("healer-acted").map(|r| (r.count, r.healed)),
        Some((5, 5))
    );
    assert_eq!(
        row("without-healer").map(|r| (r.count, r.open)),
        Some((1, 1))
    );

    // An escalation is counted apart from the healed (the dashboard's
    // "escalated to humans").
    let escalated = incident(201, IncidentKind::InstanceImpaired, 2_000);
    store.create_incident(&escalated).await.expect("create");
    store
        .transition(&escalated.id, LifecycleState::Escalated, t(2_100), None)
        .await
        .expect("escalated");
    let cells = store
        .aggregates(GroupBy::Kind, midnight.date_naive())
        .await
        .expect("aggregates");
    let cell = |key: &str| {
        cells
            .iter()
            .filter(|(_, k, _)| k == key)
            .fold((0, 0, 0), |(c, h, e), (_, _, x)| {
                (c + x.closed, h + x.healed, e + x.escalated)
            })
    };
    assert_eq!(cell("instance-impaired"), (1, 0, 1));
    assert_eq!(cell("task-crashed").2, 0);

    // Pagination: 25 incidents, pages of 7, each seen exactly once.
    for i in 0..25 {
        store
            .create_incident(&incident(
                300 + i,
                IncidentKind::SpotInterruption,
                5_000 + i as i64,
            ))
            .await
            .expect("create");
    }
    let filter = ListFilter {
        kind: Some(IncidentKind::SpotInterruption),
        ..ListFilter::default()
    };
    let mut seen = Vec::new();
    let mut token = None;
    for _ in 0..100 {
        let page = store
            .list(&filter, token.as_deref(), 7)
            .await
            .expect("page");
        assert!(page.items.len() <= 7);
        seen.extend(page.items.into_iter().map(|r| r.incident.id));
        match page.next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let unique: std::collections::BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), 25);
    assert_eq!(unique.len(), 25);
    let open = ListFilter {
        open: true,
        since: Some(t(1_000)),
        ..ListFilter::default()
    };
    let mut open_count = 0;
    let mut token = None;
    loop {
        let page = store.list(&open, token.as_deref(), 50).await.expect("page");
        open_count += page.items.len();
        assert!(page.items.iter().all(|r| !r.state.is_terminal()));
        match page.next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(open_count, 26, "25 spot + 1 function-errors");
}

async fn config_governor_policies(store: &dyn Store) {
    store
        .put_resource_config(&ResourceConfigRecord {
            selector: ResourceSelector::Id("i-1".into()),
            skip_recovery: true,
            cooldown_minutes: Some(30),
            allowed_actions: Some(vec![healer::ActionKind::Notify]),
        })
        .await
        .expect("put");
    store
        .put_resource_config(&ResourceConfigRecord {
            selector: ResourceSelector::Tag {
                key: "team".into(),
                value: "web".into(),
            },
            skip_recovery: false,
            cooldown_minutes: Some(5),
            allowed_actions: None,
        })
        .await
        .expect("put");
    let configs = store.resource_configs().await.expect("configs");
    assert_eq!(configs.len(), 2);
    let tags = [("team".to_owned(), "web".to_owned())].into();
    let hit = ResourceConfigRecord::settings_for(&configs, "i-1", &tags).expect("id and tag match");
    assert!(hit.skip_recovery);
    assert_eq!(hit.cooldown_minutes, Some(30), "the longest of the matches");

    assert_eq!(
        store.governor_get("kill-switch").await.expect("get"),
        (None, 0)
    );
    assert!(
        store
            .governor_cas("kill-switch", "on", 0)
            .await
            .expect("cas")
    );
    assert!(
        !store
            .governor_cas("kill-switch", "off", 0)
            .await
            .expect("cas"),
        "already exists"
    );
    assert_eq!(
        store.governor_get("kill-switch").await.expect("get"),
        (Some("on".into()), 1)
    );
    assert!(
        store
            .governor_cas("kill-switch", "off", 1)
            .await
            .expect("cas")
    );
    assert!(
        !store
            .governor_cas("kill-switch", "on", 1)
            .await
            .expect("cas"),
        "stale version"
    );

    store
        .put_policy_version("p1", "1.0.0", "aa", t(1))
        .await
        .expect("put");
    store
        .put_policy_version("p1", "1.1.0", "bb", t(2))
        .await
        .expect("put");
    store
        .put_policy_version("p1", "1.1.0", "bb", t(2))
        .await
        .expect("idempotent");
    let versions = store.policy_versions().await.expect("versions");
    assert_eq!(
        versions.iter().map(|v| v.1.as_str()).collect::<Vec<_>>(),
        ["1.0.0", "1.1.0"]
    );
}

/// The governor's one read per decision: only the window's actions and the
/// window's incidents of the resource and its group, plus the kill switch.
async fn decision_state_reads_the_window(store: &dyn Store) {
    let at = |secs: i64| t(100_000 + secs);
    let incident = |n: i64, detected: i64| {
        Incident::new(IncidentParts {
            kind: IncidentKind::InstanceImpaired,
            source: "test".into(),
            resource: ResourceRef::new(ResourceKind::Ec2Instance, "i-window"),
            group: Some(ResourceRef::new(
                ResourceKind::AutoscalingGroup,
                "asg-window",
            )),
            reason: "test".into(),
            detail: Default::default(),
            detected_at: at(detected),
            dedupe_key: format!("i-window#{n}"),
        })
    };
    let (old, recent) = (incident(1, 0), incident(2, 7_200));
    store.create_incident(&old).await.expect("create");
    store.create_incident(&recent).await.expect("create");
    let action = |id: &Incident, step: usize, target: &str, started: i64| ActionRecord {
        incident_id: id.id.to_string(),
        step,
        kind: healer::ActionKind::RebootInstance,
        target: target.into(),
        group: Some("asg-window".into()),
        started_at: at(started),
        ended_at: None,
        result: Outcome::DryRun,
        created: Vec::new(),
    };
    store
        .put_action(&action(&old, 0, "i-window", 100))
        .await
        .expect("put");
    store
        .put_action(&action(&recent, 0, "i-window", 7_000))
        .await
        .expect("put");
    store
        .put_action(&action(&recent, 1, "i-other", 7_100))
        .await
        .expect("put");

    let state = store
        .decision_state("i-window", Some("asg-window"), "kill-switch", at(3_600))
        .await
        .expect("state");
    let ours: Vec<(&str, DateTime<Utc>)> = state
        .actions
        .iter()
        .filter(|a| a.group.as_deref() == Some("asg-window"))
        .map(|a| (a.target.as_str(), a.started_at))
        .collect();
    assert_eq!(ours, [("i-window", at(7_000)), ("i-other", at(7_100))]);
    assert!(state.actions.iter().all(|a| a.started_at >= at(3_600)));
    let ids = |records: &[healer::store::IncidentRecord]| {
        records
            .iter()
            .map(|r| r.incident.id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&state.incidents_resource),
        std::slice::from_ref(&recent.id)
    );
    assert_eq!(
        ids(&state.incidents_group),
        std::slice::from_ref(&recent.id)
    );
    assert_eq!(state.kill_switch.as_deref(), Some("off"));
    let no_group = store
        .decision_state("i-window", None, "kill-switch", at(3_600))
        .await
        .expect("state");
    assert!(no_group.incidents_group.is_empty());
}

/// The dashboard's reads: the newest incidents (newest first) and every open
/// one, through their own indexes on DynamoDB.
async fn recent_and_open(store: &dyn Store) {
    let now = Utc::now();
    let mut made = Vec::new();
    for (i, hours) in [3, 1, 2].into_iter().enumerate() {
        let mut inc = incident(900 + i, IncidentKind::TaskCrashed, 0);
        inc = Incident::new(IncidentParts {
            kind: inc.kind,
            source: inc.source,
            resource: inc.resource,
            group: inc.group,
            reason: inc.reason,
            detail: inc.detail,
            detected_at: now - chrono::Duration::hours(hours),
            dedupe_key: format!("recent-{i}"),
        });
        store.create_incident(&inc).await.expect("create");
        made.push(inc);
    }
    let recent = store.recent(2).await.expect("recent");
    assert_eq!(
        recent
            .iter()
            .map(|r| r.incident.id.clone())
            .collect::<Vec<_>>(),
        [made[1].id.clone(), made[2].id.clone()],
        "newest first"
    );
    store
        .transition(&made[1].id, LifecycleState::Escalated, now, None)
        .await
        .expect("close");
    let open = store.all_open().await.expect("open");
    assert!(open.iter().all(|r| !r.state.is_terminal()));
    let ids: Vec<_> = open.iter().map(|r| r.incident.id.clone()).collect();
    assert!(
        ids.contains(&made[0].id) && ids.contains(&made[2].id),
        "{ids:?}"
    );
    assert!(
        !ids.contains(&made[1].id),
        "a closed incident left the open ones"
    );
    // The closed one is still among the newest.
    let recent = store.recent(1).await.expect("recent");
    assert_eq!(recent[0].incident.id, made[1].id);
    assert_eq!(recent[0].state, LifecycleState::Escalated);
}

async fn suite(store: Arc<dyn Store>) {
    store.init().await.expect("init");
    store.init().await.expect("init is idempotent");
    lifecycle(store.as_ref()).await;
    illegal_transitions(store.as_ref()).await;
    idempotent_create(store.clone()).await;
    leases(store.as_ref()).await;
    stats_and_pagination(store.as_ref()).await;
    config_governor_policies(store.as_ref()).await;
    decision_state_reads_the_window(store.as_ref()).await;
    policy_inputs(store.as_ref()).await;
    recent_and_open(store.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_backend_passes_the_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("healer.db"))
        .await
        .expect("open");
    suite(Arc::new(store)).await;
    // Reopening runs no migration twice and keeps the data.
    let again = SqliteStore::open(&dir.path().join("healer.db"))
        .await
        .expect("reopen");
    assert!(again.resource_configs().await.expect("configs").len() == 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_backend_passes_the_suite_on_moto() {
    let Some(moto) = crate::moto::start_serial("dynamodb_backend_passes_the_suite_on_moto") else {
        return;
    };
    let client = crate::moto::dynamodb(&moto).await;
    let tables = DynamoTables::with_prefix("suite");
    let store = DynamoStore::new(client.clone(), tables.clone());
    suite(Arc::new(store)).await;

    // The incidents table has TTL on expires_at, and items carry it.
    let ttl = client
        .describe_time_to_live()
        .table_name(&tables.incidents)
        .send()
        .await
        .expect("describe ttl");
    let desc = ttl.time_to_live_description().expect("ttl description");
    assert_eq!(desc.attribute_name(), Some("expires_at"));
    let item = client
        .get_item()
        .table_name(&tables.incidents)
        .key(
            "id",
            aws_sdk_dynamodb::types::AttributeValue::S(
                incident(1, IncidentKind::TaskCrashed, 0).id.to_string(),
            ),
        )
        .send()
        .await
        .expect("get item");
    let expires: i64 = item
        .item()
        .and_then(|i| i.get("expires_at"))
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .expect("expires_at set");
    assert_eq!(expires, t(0).timestamp() + 90 * 24 * 3600);
    let billing = client
        .describe_table()
        .table_name(&tables.incidents)
        .send()
        .await
        .expect("describe");
    let mode = billing
        .table()
        .and_then(|t| t.billing_mode_summary())
        .and_then(|b| b.billing_mode())
        .map(|m| m.as_str().to_owned());
    assert_eq!(mode.as_deref(), Some("PAY_PER_REQUEST"));
}

/// Issue 11 item 9: places under counted limits are reserved atomically.
/// Two store handles (two replicas) race 50 claims on a limit of 2: exactly
/// 2 are held. A claim that fails on one limit takes nothing on the others.
async fn reservations_race(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    use healer::store::{Reservation, SlotClaim, SlotLimit};
    let claim = |limit: SlotLimit, capacity: u32, holder: String| SlotClaim {
        limit,
        capacity,
        holder,
        ttl: Duration::from_secs(900),
    };
    let blast = SlotLimit::BlastRadius("arn:aws:ecs:us-east-1:1:service/c/race".into());
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let c = claim(blast.clone(), 2, format!("member-{i}"));
        tasks.push(tokio::spawn(async move {
            store.reserve(&[c], t(0)).await.expect("reserve")
        }));
    }
    let mut held = 0;
    for task in tasks {
        if task.await.expect("task") == Reservation::Held {
            held += 1;
        }
    }
    assert_eq!(held, 2, "never more than the limit");
    // A holder keeps its place; expired places free up.
    assert_eq!(
        a.reserve(&[claim(blast.clone(), 2, "member-x".into())], t(0))
            .await
            .expect("reserve"),
        Reservation::Full(blast.clone())
    );
    assert_eq!(
        b.reserve(&[claim(blast.clone(), 2, "member-x".into())], t(901))
            .await
            .expect("reserve"),
        Reservation::Held
    );
    // All or nothing across limits.
    let wide = SlotLimit::BlastRadius("wide".into());
    let one = SlotLimit::InFlight;
    let both = |holder: &str| {
        vec![
            claim(wide.clone(), 10, holder.into()),
            claim(one.clone(), 1, holder.into()),
        ]
    };
    assert_eq!(
        a.reserve(&both("s-1"), t(0)).await.expect("reserve"),
        Reservation::Held
    );
    assert_eq!(
        b.reserve(&both("s-2"), t(0)).await.expect("reserve"),
        Reservation::Full(one.clone())
    );
    let after = (2..=10)
        .map(|i| claim(wide.clone(), 10, format!("w-{i}")))
        .collect::<Vec<_>>();
    assert_eq!(
        a.reserve(&after, t(0)).await.expect("reserve"),
        Reservation::Held,
        "the failed claim took no place on the wide limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reservations_hold_across_two_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("healer.db");
    let a = SqliteStore::open(&path).await.expect("open");
    let b = SqliteStore::open(&path).await.expect("open again");
    reservations_race(Arc::new(a), Arc::new(b)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_reservations_hold_across_two_clients_on_moto() {
    let Some(moto) =
        crate::moto::start_serial("dynamodb_reservations_hold_across_two_clients_on_moto")
    else {
        return;
    };
    let tables = DynamoTables::with_prefix("race");
    let a = DynamoStore::new(crate::moto::dynamodb(&moto).await, tables.clone());
    a.init().await.expect("init");
    let b = DynamoStore::new(crate::moto::dynamodb(&moto).await, tables);
    reservations_race(Arc::new(a), Arc::new(b)).await;
}

/// Issue 11: the exact input of a decision is stored once under its hash.
async fn policy_inputs(store: &dyn Store) {
    assert_eq!(store.policy_input("h-1").await.expect("read"), None);
    store
        .put_policy_input("h-1", r#"{"a":1}"#)
        .await
        .expect("put");
    store
        .put_policy_input("h-1", r#"{"a":1}"#)
        .await
        .expect("put is idempotent");
    assert_eq!(
        store.policy_input("h-1").await.expect("read").as_deref(),
        Some(r#"{"a":1}"#)
    );
    // Many at once: the ones held, whatever the order or the chunking.
    let mut hashes = vec!["h-missing".to_owned(), "h-1".to_owned()];
    for i in 0..600 {
        let hash = format!("h-many-{i}");
        store
            .put_policy_input(&hash, &format!(r#"{{"i":{i}}}"#))
            .await
            .expect("put");
        hashes.push(hash);
    }
    let mut got = store.policy_inputs(&hashes).await.expect("read many");
    got.sort();
    assert_eq!(got.len(), 601);
    assert!(got.contains(&("h-1".to_owned(), r#"{"a":1}"#.to_owned())));
    assert!(got.contains(&("h-many-599".to_owned(), r#"{"i":599}"#.to_owned())));
    assert!(store.policy_inputs(&[]).await.expect("none").is_empty());
}
