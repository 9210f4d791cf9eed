//! Nodes for the shell's unit tests.

use std::sync::Arc;
use std::time::Duration;

use super::{Node, NodeInfo, Workers};
use crate::config::{self, ModelSpec};
use crate::engine::{AdmitRequest, Engine, GpuSpec, Settings, Time, Wait};

/// A node at the largest config allowed (issue 16, item 4): 64 GPUs of the
/// largest size, with 96-byte names; 1024 models with 63-byte names, every
/// one resident on every GPU; and `leases` leases held by pods of 8 slots.
pub(crate) fn largest_node(leases: usize) -> (Arc<Node>, Workers) {
    largest_node_on(leases, Arc::new(crate::runtime::Bookkeeping::default()))
}

/// [`largest_node`] on the given model runtime.
pub(crate) fn largest_node_on(
    leases: usize,
    runtime: Arc<dyn crate::runtime::ModelRuntime>,
) -> (Arc<Node>, Workers) {
    let mut cfg = config::Config::dev();
    cfg.gpus.reserve_mib = 0;
    let gpus: Vec<GpuSpec> = (0..config::MAX_SIMULATED_GPUS)
        .map(|i| GpuSpec {
            uuid: format!("GPU-{i:08x}-0000-4000-8000-000000000000"),
            name: format!("{:g<96}", format!("GPU {i} ")),
            total_mib: config::MAX_GPU_MEMORY_MIB,
        })
        .collect();
    let models: Vec<ModelSpec> = (0..config::MAX_MODELS)
        .map(|i| ModelSpec {
            name: format!("m{i:0>62}"),
            weights_mib: 1,
            working_mib: 1,
            max_concurrency: 4,
            load_ms: 1,
            task_ms: 1,
            task_types: vec![],
        })
        .collect();
    let mut engine =
        Engine::new(gpus, models.clone(), Settings::from_config(&cfg)).expect("an engine");
    let t0 = Time::from_millis(0);
    for g in 0..engine.gpu_count() {
        for m in 0..models.len() {
            engine
                .restore_resident(
                    crate::engine::GpuId(g as u32),
                    crate::engine::ModelId(m as u32),
                    t0,
                )
                .expect("room for every copy");
        }
    }
    for i in 0..leases {
        let token = format!("pod-{}", i / 8);
        if i % 8 == 0 {
            engine.allocate_slots(&token, 8, t0).expect("an allocation");
        }
        let req = AdmitRequest {
            token,
            model: models[i % models.len()].name.clone(),
            task_type: None,
            priority: 0,
            wait: Wait::NoQueue,
        };
        engine.admit(&req, t0).expect("a warm lease");
    }
    engine.drain_effects().for_each(drop);
    let info = NodeInfo {
        node_name: "n".repeat(253),
        gpu_backend: "simulated".into(),
        load_timeout: Duration::from_secs(10),
        admin_socket: "/run/admin.sock".into(),
    };
    Node::new(engine, info, runtime)
}

/// The bookkeeping runtime, counting unloads.
#[derive(Default)]
struct CountingUnloads(std::sync::atomic::AtomicUsize);

#[tonic::async_trait]
impl crate::runtime::ModelRuntime for CountingUnloads {
    fn kind(&self) -> &'static str {
        "counting"
    }

    async fn load(
        &self,
        _req: crate::runtime::LoadRequest,
    ) -> Result<crate::runtime::Loaded, crate::runtime::Error> {
        Ok(crate::runtime::Loaded::default())
    }

    async fn unload(
        &self,
        _model: &str,
        _gpu_uuid: &str,
        _reason: crate::runtime::UnloadReason,
    ) -> Result<(), crate::runtime::Error> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn list_loaded(&self) -> Result<Vec<crate::runtime::LoadedCopy>, crate::runtime::Error> {
        Ok(Vec::new())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_at_the_largest_config_unloads_every_copy_within_the_daemons_grace() {
    let runtime = Arc::new(CountingUnloads::default());
    let (node, workers) = largest_node_on(512, runtime.clone());
    let workers = workers.spawn(&node);
    node.begin_shutdown();
    let all = async {
        for w in workers {
            w.await.expect("a worker ends cleanly");
        }
    };
    tokio::time::timeout(crate::daemon::SHUTDOWN_GRACE, all)
        .await
        .expect("the workers finish every unload within the grace");
    assert_eq!(
        runtime.0.load(std::sync::atomic::Ordering::Relaxed),
        64 * 1024,
        "every copy unloaded through the runtime"
    );
}
