//! The cluster publisher on a whole in-process daemon: a simulated GPU fault
//! travels through the inventory's health watch and the GPU reconciler
//! (the real path) to a label rewrite and a Warning Event on the Node.

use std::sync::Arc;
use std::time::Duration;

use crate::cluster_support::{self, Kind, Recorded, fake_api};
use crate::common;
use vision_node_daemon::cluster::{self, Settings, Stats};
use vision_node_daemon::gpu::Health;

/// The next request of `kind`, skipping others; fails after 10 s.
async fn next_of(api: &mut cluster_support::FakeApi, kind: Kind) -> Recorded {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let r = api.next().await;
            if r.kind() == kind {
                return r;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("a {kind:?} request within 10 s"))
}

#[tokio::test]
async fn a_simulated_gpu_fault_relabels_the_node_and_raises_a_warning_event() {
    let mut config = common::fast_dev_config();
    config.node_name = cluster_support::NODE.into();
    let running = common::start(config.clone()).await;
    let (client, mut api) = fake_api();
    let stats = Arc::new(Stats::default());
    let publisher = cluster::spawn(
        Arc::clone(running.daemon.node()),
        client,
        Settings::from_config(&config),
        Arc::clone(&stats),
    );

    // The dev config: two simulated L4s, 8 slots each.
    let labels = next_of(&mut api, Kind::Labels).await.labels();
    assert_eq!(labels["vision.ai/gpu.product"], "NVIDIA-L4-simulated");
    assert_eq!(labels["vision.ai/gpu.count"], "2");
    assert_eq!(labels["vision.ai/slots"], "16");

    running
        .daemon
        .faults()
        .expect("simulated GPUs")
        .set_health(
            1,
            Health::Unhealthy("Xid 79: GPU has fallen off the bus".into()),
        )
        .expect("GPU 1 exists");
    let relabel = next_of(&mut api, Kind::Labels).await;
    assert_eq!(relabel.labels()["vision.ai/slots"], "8");
    let event = next_of(&mut api, Kind::Event).await;
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reason"], "GpuUnhealthy");
    assert!(
        event.body["note"]
            .as_str()
            .is_some_and(|n| n.contains("Xid 79: GPU has fallen off the bus")),
        "{}",
        event.body
    );

    running.daemon.shutdown().await;
    tokio::time::timeout(Duration::from_secs(10), publisher)
        .await
        .expect("the publisher ends with the daemon")
        .expect("no panic");
}
