//! Releasing the allocations of pods that are gone.
//!
//! The device plugin API has no Deallocate. kubelet's PodResources API lists
//! which devices running pods hold; an allocation none of whose devices any
//! pod holds for `grace` is released: its token stops working, its leases
//! are revoked and its vram returns to the pool.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::allocations::Allocations;
use crate::proto::k8s::podresources::v1 as pb;
use crate::uds;

const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// Every `interval`, List the pods' devices and release what no pod holds
/// any more (after `grace`). The first check runs at once, so that a daemon
/// restart starts the grace clock of stale allocations immediately.
pub(super) fn spawn_reconciler(
    allocations: Arc<Allocations>,
    socket: PathBuf,
    interval: Duration,
    grace: Duration,
) -> JoinHandle<()> {
    let mut shutdown = allocations.node().shutdown_signal();
    tokio::spawn(async move {
        let mut missing_since: HashMap<String, Instant> = HashMap::new();
        let mut unreachable_reported = false;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.fired() => return,
            }
            let held = match list(&socket).await {
                Ok(held) => {
                    if unreachable_reported {
                        tracing::info!(socket = %socket.display(), "kubelet PodResources reachable again");
                        unreachable_reported = false;
                    }
                    held
                }
                Err(e) => {
                    // Reported once, not every interval.
                    if !unreachable_reported {
                        tracing::warn!(socket = %socket.display(), error = %e,
                            "cannot list pod resources; allocations of gone pods are kept until it answers");
                        unreachable_reported = true;
                    }
                    continue;
                }
            };
            let now = Instant::now();
            let mut gone = Vec::new();
            let records = allocations.records();
            for rec in &records {
                let resource_name = rec.resource.name(allocations.domain());
                let present = rec
                    .device_ids
                    .iter()
                    .any(|id| held.contains(&(resource_name.clone(), id.clone())));
                if present {
                    missing_since.remove(&rec.token);
                } else if now.duration_since(*missing_since.entry(rec.token.clone()).or_insert(now))
                    >= grace
                {
                    gone.push(rec.token.clone());
                }
            }
            missing_since.retain(|t, _| records.iter().any(|r| &r.token == t));
            if gone.is_empty() {
                continue;
            }
            for rec in records.iter().filter(|r| gone.contains(&r.token)) {
                tracing::info!(resource = %rec.resource, devices = ?rec.device_ids,
                    "no pod holds these devices any more; allocation released");
            }
            let s = Arc::clone(&allocations);
            let released = gone.clone();
            match tokio::task::spawn_blocking(move || s.release(&released)).await {
                Ok(Ok(())) => {
                    for t in &gone {
                        missing_since.remove(t);
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "released allocations but cannot persist the list")
                }
                Err(e) => tracing::error!(error = %e, "allocation release task failed"),
            }
        }
    })
}

/// Why PodResources could not be listed.
#[derive(Debug, thiserror::Error)]
enum ListError {
    #[error("cannot connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("{:?}: {}", .0.code(), .0.message())]
    Refused(#[from] tonic::Status),
    #[error("List timed out")]
    TimedOut,
}

/// `(resource name, device id)` of every device a pod holds.
async fn list(socket: &PathBuf) -> Result<HashSet<(String, String)>, ListError> {
    let call = async {
        let channel = uds::client::connect(socket).await?;
        let reply = pb::pod_resources_lister_client::PodResourcesListerClient::new(channel)
            .list(pb::ListPodResourcesRequest {})
            .await?
            .into_inner();
        let mut held = HashSet::new();
        for pod in reply.pod_resources {
            for c in pod.containers {
                for d in c.devices {
                    for id in d.device_ids {
                        held.insert((d.resource_name.clone(), id));
                    }
                }
            }
        }
        Ok(held)
    };
    tokio::time::timeout(LIST_TIMEOUT, call)
        .await
        .unwrap_or(Err(ListError::TimedOut))
}
