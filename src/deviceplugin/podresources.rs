//! Releasing the allocations of pods that are gone.
//!
//! The device plugin API has no Deallocate. kubelet's PodResources API lists
//! which devices running pods hold; an allocation none of whose devices any
//! pod holds for `grace` is released: its token stops working, its leases
//! are revoked and its vram returns to the pool.
//!
//! The release happens when the grace runs out, not at the first periodic
//! check after it: the reconciler sleeps until the earlier of its next check
//! and the first grace expiry, lists again then (the pod may be back), and
//! releases what is still absent (issue 16, item 8: a 30 s grace with a 10 s
//! check released after 49.7 s). [`Absences`] is the bookkeeping, with time
//! as an argument.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::allocations::Allocations;
use super::store::Record;
use crate::proto::k8s::podresources::v1 as pb;
use crate::uds;

const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// `(resource name, device id)` of every device a pod holds.
pub(super) type Held = HashSet<(String, String)>;

/// Where the pods' devices are listed from: kubelet's PodResources socket,
/// or a test's own list.
pub(super) trait Lister: Send + Sync + 'static {
    fn list(&self) -> impl Future<Output = Result<Held, ListError>> + Send;
    /// Where it lists from, for logs.
    fn source(&self) -> String;
}

/// kubelet's PodResources API on a Unix socket.
pub(super) struct PodResources {
    pub(super) socket: PathBuf,
}

impl Lister for PodResources {
    fn list(&self) -> impl Future<Output = Result<Held, ListError>> + Send {
        list(&self.socket)
    }

    fn source(&self) -> String {
        self.socket.display().to_string()
    }
}

/// Since when each allocation's devices have been absent from every pod.
#[derive(Debug)]
pub(super) struct Absences {
    grace: Duration,
    /// By token; only allocations seen absent at the last listing.
    since: HashMap<String, Instant>,
}

impl Absences {
    pub(super) fn new(grace: Duration) -> Absences {
        Absences {
            grace,
            since: HashMap::new(),
        }
    }

    /// A listing made at `now`: returns the tokens absent for `grace` or
    /// longer, which are due for release.
    pub(super) fn observe(
        &mut self,
        held: &Held,
        records: &[Record],
        domain: &str,
        now: Instant,
    ) -> Vec<String> {
        let mut due = Vec::new();
        for rec in records {
            let resource_name = rec.resource.name(domain);
            let present = rec
                .device_ids
                .iter()
                .any(|id| held.contains(&(resource_name.clone(), id.clone())));
            if present {
                self.since.remove(&rec.key);
            } else {
                let since = *self.since.entry(rec.key.clone()).or_insert(now);
                if now.duration_since(since) >= self.grace {
                    due.push(rec.key.clone());
                }
            }
        }
        self.since
            .retain(|t, _| records.iter().any(|r| &r.key == t));
        due
    }

    /// These were released: forget them.
    pub(super) fn released(&mut self, tokens: &[String]) {
        for t in tokens {
            self.since.remove(t);
        }
    }

    /// When the first absent allocation's grace runs out.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.since.values().min().map(|since| *since + self.grace)
    }
}

/// Lists the pods' devices every `interval`, and again whenever an absent
/// allocation's grace runs out; releases what no pod has held for `grace`.
/// The first check runs at once, so that a daemon restart starts the grace
/// clock of stale allocations immediately.
pub(super) fn spawn_reconciler(
    allocations: Arc<Allocations>,
    lister: impl Lister,
    interval: Duration,
    grace: Duration,
) -> JoinHandle<()> {
    let mut shutdown = allocations.node().shutdown_signal();
    tokio::spawn(async move {
        let mut absences = Absences::new(grace);
        let mut unreachable_reported = false;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // While kubelet does not answer, only the periodic check retries.
            let expiry = absences.next_expiry().filter(|_| !unreachable_reported);
            tokio::select! {
                _ = tick.tick() => {}
                _ = sleep_until(expiry) => {}
                _ = shutdown.fired() => return,
            }
            let held = match lister.list().await {
                Ok(held) => {
                    if unreachable_reported {
                        tracing::info!(socket = %lister.source(), "kubelet PodResources reachable again");
                        unreachable_reported = false;
                    }
                    held
                }
                Err(e) => {
                    // Reported once, not every interval.
                    if !unreachable_reported {
                        tracing::warn!(socket = %lister.source(), error = %e,
                            "cannot list pod resources; allocations of gone pods are kept until it answers");
                        unreachable_reported = true;
                    }
                    continue;
                }
            };
            let records = allocations.records();
            let gone = absences.observe(&held, &records, allocations.domain(), Instant::now());
            if gone.is_empty() {
                continue;
            }
            for rec in records.iter().filter(|r| gone.contains(&r.key)) {
                tracing::info!(resource = %rec.resource, devices = ?rec.device_ids,
                    "no pod holds these devices any more; allocation released");
            }
            let s = Arc::clone(&allocations);
            let released = gone.clone();
            match tokio::task::spawn_blocking(move || s.release(&released)).await {
                Ok(Ok(())) => absences.released(&gone),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "released allocations but cannot persist the list")
                }
                Err(e) => tracing::error!(error = %e, "allocation release task failed"),
            }
        }
    })
}

/// Sleeps until `at`; with none, forever (a `select!` branch others end).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Why PodResources could not be listed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ListError {
    #[error("cannot connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("{:?}: {}", .0.code(), .0.message())]
    Refused(#[from] tonic::Status),
    #[error("List timed out")]
    TimedOut,
}

/// `(resource name, device id)` of every device a pod holds.
async fn list(socket: &PathBuf) -> Result<Held, ListError> {
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::deviceplugin::allocations::Mounts;
    use crate::deviceplugin::devices::{Layout, Resource};
    use crate::deviceplugin::store::Store;
    use crate::engine::{Engine, GpuSpec, Settings};
    use crate::node::{Node, NodeInfo};

    const DOMAIN: &str = "vision.ai";
    const DEVICE: &str = "GPU-0-slot-0";

    fn record(token: &str) -> Record {
        Record {
            key: crate::node::token::key(token),
            token: None,
            resource: Resource::Slot,
            device_ids: vec![DEVICE.into()],
            vram: None,
            allocated_at_ms: 0,
        }
    }

    fn held(present: bool) -> Held {
        let mut h = Held::new();
        if present {
            h.insert((format!("{DOMAIN}/slot"), DEVICE.to_owned()));
        }
        h
    }

    #[test]
    fn an_allocation_is_due_exactly_when_its_grace_runs_out_after_it_was_first_seen_absent() {
        let grace = Duration::from_secs(25);
        let mut a = Absences::new(grace);
        let t0 = Instant::now();
        let at = |s: u64, ms: u64| t0 + Duration::from_secs(s) + Duration::from_millis(ms);
        let recs = [record("t")];
        assert!(a.observe(&held(true), &recs, DOMAIN, at(0, 0)).is_empty());
        assert_eq!(a.next_expiry(), None, "nothing absent, nothing scheduled");
        assert!(a.observe(&held(false), &recs, DOMAIN, at(10, 0)).is_empty());
        assert_eq!(a.next_expiry(), Some(at(35, 0)));
        assert!(
            a.observe(&held(false), &recs, DOMAIN, at(34, 999))
                .is_empty()
        );
        assert_eq!(
            a.observe(&held(false), &recs, DOMAIN, at(35, 0)),
            vec![crate::node::token::key("t")]
        );
        // Back before the grace ran out: the clock starts again.
        a.released(&[]);
        assert!(a.observe(&held(true), &recs, DOMAIN, at(36, 0)).is_empty());
        assert_eq!(a.next_expiry(), None);
    }

    #[test]
    fn allocations_that_are_gone_from_the_records_are_forgotten() {
        let mut a = Absences::new(Duration::from_secs(1));
        let t0 = Instant::now();
        a.observe(&held(false), &[record("t")], DOMAIN, t0);
        assert!(a.next_expiry().is_some());
        a.observe(&held(false), &[], DOMAIN, t0);
        assert_eq!(a.next_expiry(), None);
    }

    /// The listings a test saw: (seconds since start, token still known
    /// before this listing's releases).
    struct Scripted {
        node: Arc<Node>,
        token: String,
        start: Instant,
        present_until: Duration,
        log: Arc<Mutex<Vec<(Duration, bool)>>>,
        calls: tokio::sync::mpsc::UnboundedSender<()>,
    }

    impl Lister for Scripted {
        fn list(&self) -> impl Future<Output = Result<Held, ListError>> + Send {
            let since = self.start.elapsed();
            let known = self.node.knows_token(&self.token);
            self.log.lock().unwrap().push((since, known));
            let _ = self.calls.send(());
            std::future::ready(Ok(held(since < self.present_until)))
        }

        fn source(&self) -> String {
            "a script".into()
        }
    }

    fn node() -> Arc<Node> {
        let config = crate::config::Config::dev();
        let gpus = vec![GpuSpec {
            uuid: "GPU-0".into(),
            name: "NVIDIA L4".into(),
            total_mib: 24_576,
        }];
        let engine = Engine::new(gpus, config.models.clone(), Settings::from_config(&config))
            .expect("an engine");
        let info = NodeInfo {
            node_name: "n".into(),
            gpu_backend: "simulated".into(),
            load_timeout: Duration::from_secs(10),
            admin_socket: "/run/admin.sock".into(),
        };
        Node::new(
            engine,
            info,
            Arc::new(crate::runtime::Bookkeeping::default()),
        )
        .0
    }

    /// Issue 16, item 8: with a 25 s grace and a 10 s check, a pod last
    /// listed at 0 s and first seen gone at 10 s is released at 35 s —
    /// after a listing at that instant confirms it — not at the 40 s check.
    #[tokio::test(start_paused = true)]
    async fn a_gone_pods_allocation_is_released_when_its_grace_runs_out_not_at_the_next_check() {
        let dir = tempfile::tempdir().unwrap();
        let node = node();
        let layout = Layout::new(&[("GPU-0".into(), 24_576)], 512, 8, 1024, 0.5);
        let mounts = Mounts {
            domain: DOMAIN.into(),
            host_pods_dir: dir.path().join("pods"),
            container_socket_dir: "/var/run/vision".into(),
            cdi: false,
            slot: crate::deviceplugin::allocate::SlotSetup {
                runtime_endpoint: None,
                gpus: crate::config::SlotGpuVisibility::All,
            },
        };
        let allocations = Arc::new(Allocations::new(
            Arc::clone(&node),
            layout,
            mounts,
            Store::new(dir.path()),
        ));
        let token = "00112233445566778899aabbccddeeff";
        assert_eq!(allocations.restore(vec![record(token)]), 1);
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut calls) = tokio::sync::mpsc::unbounded_channel();
        let lister = Scripted {
            node: Arc::clone(&node),
            token: token.into(),
            start: Instant::now(),
            present_until: Duration::from_secs(1),
            log: Arc::clone(&log),
            calls: tx,
        };
        let task = spawn_reconciler(
            Arc::clone(&allocations),
            lister,
            Duration::from_secs(10),
            Duration::from_secs(25),
        );
        // Paused time runs ahead to each timer; wait for the 40 s check.
        while log
            .lock()
            .unwrap()
            .last()
            .is_none_or(|(t, _)| t.as_secs() < 40)
        {
            calls.recv().await.expect("the reconciler lists");
        }
        let seen: Vec<(u64, bool)> = log
            .lock()
            .unwrap()
            .iter()
            .map(|(t, known)| (t.as_millis() as u64, *known))
            .collect();
        assert_eq!(
            seen,
            vec![
                (0, true),
                (10_000, true),
                (20_000, true),
                (30_000, true),
                (35_000, true),
                (40_000, false)
            ],
            "listings at each check, one at the grace expiry, released right after it"
        );
        assert!(allocations.records().is_empty());
        node.begin_shutdown();
        task.await.unwrap();
    }
}
