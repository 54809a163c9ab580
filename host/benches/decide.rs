//! Policy engine benchmarks: a fresh-instance decision on the example policy
//! `ecs-task-restart` (criterion, plus p50/p99 from a raw sample), instantiation
//! alone, throughput across all cores, and the cold start of `healer policy eval`
//! with a warm precompile cache.
//!
//! Run: `cargo bench -p healer --bench decide`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{Criterion, criterion_group};
use healer::Incident;
use healer::policy::{PolicyContext, PolicyEngine, PolicyLimits};
use healer_test_artifacts as artifacts;

fn incident() -> Incident {
    Incident::from_json(
        br#"{"kind":"task-crashed","source":"aws.ecs",
        "resource":{"kind":"ecs-task","id":"arn:aws:ecs:eu-central-1:111111111111:task/test/a6eaf0150a4248dAA1bcbd688121014e","region":"eu-central-1"},
        "group":{"kind":"ecs-service","id":"arn:aws:ecs:eu-central-1:111111111111:service/test/example-api-v1"},
        "reason":"Essential container in task exited","detail":{"exit-code":"2"},
        "detected-at":"2024-05-01T10:00:00Z"}"#,
    )
    .expect("valid incident")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn bench(c: &mut Criterion) {
    let engine = PolicyEngine::new(PolicyLimits::default(), None).expect("engine");
    let policy = engine
        .load(&artifacts::bytes(artifacts::ECS_TASK_RESTART))
        .expect("policy loads");
    let inc = incident();
    let ctx = PolicyContext::default();
    let now = Utc::now();

    c.bench_function("decide/ecs-task-restart (fresh instance)", |b| {
        b.iter(|| {
            let out = engine.decide(&policy, &inc, &ctx, now);
            assert!(out.result.is_ok());
        })
    });
    c.bench_function("instantiate only/ecs-task-restart", |b| {
        b.iter(|| engine.instantiate_only(&policy).expect("instantiates"))
    });

    // Raw latency distribution.
    let mut samples: Vec<Duration> = (0..20_000)
        .map(|_| {
            let t = Instant::now();
            let out = engine.decide(&policy, &inc, &ctx, now);
            let d = t.elapsed();
            assert!(out.result.is_ok());
            d
        })
        .collect();
    samples.sort();
    let fuel = engine.decide(&policy, &inc, &ctx, now).fuel_used;
    println!(
        "decide latency over {} samples: p50 {:?}, p99 {:?}, max {:?}; fuel {fuel}",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        percentile(&samples, 1.0),
    );

    // Throughput across every core.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let policy = Arc::new(policy);
    let per_thread = 50_000;
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (engine, policy, inc, ctx) = (&engine, &policy, &inc, &ctx);
            s.spawn(move || {
                for _ in 0..per_thread {
                    let _ = engine.decide(policy, inc, ctx, now);
                }
            });
        }
    });
    let elapsed = started.elapsed();
    println!(
        "throughput: {:.0} decisions/s on {threads} threads",
        (threads * per_thread) as f64 / elapsed.as_secs_f64()
    );

    // Cold start of the CLI with a warm cache.
    let dir = tempfile::tempdir().expect("tempdir");
    let inc_path = dir.path().join("incident.json");
    std::fs::write(&inc_path, serde_json::to_vec(&inc).expect("json")).expect("write");
    let run = || {
        let t = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_healer"))
            .args([
                "policy",
                "eval",
                "--policy",
                artifacts::ECS_TASK_RESTART,
                "--incident",
            ])
            .arg(&inc_path)
            .env("HEALER_CACHE_DIR", dir.path().join("cache"))
            .output()
            .expect("run healer");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        t.elapsed()
    };
    let first = run();
    let mut cold: Vec<Duration> = (0..30).map(|_| run()).collect();
    cold.sort();
    println!(
        "healer policy eval: first run (compiles, fills cache) {first:?}; warm cache p50 {:?}, max {:?}",
        percentile(&cold, 0.5),
        percentile(&cold, 1.0)
    );
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
