//! Engine decision latency: one admit + release pair, warm path, on a small
//! node and on a large, busy one; and one cold admission that evicts.
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

criterion_group!(benches, small_node, large_busy_node, cold_with_eviction);
criterion_main!(benches);
