//! The node's own background tasks besides the runtime workers: the
//! deadline timer and the GPU reconciler. Each ends when the node shuts
//! down; none unwraps.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Node;
use crate::gpu::{HealthEvent, Inventory};

/// How often the inventory is polled to reconcile memory used by other
/// processes and health that events did not report.
pub(crate) const GPU_POLL_INTERVAL: Duration = Duration::from_secs(5);

impl Node {
    /// Sleeps until the engine's next deadline (lease expiry, admission
    /// deadline) and ticks it; an engine call that moves the deadline
    /// earlier wakes it to re-read it (a later one is found on waking). No
    /// polling: with nothing timed it sleeps until woken.
    pub(crate) fn spawn_timer(self: &Arc<Node>) -> JoinHandle<()> {
        let node = Arc::clone(self);
        let mut shutdown = node.shutdown_signal();
        tokio::spawn(async move {
            loop {
                let next = node.next_deadline();
                tokio::select! {
                    _ = node.clock().sleep_until(next) => node.tick(),
                    _ = node.deadline_moved() => {}
                    _ = shutdown.fired() => return,
                }
            }
        })
    }

    /// Applies health events as they happen (from the inventory's own
    /// thread) and polls snapshots every [`GPU_POLL_INTERVAL`].
    pub(crate) fn spawn_gpu_reconciler(
        self: &Arc<Node>,
        inventory: Arc<dyn Inventory>,
        mut health: mpsc::UnboundedReceiver<HealthEvent>,
    ) -> JoinHandle<()> {
        let node = Arc::clone(self);
        let mut shutdown = node.shutdown_signal();
        tokio::spawn(async move {
            let mut poll = tokio::time::interval(GPU_POLL_INTERVAL);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    Some(ev) = health.recv() => {
                        node.set_gpu_health(&ev.uuid, &ev.health);
                    }
                    _ = poll.tick() => reconcile(&node, &inventory).await,
                    _ = shutdown.fired() => return,
                }
            }
        })
    }
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
        node.set_gpu_health(&info.uuid, &info.health);
        node.observe_gpu_used(&info.uuid, info.used_mib, backend);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tracing::Span;

    use super::*;
    use crate::config::{EvictionPolicy, ModelSpec};
    use crate::engine::{AdmitRequest, AllocKind, Engine, GpuSpec, Settings, Wait};
    use crate::node::{AdmitFailure, NodeInfo};
    use crate::runtime::{Bookkeeping, LoadedCopy};

    /// One GPU where one task of `m` fits and a second does not, `m`
    /// resident, leases that live an hour, a pod's token, the timer running.
    fn node() -> (Arc<Node>, String) {
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
            ..Settings::default()
        };
        let engine = Engine::new(vec![gpu], vec![model], settings).expect("engine");
        let info = NodeInfo {
            node_name: "n".into(),
            gpu_backend: "simulated".into(),
            load_timeout: Duration::from_secs(1),
            admin_socket: "admin.sock".into(),
        };
        let (node, _workers) = Node::new(engine, info, Arc::new(Bookkeeping::default()));
        let copy = LoadedCopy {
            model: "m".into(),
            gpu_uuid: "GPU-0".into(),
            size_mib: 100,
            endpoint: String::new(),
            runtime_model: String::new(),
        };
        let adopted = node.with_state(&Span::none(), |s, now| {
            let epoch = s.job_epoch();
            s.reconcile(&[copy], &epoch, now).adopted
        });
        assert_eq!(adopted, 1);
        let token = node.allocate(AllocKind::Slots(4)).expect("slots");
        node.spawn_timer();
        (node, token)
    }

    fn admit(token: &str, wait: Wait) -> AdmitRequest {
        AdmitRequest {
            token: token.into(),
            model: "m".into(),
            task_type: None,
            priority: 0,
            wait,
        }
    }

    fn leases(node: &Node) -> usize {
        node.read(|s, _| s.engine().leases().len())
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_before_the_one_the_timer_sleeps_until_wakes_it() {
        let (node, token) = node();
        node.admit(&admit(&token, Wait::Default), &Span::none())
            .await
            .expect("granted");
        // Let the timer settle on the lease's expiry, an hour away.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let req = admit(&token, Wait::For(Duration::from_millis(100)));
        let waiting = tokio::spawn({
            let node = Arc::clone(&node);
            async move { node.admit(&req, &Span::none()).await }
        });

        // Paused time jumps to the next timer: the admission's deadline if
        // the timer was woken, else this sleep's end (the lease's is later).
        tokio::time::sleep(Duration::from_millis(150)).await;

        assert!(waiting.is_finished(), "answered at its deadline");
        let answer = waiting.await.expect("admit task");
        assert!(
            matches!(answer, Err(AdmitFailure::Rejected(_))),
            "{answer:?}"
        );
        assert_eq!(leases(&node), 1, "the lease lives on");
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_does_not_wake_the_timer_but_is_kept() {
        let (node, token) = node();
        let first = node
            .admit(&admit(&token, Wait::Default), &Span::none())
            .await
            .expect("granted");
        tokio::time::sleep(Duration::from_secs(1800)).await;
        // Release and re-admit: the new lease expires half an hour after the
        // deadline the timer sleeps until; it must still expire on time.
        node.release(first.id, Some(&token)).expect("released");
        node.admit(&admit(&token, Wait::Default), &Span::none())
            .await
            .expect("granted");
        tokio::time::sleep(Duration::from_secs(3600 - 1)).await;
        assert_eq!(leases(&node), 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(leases(&node), 0, "expired at its own time");
    }
}
