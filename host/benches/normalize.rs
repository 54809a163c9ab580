//! Signal normalization throughput on the fixture mix (every payload in
//! tests/fixtures/aws-events), on one core, and the allocations per event.
//!
//! Run: `cargo bench -p healer --bench normalize`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{Criterion, Throughput, criterion_group};
use healer::signals::{NormalizeOptions, normalize};

/// Counts allocations so the bench can report allocations per event.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn fixtures() -> Vec<Vec<u8>> {
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/aws-events");
    let mut all = Vec::new();
    for dir in std::fs::read_dir(root).expect("fixtures").flatten() {
        if dir.path().is_dir() {
            for f in std::fs::read_dir(dir.path()).expect("dir").flatten() {
                all.push(std::fs::read(f.path()).expect("read"));
            }
        }
    }
    all.sort();
    all
}

fn bench(c: &mut Criterion) {
    let mix = fixtures();
    let opts = NormalizeOptions::new(Utc::now());
    let mut group = c.benchmark_group("normalize");
    group.throughput(Throughput::Elements(mix.len() as u64));
    group.bench_function("fixture mix", |b| {
        b.iter(|| {
            for bytes in &mix {
                let _ = normalize(bytes, &opts);
            }
        })
    });
    group.finish();

    let rounds = 2_000;
    let before = ALLOCS.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut signals = 0usize;
    for _ in 0..rounds {
        for bytes in &mix {
            signals += normalize(bytes, &opts).map_or(0, |s| s.len());
        }
    }
    let elapsed = started.elapsed();
    let events = (rounds * mix.len()) as f64;
    let allocs = (ALLOCS.load(Ordering::Relaxed) - before) as f64;
    println!(
        "normalize: {:.0} events/s on one core ({} payloads in the mix, {:.2} signals each), {:.0} allocations per event, mean {:?} per event",
        events / elapsed.as_secs_f64(),
        mix.len(),
        signals as f64 / events,
        allocs / events,
        Duration::from_secs_f64(elapsed.as_secs_f64() / events)
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
