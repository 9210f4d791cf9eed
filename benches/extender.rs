//! Extender latency: one pod's filter + prioritize over 5 000 nodes in cache
//! mode (NodeNames), body parsing and encoding included; and, for
//! comparison, over 500 whole Nodes in stateless mode.
//!
//! Every node's view is what a real engine publishes: 4 L4-sized GPUs, the
//! seed models × 16 variants, a few copies ready or loading, some queueing.
//!
//! Run: `cargo bench --bench extender`. Figures: benches/README.md.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;
use vision_node_daemon::cluster::residency::node_annotations;
use vision_node_daemon::config::{Config, ModelSpec};
use vision_node_daemon::engine::{Engine, GpuId, GpuSpec, Settings as EngineSettings, Time};
use vision_node_daemon::extender::{Extender, NodeCacheMode, Settings};

const NODES: usize = 5_000;
const VARIANTS: u32 = 16;

fn catalog() -> Vec<ModelSpec> {
    Config::dev()
        .models
        .iter()
        .flat_map(|base| {
            (0..VARIANTS).map(move |v| ModelSpec {
                name: format!("{}#{v}", base.name),
                ..base.clone()
            })
        })
        .collect()
}

/// Node `i`'s annotations: a deterministic mix of ready, loading and
/// absent copies (a small LCG picks them), stamped `at`.
fn annotations(i: usize, models: &[ModelSpec], at: SystemTime) -> ObjectMeta {
    let config = Config::dev();
    let gpus = (0..4)
        .map(|g| GpuSpec {
            uuid: format!("GPU-{i:05}-{g}"),
            name: "NVIDIA L4".into(),
            total_mib: 24576,
        })
        .collect();
    let mut e =
        Engine::new(gpus, models.to_vec(), EngineSettings::from_config(&config)).expect("engine");
    let mut x = i as u64 * 6364136223846793005 + 1442695040888963407;
    for g in 0..4u32 {
        for _ in 0..3 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            let m = &models[(x >> 33) as usize % models.len()].name;
            if let Ok((_, load)) = e.preload(m, Some(GpuId(g)), Time::ZERO)
                && !(x >> 20).is_multiple_of(4)
            {
                e.load_finished(load, Ok(()), Time::ZERO);
            }
        }
    }
    ObjectMeta {
        name: Some(format!("gpu-node-{i:05}")),
        annotations: Some(node_annotations(&e.status(), "vision.ai", at)),
        ..ObjectMeta::default()
    }
}

fn pod() -> serde_json::Value {
    json!({
        "metadata": {"name": "render-7f9c", "namespace": "studio",
                     "uid": "0b7c3f52-5f1e-4f55-9d1e-6a4a8c1d2e3f",
                     "annotations": {"vision.ai/models": "sd3b#3"}},
        "spec": {"schedulerName": "vision-scheduler",
                 "containers": [{"name": "render", "image": "ghcr.io/example/render:1",
                                 "resources": {"limits": {"vision.ai/slot": "1"}, "requests": {"vision.ai/slot": "1"}}}]},
        "status": {"phase": "Pending"},
    })
}

fn bench(c: &mut Criterion) {
    let models = catalog();
    let now = SystemTime::now();
    let settings = Settings {
        models: models.clone(),
        node_cache: NodeCacheMode::Watch,
        ..Settings::from_config(&Config::dev())
    };
    let ext = Extender::new(&settings);
    let cache = ext.cache().expect("watch mode has a cache");
    let metas: Vec<ObjectMeta> = (0..NODES).map(|i| annotations(i, &models, now)).collect();
    for meta in &metas {
        cache.insert(meta.name.as_deref().expect("name"), ext.view_of(meta));
    }
    let names: Vec<&str> = metas
        .iter()
        .map(|m| m.name.as_deref().expect("name"))
        .collect();
    let body = serde_json::to_vec(&json!({"Pod": pod(), "Nodes": null, "NodeNames": names}))
        .expect("JSON");

    let mut group = c.benchmark_group("extender");
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("filter + prioritize, 5000 nodes, cache mode", |b| {
        b.iter(|| {
            let f = ext.filter(black_box(&body), now);
            let p = ext.prioritize(black_box(&body), now);
            assert_eq!((f.status, p.status), (200, 200));
            black_box((f.body.len(), p.body.len()))
        })
    });

    // Stateless: whole Nodes (metadata, plus a status as kubelet writes it).
    let stateless = Extender::new(&Settings {
        node_cache: NodeCacheMode::Off,
        ..settings
    });
    let items: Vec<serde_json::Value> = metas[..500]
        .iter()
        .map(|m| {
            json!({"metadata": m, "status": {
                "capacity": {"cpu": "16", "memory": "64Gi", "pods": "110", "vision.ai/slot": "32"},
                "allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110", "vision.ai/slot": "32"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                "nodeInfo": {"kubeletVersion": "v1.33.1", "osImage": "Debian GNU/Linux 12 (bookworm)"}}})
        })
        .collect();
    let body = serde_json::to_vec(
        &json!({"Pod": pod(), "Nodes": {"metadata": {}, "items": items}, "NodeNames": null}),
    )
    .expect("JSON");
    group.bench_function("filter + prioritize, 500 nodes, stateless", |b| {
        b.iter(|| {
            let f = stateless.filter(black_box(&body), now);
            let p = stateless.prioritize(black_box(&body), now);
            assert_eq!((f.status, p.status), (200, 200));
            black_box((f.body.len(), p.body.len()))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
