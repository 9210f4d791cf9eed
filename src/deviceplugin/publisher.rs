//! Feeds the plugins' device lists from the engine's GPU health, through the
//! recovery hysteresis of [`super::health`]. Woken by the node's GPU health
//! changes and by the next recovery deadline; never polls, and never wakes
//! for the node's other events (a lease granted or released).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::health::Advertised;
use super::server::Shared;
use crate::service::stopped;

pub fn spawn_health_publisher(shared: Arc<Shared>, recovery: Duration) -> JoinHandle<()> {
    let node = Arc::clone(&shared.node);
    let mut shutdown = node.shutdown_signal();
    let mut health = node.health_changes();
    tokio::spawn(async move {
        let initial = node.read(|e| e.gpu_healthy());
        let mut advertised = Advertised::new(&initial, recovery);
        shared.publish(&advertised.healthy());
        loop {
            let due = node.clock().sleep_until(advertised.next_recovery());
            tokio::select! {
                changed = health.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = due => {}
                _ = stopped(&mut shutdown) => return,
            }
            let actual = node.read(|e| e.gpu_healthy());
            if advertised.observe(&actual, node.clock().now()) {
                shared.publish(&advertised.healthy());
            }
        }
    })
}
