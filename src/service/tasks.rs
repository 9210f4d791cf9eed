//! The shell's background tasks: the deadline timer, the runtime workers and
//! the GPU reconciler. Each ends when the node shuts down; none unwraps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::core::Job;
use super::{JobQueues, Node};
use crate::engine::GpuId;
use crate::gpu::{Backend, HealthEvent, Inventory};
use crate::proto::vision::v1 as pb;
use pb::watch_event::Event as Body;

/// Sleeps until the engine's next deadline (lease expiry, admission
/// deadline) and ticks it; any engine call wakes it to re-read the deadline.
/// No polling: with nothing timed it sleeps until woken.
pub fn spawn_timer(node: Arc<Node>) -> JoinHandle<()> {
    let mut shutdown = node.shutdown_signal();
    tokio::spawn(async move {
        loop {
            let next = node.next_deadline();
            tokio::select! {
                _ = node.clock().sleep_until(next) => node.with_engine(|e, now| e.tick(now)),
                _ = node.timer.notified() => {}
                _ = super::stopped(&mut shutdown) => return,
            }
        }
    })
}

/// One worker per GPU runs that GPU's loads and unloads in the engine's
/// order. A failed, timed-out or cancelled load is followed by an unload, so
/// the runtime never keeps a copy the ledger does not count.
pub fn spawn_runtime_workers(node: Arc<Node>, queues: JobQueues) -> Vec<JoinHandle<()>> {
    queues
        .0
        .into_iter()
        .map(|(gpu, rx)| tokio::spawn(runtime_worker(Arc::clone(&node), gpu, rx)))
        .collect()
}

async fn runtime_worker(node: Arc<Node>, gpu: GpuId, mut rx: mpsc::UnboundedReceiver<Job>) {
    let runtime = Arc::clone(node.runtime());
    let timeout = node.info().load_timeout;
    let mut shutdown = node.shutdown_signal();
    while let Some(job) = rx.recv().await {
        match job {
            Job::Stop => return,
            Job::Unload { model, gpu_uuid } => {
                let span = tracing::info_span!("model.unload", model = %model, gpu.uuid = %gpu_uuid,
                    runtime = runtime.kind(), outcome = tracing::field::Empty);
                let result = runtime
                    .unload(&model, &gpu_uuid)
                    .instrument(span.clone())
                    .await;
                span.record("outcome", if result.is_ok() { "ok" } else { "error" });
                if let Err(e) = result {
                    span.in_scope(|| tracing::warn!(model = %model, gpu = %gpu_uuid, error = %e, "model runtime failed to unload"));
                }
            }
            Job::Load {
                load,
                model,
                req,
                cause,
            } => {
                let started = Instant::now();
                let (name, uuid) = (req.model.clone(), req.gpu_uuid.clone());
                let span = tracing::info_span!(parent: &cause, "model.load", model = %name, gpu.uuid = %uuid,
                    runtime = runtime.kind(), weights_mib = req.weights_mib,
                    duration_ms = tracing::field::Empty, outcome = tracing::field::Empty);
                let result = tokio::select! {
                    r = tokio::time::timeout(timeout, runtime.load(req)).instrument(span.clone()) => match r {
                        Ok(Ok(loaded)) => Ok(loaded),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err(format!("load timed out after {}", crate::config::duration::format(timeout))),
                    },
                    _ = super::stopped(&mut shutdown) => Err("cancelled: the daemon is shutting down".to_owned()),
                };
                let took = started.elapsed();
                let failed = result.is_err();
                span.record("duration_ms", took.as_millis() as u64);
                span.record("outcome", if failed { "failed" } else { "loaded" });
                if !failed {
                    node.metrics().load_duration.observe(took.as_secs_f64());
                }
                node.with_core(|core, now| {
                    let body = match &result {
                        Ok(loaded) => {
                            if !loaded.endpoint.is_empty() {
                                core.endpoints.insert((gpu, model), loaded.endpoint.clone());
                            }
                            Body::ModelLoaded(model_event(&name, gpu, &uuid, core.engine.model(model).weights_mib, "", took))
                        }
                        Err(message) => {
                            tracing::warn!(model = %name, gpu = %uuid, error = %message, "model load failed");
                            Body::ModelLoadFailed(model_event(&name, gpu, &uuid, core.engine.model(model).weights_mib, message, took))
                        }
                    };
                    core.loads.remove(&load);
                    core.emit(&node.events, now, None, body);
                    for tx in core.preloads.remove(&load).unwrap_or_default() {
                        let _ = tx.send(result.as_ref().map(|_| took).map_err(Clone::clone));
                    }
                    core.engine.load_finished(load, result.map(|_| ()), now);
                });
                if failed && let Err(e) = runtime.unload(&name, &uuid).await {
                    tracing::warn!(model = %name, gpu = %uuid, error = %e, "unload after a failed load failed");
                }
            }
        }
    }
    tracing::debug!(%gpu, "runtime worker stopped");
}

fn model_event(
    model: &str,
    gpu: GpuId,
    uuid: &str,
    weights_mib: u64,
    reason: &str,
    took: Duration,
) -> pb::ModelEvent {
    pb::ModelEvent {
        model: model.to_owned(),
        gpu_index: gpu.0,
        gpu_uuid: uuid.to_owned(),
        weights_mib,
        reason: reason.to_owned(),
        duration_ms: took.as_millis() as u64,
    }
}

/// How often the inventory is polled to reconcile memory used by other
/// processes and health that events did not report.
pub const GPU_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Applies health events as they happen (from the inventory's own thread)
/// and polls snapshots every [`GPU_POLL_INTERVAL`].
pub fn spawn_gpu_reconciler(
    node: Arc<Node>,
    inventory: Arc<dyn Inventory>,
    mut health: mpsc::UnboundedReceiver<HealthEvent>,
) -> JoinHandle<()> {
    let mut shutdown = node.shutdown_signal();
    tokio::spawn(async move {
        let mut poll = tokio::time::interval(GPU_POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(ev) = health.recv() => apply_health(&node, &ev.uuid, ev.health.is_healthy(), &reason_of(&ev.health)),
                _ = poll.tick() => reconcile(&node, &inventory).await,
                _ = super::stopped(&mut shutdown) => return,
            }
        }
    })
}

fn reason_of(h: &crate::gpu::Health) -> String {
    match h {
        crate::gpu::Health::Healthy => String::new(),
        crate::gpu::Health::Unhealthy(r) => r.clone(),
    }
}

fn apply_health(node: &Node, uuid: &str, healthy: bool, reason: &str) {
    node.with_core(|core, now| {
        let Some(gpu) = core.engine.gpu_by_uuid(uuid) else { return };
        if core.engine.set_health(gpu, healthy, now) {
            if healthy {
                tracing::info!(gpu = %uuid, "GPU healthy again");
            } else {
                tracing::warn!(gpu = %uuid, %reason, "GPU unhealthy: residents dropped, leases revoked");
            }
            let body = Body::GpuHealth(pb::GpuHealthEvent {
                gpu_index: gpu.0,
                gpu_uuid: uuid.to_owned(),
                healthy,
                reason: reason.to_owned(),
            });
            core.emit(&node.events, now, None, body);
            node.health.send_modify(|generation| *generation += 1);
        }
    });
}

async fn reconcile(node: &Node, inventory: &Arc<dyn Inventory>) {
    let inv = Arc::clone(inventory);
    let snapshot = match tokio::task::spawn_blocking(move || inv.snapshot()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(error = %crate::gpu::error_chain(&e), "GPU snapshot failed");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "GPU snapshot task failed");
            return;
        }
    };
    let backend = inventory.backend();
    for info in snapshot {
        apply_health(
            node,
            &info.uuid,
            info.health.is_healthy(),
            &reason_of(&info.health),
        );
        node.with_engine(|e, now| {
            let Some(gpu) = e.gpu_by_uuid(&info.uuid) else {
                return;
            };
            let Some(g) = e.gpu_status(gpu) else { return };
            let ours = g.carved_mib + g.weights_mib + g.working_mib;
            let external = external_estimate(backend, info.used_mib, ours);
            if external != g.external_mib {
                e.set_external_mib(gpu, external, now);
            }
        });
    }
}

/// Memory used by processes the ledger does not account for.
///
/// NVML's "used" includes our own pods and model runtime, so the ledger's
/// commitment is subtracted — assuming all of it is really in use makes this
/// a lower bound on others' use. The simulated inventory's "used" is by
/// construction other processes' memory only.
pub fn external_estimate(backend: Backend, used_mib: u64, committed_mib: u64) -> u64 {
    match backend {
        Backend::Nvml => used_mib.saturating_sub(committed_mib),
        Backend::Simulated => used_mib,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{EvictionPolicy, ModelSpec};
    use crate::engine::{Admission, AdmitRequest, Engine, GpuSpec, Settings, Wait};
    use crate::runtime::{Bookkeeping, LoadedCopy};
    use crate::service::{Clock, NodeInfo};

    /// One GPU where one task of `m` fits and a second does not, `m`
    /// resident, leases that live an hour, and the timer running.
    fn node() -> Arc<Node> {
        let model = ModelSpec {
            name: "m".into(),
            weights_mib: 100,
            working_mib: 800,
            max_concurrency: 4,
            load_ms: 0,
            task_ms: 0,
            task_types: vec![],
        };
        let gpu = GpuSpec {
            uuid: "GPU-0".into(),
            name: "test".into(),
            total_mib: 1000,
        };
        let settings = Settings {
            reserve_mib: 0,
            queue_limit: 8,
            default_timeout: Duration::from_secs(30),
            lease_ttl: Duration::from_secs(3600),
            policy: EvictionPolicy::Lru,
        };
        let engine = Engine::new(vec![gpu], vec![model], settings).expect("engine");
        let info = NodeInfo {
            node_name: "n".into(),
            gpu_backend: "simulated".into(),
            load_timeout: Duration::from_secs(1),
            admin_socket: "admin.sock".into(),
        };
        let (node, _queues) = Node::new(
            engine,
            info,
            Arc::new(Bookkeeping::default()),
            Clock::start(),
        );
        let copy = LoadedCopy {
            model: "m".into(),
            gpu_uuid: "GPU-0".into(),
            size_mib: 100,
            endpoint: String::new(),
        };
        node.restore_resident(&copy).expect("resident");
        node.with_engine(|e, now| e.allocate_slots("pod", 4, now))
            .expect("slots");
        spawn_timer(Arc::clone(&node));
        node
    }

    fn admit(wait: Wait) -> AdmitRequest {
        AdmitRequest {
            token: "pod".into(),
            model: "m".into(),
            task_type: None,
            priority: 0,
            wait,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_before_the_one_the_timer_sleeps_until_wakes_it() {
        let node = node();
        let held = node.with_engine(|e, now| e.admit(&admit(Wait::Default), now));
        assert!(matches!(held, Ok(Admission::Granted(_))));
        // Let the timer settle on the lease's expiry, an hour away.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let queued =
            node.with_engine(|e, now| e.admit(&admit(Wait::For(Duration::from_millis(100))), now));
        assert!(matches!(queued, Ok(Admission::Pending(_))));
        assert_eq!(node.read(|e| e.queued()), 1);

        // Paused time jumps to the next timer: the admission's deadline if
        // the timer was woken, the lease's expiry otherwise.
        tokio::time::sleep(Duration::from_millis(150)).await;

        assert_eq!(node.read(|e| e.queued()), 0, "the admission timed out");
        assert_eq!(node.read(|e| e.leases().len()), 1, "the lease lives on");
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_does_not_wake_the_timer_but_is_kept() {
        let node = node();
        let first = node.with_engine(|e, now| e.admit(&admit(Wait::Default), now));
        let Ok(Admission::Granted(first)) = first else {
            panic!("granted: {first:?}")
        };
        tokio::time::sleep(Duration::from_secs(1800)).await;
        // Release and re-admit: the new lease expires half an hour after the
        // deadline the timer sleeps until; it must still expire on time.
        node.with_engine(|e, now| e.release(first.id, Some("pod"), now))
            .expect("released");
        let second = node.with_engine(|e, now| e.admit(&admit(Wait::Default), now));
        assert!(matches!(second, Ok(Admission::Granted(_))));
        tokio::time::sleep(Duration::from_secs(3600 - 1)).await;
        assert_eq!(node.read(|e| e.leases().len()), 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            node.read(|e| e.leases().len()),
            0,
            "expired at its own time"
        );
    }
}
