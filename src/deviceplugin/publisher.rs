//! Feeds the plugins' device lists from the node's GPU health, through the
//! recovery hysteresis of [`super::health`]. Woken by the node's GPU health
//! changes and by the next recovery deadline; never polls, and never wakes
//! for the node's other events (a lease granted or released: issue 11).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::devices::Layout;
use super::health::Advertised;
use super::plugin::Plugin;
use crate::node::Node;

pub(super) fn spawn_health_publisher(
    node: Arc<Node>,
    layout: Layout,
    plugins: Vec<Arc<Plugin>>,
    recovery: Duration,
) -> JoinHandle<()> {
    let mut shutdown = node.shutdown_signal();
    let mut health = node.health_changes();
    let publish = move |healthy: &[bool]| {
        for p in &plugins {
            p.publish_devices(layout.devices(p.resource(), healthy));
        }
    };
    tokio::spawn(async move {
        let mut advertised = Advertised::new(&node.gpu_healthy(), recovery);
        publish(&advertised.healthy());
        loop {
            let due = node.clock().sleep_until(advertised.next_recovery());
            tokio::select! {
                changed = health.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = due => {}
                _ = shutdown.fired() => return,
            }
            if advertised.observe(&node.gpu_healthy(), node.clock().now()) {
                publish(&advertised.healthy());
            }
        }
    })
}
