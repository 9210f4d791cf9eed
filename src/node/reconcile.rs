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
    /// deadline) and ticks it; any engine call wakes it to re-read the
    /// deadline. No polling: with nothing timed it sleeps until woken.
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
