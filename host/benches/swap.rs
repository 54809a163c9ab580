//! Hot-swap latency through the admin API: from `POST /policies` received to
//! the new version deciding on this replica (the store write and the
//! snapshot publication included), for a version this replica already holds
//! and for a precompiled one (a fresh replica loading it from the precompile
//! cache), with the cold compile reported apart. Prints p50/p99 from a raw
//! sample beside criterion's figures.
//!
//! Run: `cargo bench -p healer --bench swap`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use criterion::{BatchSize, Criterion, criterion_group};
use healer::api::{AdminToken, Api, Health};
use healer::policy::blobs::BlobDir;
use healer::policy::catalog::Catalog;
use healer::policy::{PolicyContext, PolicyEngine, PolicyLimits, PolicyRegistry};
use healer::store::{SqliteStore, Store};
use healer_test_artifacts as artifacts;
use tower::ServiceExt;

const TOKEN: &str = "bench-admin-token-0123456789";

struct Replica {
    registry: Arc<PolicyRegistry>,
    router: Router,
}

fn replica(
    store: Arc<dyn Store>,
    dir: &std::path::Path,
    cache: Option<std::path::PathBuf>,
) -> Replica {
    let engine = PolicyEngine::new(PolicyLimits::default(), cache).expect("engine");
    let registry = Arc::new(PolicyRegistry::new(engine));
    let catalog = Arc::new(Catalog::new(
        registry.clone(),
        Arc::new(BlobDir::new(dir.join("blobs"))),
        store.clone(),
    ));
    let router = Api::new(Arc::new(Health::new(Vec::new(), true, None)))
        .token(Some(AdminToken::new(TOKEN).expect("token")))
        .catalog(catalog)
        .store(store)
        .router()
        .layer(MockConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            1,
        ))));
    Replica { registry, router }
}

fn alarm() -> healer::Incident {
    healer::Incident::from_json(
        br#"{"kind":"alarm","source":"bench","reason":"swap",
            "resource":{"kind":"alarm","id":"arn:aws:cloudwatch:us-east-1:1:alarm:swap"},
            "detected-at":"2024-05-01T10:00:00Z"}"#,
    )
    .expect("incident")
}

/// Pushes `bytes` and waits until a decision is made by `version`.
async fn swap(r: &Replica, bytes: &[u8], version: &str) {
    let req = Request::post("/policies")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::from(bytes.to_vec()))
        .expect("request");
    let resp = r.router.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let d = r
        .registry
        .decide(&alarm(), &PolicyContext::default(), chrono::Utc::now());
    assert_eq!(d.active[0].policy.version, version);
}

fn percentiles(mut sample: Vec<Duration>) -> (Duration, Duration) {
    sample.sort();
    let at = |p: f64| sample[((sample.len() as f64 - 1.0) * p).round() as usize];
    (at(0.5), at(0.99))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = rt.block_on(async {
        let s = SqliteStore::open(&dir.path().join("healer.db"))
            .await
            .expect("sqlite");
        s.init().await.expect("init");
        Arc::new(s)
    });
    let (v1, v2) = (
        artifacts::bytes(artifacts::SWAP_V1),
        artifacts::bytes(artifacts::SWAP_V2),
    );
    let cache = dir.path().join("cache");

    // A version this replica holds: the store write and the publication.
    let r = replica(store.clone(), dir.path(), Some(cache.clone()));
    rt.block_on(swap(&r, &v1, "1"));
    rt.block_on(swap(&r, &v2, "2"));
    let mut flip = false;
    c.bench_function("swap/put-to-deciding/loaded", |b| {
        b.iter(|| {
            flip = !flip;
            let (bytes, v) = if flip { (&v1, "1") } else { (&v2, "2") };
            rt.block_on(swap(&r, bytes, v));
        })
    });
    let mut sample = Vec::new();
    for n in 0..200 {
        let (bytes, v) = if n % 2 == 0 { (&v1, "1") } else { (&v2, "2") };
        let t = Instant::now();
        rt.block_on(swap(&r, bytes, v));
        sample.push(t.elapsed());
    }
    let (p50, p99) = percentiles(sample);
    println!("swap put-to-deciding, loaded version: p50 {p50:?}, p99 {p99:?} (200 swaps)");

    // A precompiled version on a fresh replica: the cache load included.
    c.bench_function("swap/put-to-deciding/precompiled", |b| {
        b.iter_batched(
            || {
                let d = tempfile::tempdir().expect("tempdir");
                let s: Arc<dyn Store> = rt.block_on(async {
                    let s = SqliteStore::open(&d.path().join("healer.db"))
                        .await
                        .expect("sqlite");
                    s.init().await.expect("init");
                    Arc::new(s)
                });
                (replica(s, d.path(), Some(cache.clone())), d)
            },
            |(fresh, _d)| rt.block_on(swap(&fresh, &v1, "1")),
            BatchSize::PerIteration,
        )
    });

    // The cold compile, apart.
    let mut group = c.benchmark_group("swap");
    group.sample_size(10);
    group.bench_function("compile-cold", |b| {
        let engine = PolicyEngine::new(PolicyLimits::default(), None).expect("engine");
        b.iter(|| engine.load(&v1).expect("loads"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
