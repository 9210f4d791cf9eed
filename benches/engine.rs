//! Engine decision latency: one admit + release pair, warm path, on a small
//! node and on a large, busy one; one cold admission that evicts; and a
//! saturated queue (256 admissions waiting) where every release places one.
//!
//! Run: `cargo bench --bench engine`. Figures: benches/README.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use vision_node_daemon::config::{self, EvictionPolicy, ModelSpec};
use vision_node_daemon::engine::*;

const NOW: Time = Time::from_millis(1_000);

fn settings() -> Settings {
    Settings {
        reserve_mib: 512,
        queue_limit: 256,
        default_timeout: Duration::from_secs(30),
        // Long enough that nothing expires while the benchmark runs.
        lease_ttl: Duration::from_secs(86_400),
        policy: EvictionPolicy::Lru,
        ..Settings::default()
    }
}

fn gpus(count: usize, total_mib: u64) -> Vec<GpuSpec> {
    (0..count)
        .map(|i| GpuSpec {
            uuid: format!("GPU-bench-{i}"),
            name: "bench".into(),
            total_mib,
        })
        .collect()
}

fn request(token: &str, model: &str) -> AdmitRequest {
    AdmitRequest {
        token: token.into(),
        model: model.into(),
        task_type: None,
        priority: 0,
        wait: Wait::Default,
    }
}

/// Admits (must be granted warm) and releases.
fn admit_release(e: &mut Engine, req: &AdmitRequest) {
    match e.admit(req, NOW) {
        Ok(Admission::Granted(lease)) => e
            .release(lease.id, Some(&req.token), NOW)
            .expect("own lease"),
        other => panic!("expected a warm grant, got {other:?}"),
    }
}

/// Makes every model resident by preloading and completing the loads.
fn preload_all(e: &mut Engine) {
    let names: Vec<String> = e.models().iter().map(|m| m.name.clone()).collect();
    for name in names {
        let (_, load) = e.preload(&name, None, NOW).expect("room for every model");
        assert!(e.load_finished(load, Ok(()), NOW));
    }
    e.drain_effects().for_each(drop);
}

fn small_node(c: &mut Criterion) {
    let cfg = config::Config::dev();
    let mut e = Engine::new(gpus(2, 24_576), cfg.models.clone(), settings()).unwrap();
    e.allocate_slots("pod", 8, NOW).unwrap();
    preload_all(&mut e);
    let req = request("pod", "yolo-v8n");
    c.bench_function("admit+release, 4 models on 2 GPUs", |b| {
        b.iter(|| admit_release(&mut e, black_box(&req)))
    });
}

fn large_models(n: usize) -> Vec<ModelSpec> {
    (0..n)
        .map(|i| ModelSpec {
            name: format!("model-{i:04}"),
            // 50..=450 MiB: 1000 copies ≈ 250 GiB, resident across 8 GPUs.
            weights_mib: 50 + (i as u64 * 37) % 401,
            working_mib: 16,
            max_concurrency: 64,
            load_ms: 500 + (i as u64 * 91) % 4_000,
            task_ms: 100,
            task_types: vec![],
        })
        .collect()
}

fn large_busy_node(c: &mut Criterion) {
    let mut e = Engine::new(gpus(8, 81_920), large_models(1_000), settings()).unwrap();
    preload_all(&mut e);
    // 1000 pods × 16 slots; 10 000 live leases spread over every model.
    for p in 0..1_000 {
        e.allocate_slots(&format!("pod-{p}"), 16, NOW).unwrap();
    }
    for i in 0..10_000 {
        let req = request(
            &format!("pod-{}", i % 1_000),
            &format!("model-{:04}", i % 1_000),
        );
        assert!(matches!(e.admit(&req, NOW), Ok(Admission::Granted(_))));
    }
    assert_eq!(e.status().leases, 10_000);
    let req = request("pod-7", "model-0421");
    c.bench_function("admit+release, 1000 models on 8 GPUs, 10k leases", |b| {
        b.iter(|| admit_release(&mut e, black_box(&req)))
    });
}

fn cold_with_eviction(c: &mut Criterion) {
    // One GPU that holds ~200 of 1000 models: every admission of a model that
    // is not resident evicts the LRU idle copies, loads, and is granted.
    let mut e = Engine::new(gpus(1, 60_000), large_models(1_000), settings()).unwrap();
    e.allocate_slots("pod", 16, NOW).unwrap();
    let mut i = 0usize;
    c.bench_function(
        "cold admit+load+release with LRU eviction, 1000 models on 1 GPU",
        |b| {
            b.iter(|| {
                i = (i + 389) % 1_000; // strides through the catalog, mostly cold
                let req = request("pod", &format!("model-{i:04}"));
                let lease = match e.admit(&req, NOW).expect("fits after eviction") {
                    Admission::Granted(l) => l,
                    Admission::Pending(_) => {
                        let load = e
                            .drain_effects()
                            .find_map(|f| match f {
                                Effect::Load { load, .. } => Some(load),
                                _ => None,
                            })
                            .expect("a cold admission loads");
                        e.load_finished(load, Ok(()), NOW);
                        match e.drain_effects().next_back() {
                            Some(Effect::Grant { lease, .. }) => lease,
                            other => panic!("expected the grant, got {other:?}"),
                        }
                    }
                };
                e.release(lease.id, Some("pod"), NOW).unwrap();
                e.drain_effects().for_each(drop);
            })
        },
    );
}

/// A node whose memory is full of running tasks, with 256 admissions waiting
/// for it: every release places the first waiting admission that fits, and
/// a new one takes its place in the queue. One iteration is that release plus
/// that admission: two engine calls. Measured twice: with the engine's
/// passes, and with passes that walk the whole queue (the engine before
/// passes skipped blocked models' runs; the same decisions).
fn saturated_queue(c: &mut Criterion) {
    for (name, walk) in [
        ("saturated queue (256 waiting): release + admit", false),
        (
            "saturated queue (256 waiting): release + admit, whole-queue walk",
            true,
        ),
    ] {
        let (mut e, mut running, mut next) = saturated_engine();
        e.walk_whole_queue(walk);
        c.bench_function(name, |b| {
            b.iter(|| {
                let l = running.pop_front().expect("a running task");
                e.release(l.id, None, NOW).expect("live");
                for f in e.drain_effects() {
                    if let Effect::Grant { lease, .. } = f {
                        running.push_back(lease);
                    }
                }
                if let Ok(Admission::Granted(l)) = e.admit(&next(), NOW) {
                    running.push_back(l);
                }
                black_box(e.queued())
            })
        });
        assert_eq!(e.queued(), 256, "the queue stayed full");
    }
}

/// One 40 GiB GPU, 8 warm models of 1 GiB whose tasks hold 1 GiB each; one
/// task per model holds its copy all along (no copy idles, so none is
/// evicted), 24 more run, 256 wait. Returns the engine, the 24 running
/// leases, and the source of further requests (64 pods round-robin).
fn saturated_engine() -> (
    Engine,
    std::collections::VecDeque<Lease>,
    impl FnMut() -> AdmitRequest,
) {
    let models: Vec<ModelSpec> = (0..8)
        .map(|i| ModelSpec {
            name: format!("m{i}"),
            weights_mib: 1024,
            working_mib: 1024,
            max_concurrency: 64,
            load_ms: 1_000,
            task_ms: 100,
            task_types: vec![],
        })
        .collect();
    let settings = Settings {
        pod_queue_limit: 256,
        ..settings()
    };
    let mut e = Engine::new(gpus(1, 40 * 1024 + 512), models, settings).unwrap();
    preload_all(&mut e);
    e.allocate_slots("pinner", 8, NOW).unwrap();
    for i in 0..8 {
        let pin = e.admit(&request("pinner", &format!("m{i}")), NOW);
        assert!(matches!(pin, Ok(Admission::Granted(_))));
    }
    let pods: Vec<String> = (0..64).map(|p| format!("pod-{p}")).collect();
    for p in &pods {
        e.allocate_slots(p, 4, NOW).unwrap();
    }
    let mut n = 0usize;
    let mut next = move || {
        n += 1;
        request(&pods[(n * 7) % pods.len()], &format!("m{}", (n * 5) % 8))
    };
    let mut running = std::collections::VecDeque::new();
    while e.queued() < 256 {
        if let Ok(Admission::Granted(l)) = e.admit(&next(), NOW) {
            running.push_back(l);
        }
    }
    e.drain_effects().for_each(drop);
    assert_eq!((e.queued(), running.len()), (256, 24));
    (e, running, next)
}

criterion_group!(
    benches,
    small_node,
    large_busy_node,
    cold_with_eviction,
    saturated_queue
);
criterion_main!(benches);
