//! Store throughput: full incident lifecycles (create → decided → healed) per
//! second on SQLite, and on DynamoDB against moto for reference when
//! `MOTO_SERVER` (or `moto_server` on PATH) is available.
//!
//! Run: `cargo bench -p healer --bench store`.

use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use healer::decision::ActionKind;
use healer::decision::Decision;
use healer::incident::{Incident, IncidentKind, IncidentParts, ResourceKind, ResourceRef};
use healer::policy::PolicyId;
use healer::store::{ActionRecord, LifecycleState, Outcome, Provenance, SqliteStore, Store};

fn incident(n: usize) -> Incident {
    let id = format!("arn:aws:ecs:us-east-1:1:task/c/{n}");
    Incident::new(IncidentParts {
        kind: IncidentKind::TaskCrashed,
        source: "bench".into(),
        resource: ResourceRef::new(ResourceKind::EcsTask, id.clone()),
        group: Some(ResourceRef::new(
            ResourceKind::EcsService,
            "arn:aws:ecs:us-east-1:1:service/c/s",
        )),
        reason: "bench".into(),
        detail: Default::default(),
        detected_at: Utc
            .timestamp_opt(1_714_557_600, 0)
            .single()
            .unwrap_or_default(),
        dedupe_key: format!("{id}#1"),
    })
}

async fn lifecycles(store: Arc<dyn Store>, n: usize, concurrency: usize) -> f64 {
    let provenance = Provenance {
        policy: PolicyId {
            name: "bench".into(),
            version: "1".into(),
            sha256: "00".repeat(32),
        },
        input_hash: "11".repeat(32),
        fuel_used: 1,
        duration_us: 1,
        decision: Ok(Decision {
            steps: vec![],
            verify: None,
            summary: "bench".into(),
        }),
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (store, provenance) = (store.clone(), provenance.clone());
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(concurrency) {
                let inc = incident(i);
                let at = inc.detected_at;
                let (created, _) = store.create_incident(&inc).await.expect("create");
                store
                    .record_decisions(
                        &created,
                        provenance.clone(),
                        vec![],
                        vec![],
                        at + Duration::seconds(1),
                        None,
                    )
                    .await
                    .expect("decided");
                store
                    .transition(
                        &inc.id,
                        LifecycleState::Healed,
                        at + Duration::seconds(60),
                        None,
                    )
                    .await
                    .expect("healed");
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// The governor's one store read per decision, with 200 recent actions and
/// 20 000 incidents in the group (only the window's are read).
async fn decision_reads(store: &dyn Store) {
    // A day after the lifecycles' incidents: they are outside the window.
    let now = Utc
        .timestamp_opt(1_714_557_600 + 86_400, 0)
        .single()
        .unwrap_or_default();
    for i in 0..200 {
        store
            .put_action(&ActionRecord {
                incident_id: format!("inc-{i}"),
                step: 0,
                kind: ActionKind::RestartTask,
                target: format!("arn:aws:ecs:us-east-1:1:task/c/{i}"),
                group: Some("arn:aws:ecs:us-east-1:1:service/c/s".into()),
                started_at: now - Duration::minutes(i % 60),
                ended_at: Some(now),
                result: Outcome::Succeeded,
                created: Vec::new(),
            })
            .await
            .expect("action");
    }
    let n = 5_000;
    let started = Instant::now();
    for i in 0..n {
        let state = store
            .decision_state(
                &format!("arn:aws:ecs:us-east-1:1:task/c/{}", i % 200),
                Some("arn:aws:ecs:us-east-1:1:service/c/s"),
                "kill-switch",
                now - Duration::hours(1),
            )
            .await
            .expect("state");
        assert!(state.incidents_group.is_empty());
        assert_eq!(state.actions.len(), 200);
    }
    println!(
        "sqlite: decision_state (one read per decision) {:.1} us",
        started.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("bench.db"))
                .await
                .expect("open"),
        );
        let rate = lifecycles(store.clone(), 20_000, 4).await;
        println!(
            "sqlite: {rate:.0} full lifecycles/s (create, decided, healed; 4 concurrent writers)"
        );
        decision_reads(store.as_ref()).await;

        let moto_bin = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port());
        let child = port.as_ref().ok().and_then(|p| {
            std::process::Command::new(&moto_bin)
                .args(["-H", "127.0.0.1", "-p", &p.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .ok()
        });
        let (Some(mut child), Ok(port)) = (child, port) else {
            println!("dynamodb on moto: skipped (no moto_server)");
            return;
        };
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "t", "t", None, None, "moto",
            ))
            .load()
            .await;
        let store = Arc::new(healer::store::DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&shared),
            healer::store::DynamoTables::with_prefix("bench"),
        ));
        store.init().await.expect("init");
        let rate = lifecycles(store, 300, 4).await;
        println!("dynamodb on moto (reference only): {rate:.0} full lifecycles/s");
        let _ = child.kill();
        let _ = child.wait();
    });
}
