//! The dashboard's server side: `GET /overview` (its first render's one
//! data request) on a SQLite store of N incidents (default 100 000;
//! `HEALER_BENCH_DASHBOARD_N`) over the last 25 days, most closed and
//! aggregated, 20 open; and the incident stream fanned out to 50 clients
//! while incidents are recorded at 100/s.
//!
//! Run: `cargo bench -p healer --bench dashboard`.

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use chrono::{Duration, Utc};
use healer::api::{AdminToken, Api, Health};
use healer::decision::Decision;
use healer::incident::{Incident, IncidentKind, IncidentParts, ResourceKind, ResourceRef};
use healer::policy::PolicyId;
use healer::store::{LifecycleState, Provenance, SqliteStore, Store};
use http_body_util::BodyExt;
use tower::ServiceExt;

const TOKEN: &str = "bench-token-0123456789";
const CLIENTS: usize = 50;
const STREAMED: usize = 200;

fn incident(n: usize, at: chrono::DateTime<Utc>, reason: String) -> Incident {
    let kind = [
        IncidentKind::TaskCrashed,
        IncidentKind::FunctionErrors,
        IncidentKind::InstanceImpaired,
        IncidentKind::Alarm,
    ][n % 4];
    let id = format!("arn:aws:ecs:us-east-1:1:task/c/{n:032x}");
    Incident::new(IncidentParts {
        kind,
        source: "bench".into(),
        resource: ResourceRef::new(ResourceKind::EcsTask, id.clone()),
        group: Some(ResourceRef::new(
            ResourceKind::EcsService,
            format!("arn:aws:ecs:us-east-1:1:service/c/s{}", n % 50),
        )),
        reason,
        detail: Default::default(),
        detected_at: at,
        dedupe_key: format!("{id}#1"),
    })
}

fn provenance() -> Provenance {
    Provenance {
        policy: PolicyId {
            name: "ecs-task-restart".into(),
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
    }
}

/// N incidents, every 25 days / N apart, up to now: all but the newest 20
/// closed (9 in 10 healed after 30–300 s, the rest escalated).
async fn fill(store: Arc<dyn Store>, n: usize) {
    let now = Utc::now();
    let step = Duration::days(25) / i32::try_from(n.max(1)).unwrap_or(i32::MAX);
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(4) {
                let at = now - step * i32::try_from(i).unwrap_or(0);
                let inc = incident(i, at, "Essential container in task exited".into());
                let (created, _) = store.create_incident(&inc).await.expect("create");
                store
                    .record_decisions(&created, provenance(), vec![], vec![], at, None)
                    .await
                    .expect("decided");
                if i < 20 {
                    continue;
                }
                let (state, after) = if i % 10 == 0 {
                    (LifecycleState::Escalated, 600)
                } else {
                    (LifecycleState::Healed, 30 + (i % 271) as i64)
                };
                store
                    .transition(&inc.id, state, at + Duration::seconds(after), None)
                    .await
                    .expect("closed");
            }
        }));
    }
    for t in tasks {
        t.await.expect("filler");
    }
}

async fn overview(router: &Router) -> (StdDuration, usize) {
    let since = (Utc::now() - Duration::days(30)).to_rfc3339();
    let req = Request::get(format!("/overview?since={}", since.replace('+', "%2B")))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .expect("request");
    let started = Instant::now();
    let resp = router.clone().oneshot(req).await.expect("infallible");
    assert!(resp.status().is_success(), "{}", resp.status());
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (started.elapsed(), bytes.len())
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// 50 clients on the stream; `STREAMED` incidents recorded at 100/s; each
/// client's delay from the write to the event, and how many arrived.
async fn fan_out(router: &Router, store: Arc<dyn Store>) {
    let mut clients = Vec::new();
    let written: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
    for _ in 0..CLIENTS {
        let req = Request::get("/incidents/stream")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .expect("request");
        let resp = router.clone().oneshot(req).await.expect("infallible");
        assert!(resp.status().is_success());
        let written = written.clone();
        clients.push(tokio::spawn(async move {
            let mut body = resp.into_body();
            let (mut delays, mut buf, mut resyncs) = (Vec::new(), String::new(), 0);
            let deadline = Instant::now() + StdDuration::from_secs(30);
            while delays.len() < STREAMED && Instant::now() < deadline {
                let Ok(Some(Ok(frame))) =
                    tokio::time::timeout(StdDuration::from_secs(5), body.frame()).await
                else {
                    break;
                };
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buf.push_str(&String::from_utf8_lossy(&data));
                while let Some(cut) = buf.find("\n\n") {
                    let event: String = buf.drain(..cut + 2).collect();
                    if event.contains("event: resync") {
                        resyncs += 1;
                    }
                    if !event.contains("event: incident") {
                        continue;
                    }
                    let Some(id) = event
                        .split("streamed-")
                        .nth(1)
                        .and_then(|r| r.split("-end").next())
                    else {
                        continue;
                    };
                    let at = written.lock().ok().and_then(|w| w.get(id).copied());
                    if let Some(at) = at {
                        delays.push(at.elapsed().as_secs_f64() * 1000.0);
                    }
                }
            }
            (delays, resyncs)
        }));
    }
    let now = Utc::now() + Duration::hours(1);
    let started = Instant::now();
    for i in 0..STREAMED {
        // The reason is the marker the clients look for.
        let inc = incident(
            10_000_000 + i,
            now + Duration::milliseconds(i as i64),
            format!("streamed-{i}-end"),
        );
        if let Ok(mut w) = written.lock() {
            w.insert(i.to_string(), Instant::now());
        }
        store.create_incident(&inc).await.expect("create");
        let next = started + StdDuration::from_millis(10 * (i as u64 + 1));
        tokio::time::sleep_until(next.into()).await;
    }
    let mut all = Vec::new();
    let (mut complete, mut resyncs) = (0, 0);
    for c in clients {
        let (d, r) = c.await.expect("client");
        complete += usize::from(d.len() == STREAMED);
        resyncs += r;
        all.extend(d);
    }
    all.sort_by(f64::total_cmp);
    if all.is_empty() {
        println!("stream: no client received an event");
        return;
    }
    println!(
        "stream: {CLIENTS} clients, {STREAMED} incidents at 100/s: {complete}/{CLIENTS} clients got every one \
         ({resyncs} resyncs); write to event p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms \
         (the watcher reads every 500 ms; POST /events wakes it at once)",
        pct(&all, 0.5),
        pct(&all, 0.99),
        all[all.len() - 1]
    );
}

fn main() {
    let n: usize = std::env::var("HEALER_BENCH_DASHBOARD_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite = SqliteStore::open(&dir.path().join("bench.db"))
            .await
            .expect("open");
        sqlite.init().await.expect("init");
        let store: Arc<dyn Store> = Arc::new(sqlite);
        let filling = Instant::now();
        fill(store.clone(), n).await;
        println!(
            "filled {n} incidents in {:.1} s",
            filling.elapsed().as_secs_f64()
        );
        let router = Api::new(Arc::new(Health::new(Vec::new(), true, None)))
            .token(Some(AdminToken::new(TOKEN).expect("token")))
            .store(store.clone())
            .router();
        let (first, bytes) = overview(&router).await;
        let mut times = Vec::new();
        for _ in 0..20 {
            times.push(overview(&router).await.0.as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "GET /overview on {n} incidents: first {:.1} ms, then p50 {:.1} ms, max {:.1} ms ({bytes} bytes; goal < 300 ms)",
            first.as_secs_f64() * 1000.0,
            pct(&times, 0.5),
            times[times.len() - 1]
        );
        fan_out(&router, store).await;
    });
}
