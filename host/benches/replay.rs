//! Replay throughput: N recorded decisions of `ecs-task-restart` (default
//! 100 000; `HEALER_BENCH_REPLAY_N`) in a SQLite store, replayed by the same
//! version on 2 threads, store reads (the incident pages and every input)
//! included; and the bytes the recorded inputs add per incident.
//!
//! Run: `cargo bench -p healer --bench replay`.

use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use healer::incident::{Incident, IncidentKind, IncidentParts, ResourceKind, ResourceRef};
use healer::policy::{
    LoadedPolicy, PolicyContext, PolicyEngine, PolicyInput, PolicyLimits, PolicyRegistry,
};
use healer::replay::Selection;
use healer::store::{Provenance, SqliteStore, Store};

fn incident(n: usize) -> Incident {
    let service = format!("arn:aws:ecs:us-east-1:1:service/c/s{}", n % 50);
    let task = format!("arn:aws:ecs:us-east-1:1:task/c/{n:032x}");
    let at = Utc
        .timestamp_opt(1_714_557_600, 0)
        .single()
        .unwrap_or_default()
        + Duration::seconds(i64::try_from(n).unwrap_or(0));
    Incident::new(IncidentParts {
        kind: IncidentKind::TaskCrashed,
        source: "ecs-event".into(),
        resource: ResourceRef::new(ResourceKind::EcsTask, task.clone()),
        group: Some(ResourceRef::new(ResourceKind::EcsService, service)),
        reason: "Essential container in task exited".into(),
        detail: Default::default(),
        detected_at: at,
        dedupe_key: format!("{task}#1"),
    })
}

/// Decides and records `n` incidents as the pipeline does: the incident,
/// its input under its hash, the decision's provenance. Returns the bytes of
/// the distinct inputs stored.
async fn fill(
    store: Arc<SqliteStore>,
    engine: Arc<PolicyEngine>,
    policy: Arc<LoadedPolicy>,
    n: usize,
) -> usize {
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (store, engine, policy) = (store.clone(), engine.clone(), policy.clone());
        tasks.push(tokio::spawn(async move {
            let mut bytes = 0;
            for i in (w..n).step_by(4) {
                let inc = incident(i);
                let context = PolicyContext {
                    recent_incidents_resource: u32::try_from(i % 3).unwrap_or(0),
                    recent_incidents_group: u32::try_from(i % 7).unwrap_or(0),
                    ..PolicyContext::default()
                };
                let now = inc.detected_at + Duration::seconds(1);
                let outcome = engine.decide(&policy, &inc, &context, now);
                let (json, hash) = PolicyInput::new(&inc, &context, now).encoded();
                bytes += json.len();
                let (created, _) = store.create_incident(&inc).await.expect("create");
                store.put_policy_input(&hash, &json).await.expect("input");
                let provenance = Provenance {
                    policy: outcome.policy.clone(),
                    input_hash: hash,
                    fuel_used: outcome.fuel_used,
                    duration_us: u64::try_from(outcome.duration.as_micros()).unwrap_or(0),
                    decision: outcome.result.map_err(|e| e.to_string()),
                };
                store
                    .record_decisions(&created, provenance, vec![], vec![], now, None)
                    .await
                    .expect("decided");
            }
            bytes
        }));
    }
    let mut bytes = 0;
    for t in tasks {
        bytes += t.await.expect("filler");
    }
    bytes
}

fn main() {
    let n: usize = std::env::var("HEALER_BENCH_REPLAY_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = PolicyLimits {
        max_concurrent: 4,
        ..PolicyLimits::default()
    };
    let engine = PolicyEngine::new(limits, None).expect("engine");
    let registry = PolicyRegistry::new(engine.clone());
    registry.load_embedded();
    let id = registry
        .active("ecs-task-restart")
        .expect("embedded example");
    let policy = registry.loaded(&id.sha256).expect("loaded");
    runtime.block_on(async {
        let path = dir.path().join("healer.db");
        let store = Arc::new(SqliteStore::open(&path).await.expect("open"));
        let started = Instant::now();
        let bytes = fill(store.clone(), engine.clone(), policy.clone(), n).await;
        println!(
            "filled {n} decided incidents in {:.1} s; recorded input {:.0} B per incident (distinct inputs)",
            started.elapsed().as_secs_f64(),
            bytes as f64 / n as f64
        );
        let started = Instant::now();
        let (cases, skipped) =
            healer::replay::select(store.as_ref(), &Selection::default(), "ecs-task-restart")
                .await
                .expect("select");
        let read = started.elapsed().as_secs_f64();
        let replayed = Instant::now();
        let reports = healer::replay::replay(&engine, &policy, &cases, 2);
        let summary = healer::replay::Summary::of(&policy.id, &reports, skipped, replayed.elapsed());
        let elapsed = started.elapsed().as_secs_f64();
        println!("store reads (incident pages and inputs): {read:.2} s");
        assert_eq!(reports.len(), n);
        assert_eq!(summary.counts.same, n, "the recorded version reproduces");
        assert_eq!(summary.determinism_failures, 0);
        println!(
            "replay: {n} decisions in {elapsed:.2} s = {:.0} decisions/s, store reads included \
             ({:.0}/s deciding alone, 2 threads)",
            n as f64 / elapsed,
            summary.decisions_per_s
        );
    });
}
