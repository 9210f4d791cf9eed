//! The status page's source: the node's state as a [`PageView`], the
//! recent events, and a counter of changes for live updates. Domain events
//! become the page's lines here (the HTTP edge), as they become protobuf at
//! the gRPC edge; allocation tokens never leave: leases are grouped by the
//! pod that holds them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::deviceplugin::Holders;
use crate::engine::{Outcome, RevokeReason};
use crate::node::{Clock, Event, EventKind, LeaseInfo, Node, Shared};
use crate::shutdown;
use crate::telemetry::http::PageSource;
use crate::telemetry::metrics;
use crate::telemetry::page::PageView;
use crate::telemetry::page::view::{
    CountersView, EventView, GpuView, LeaseView, Level, PodView, QueueView, ResidentState,
    ResidentView,
};

/// Events the page lists.
const RECENT: usize = 50;

/// How long the change counter waits after an event for the ones that
/// follow it, so that a burst is one change. Events that arrive in that
/// time wake nobody: one wake-up per burst instead of one per event keeps
/// the page off the admission path (each wake-up per Admit + Release cost
/// the daemon about 10 µs of CPU at 1 caller, benches/README.md).
const COALESCE: Duration = Duration::from_millis(100);

pub(crate) struct StatusPage {
    node: Arc<Node>,
    holders: Holders,
    recent: Mutex<Recent>,
    changes: watch::Receiver<u64>,
}

/// The last [`RECENT`] events worth a line, and the events not read yet.
/// Lines are written when the page is rendered, not as events pass.
struct Recent {
    events: broadcast::Receiver<Shared>,
    /// Newest first.
    kept: VecDeque<Shared>,
}

impl Recent {
    /// Reads every event sent so far; a burst larger than the broadcast's
    /// buffer loses its oldest events, which the page would drop anyway.
    fn catch_up(&mut self) {
        loop {
            match self.events.try_recv() {
                Ok(ev) => {
                    if matches!(ev.kind, EventKind::Queue(_)) {
                        continue;
                    }
                    if self.kept.len() == RECENT {
                        self.kept.pop_back();
                    }
                    self.kept.push_front(ev);
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => return,
            }
        }
    }
}

impl StatusPage {
    fn lock_recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The page's source, and the task that follows the node's events for
    /// it (it ends with the node).
    pub(crate) fn spawn(node: &Arc<Node>, holders: Holders) -> (Arc<StatusPage>, JoinHandle<()>) {
        let (tx, rx) = watch::channel(0u64);
        let page = Arc::new(StatusPage {
            node: Arc::clone(node),
            holders,
            recent: Mutex::new(Recent {
                events: node.subscribe(),
                kept: VecDeque::with_capacity(RECENT),
            }),
            changes: rx,
        });
        let source = Arc::clone(&page);
        let node = Arc::clone(node);
        let task = tokio::spawn(follow_bursts(
            move || node.subscribe(),
            page.node.shutdown_signal(),
            move || {
                // Keeps the kept lines current while nobody looks.
                source.lock_recent().catch_up();
                tx.send_modify(|n| *n += 1);
            },
        ));
        (page, task)
    }
}

/// Calls `burst` once per burst of events, [`COALESCE`] after its first.
/// The receiver that notices a burst is awaited for its first event only,
/// dropped while the burst goes on (its other events wake nobody), and
/// taken again before `burst` runs, so that no event goes unnoticed.
async fn follow_bursts(
    subscribe: impl Fn() -> broadcast::Receiver<Shared>,
    mut shutdown: shutdown::Signal,
    mut burst: impl FnMut(),
) {
    let mut wake = subscribe();
    loop {
        tokio::select! {
            received = wake.recv() => {
                if let Err(broadcast::error::RecvError::Closed) = received {
                    return;
                }
            }
            _ = shutdown.fired() => return,
        }
        drop(wake);
        tokio::select! {
            _ = tokio::time::sleep(COALESCE) => {}
            _ = shutdown.fired() => return,
        }
        wake = subscribe();
        burst();
    }
}

impl PageSource for StatusPage {
    fn view(&self) -> PageView {
        let status = self.node.status(None);
        let info = self.node.info();
        let clock = self.node.clock();
        let now = status.at;
        let e = &status.engine;
        let gpus = e
            .gpus
            .iter()
            .map(|g| GpuView {
                index: g.id.0,
                uuid: g.uuid.clone(),
                name: g.name.clone(),
                healthy: g.healthy,
                overcommitted: g.overcommitted_since.is_some(),
                total_mib: g.total_mib,
                reserve_mib: g.reserve_mib,
                external_mib: g.external_mib,
                usable_mib: g.usable_mib,
                carved_mib: g.carved_mib,
                weights_mib: g.weights_mib,
                working_mib: g.working_mib,
                free_mib: g.free_mib,
                residents: g
                    .residents
                    .iter()
                    .map(|r| ResidentView {
                        model: r.name.clone(),
                        weights_mib: r.weights_mib,
                        state: match (r.loading, r.pins) {
                            (true, _) => ResidentState::Loading,
                            (false, 0) => ResidentState::Warm,
                            (false, _) => ResidentState::Pinned,
                        },
                        pins: r.pins,
                        idle_ms: r
                            .idle_since
                            .filter(|_| r.pins == 0 && !r.loading)
                            .map(|t| now.saturating_since(t).as_millis() as u64),
                    })
                    .collect(),
            })
            .collect();
        let c = &e.counters;
        let counters = CountersView {
            granted_warm: c.outcome(Outcome::GrantedWarm),
            granted_cold: c.outcome(Outcome::GrantedCold),
            rejected: Outcome::ALL
                .iter()
                .filter(|o| !o.is_grant() && **o != Outcome::Cancelled)
                .map(|o| c.outcome(*o))
                .sum(),
            loads_started: c.loads_started,
            loads_failed: c.loads_failed,
            evictions: c.evictions,
            expired: c.expired,
            revoked: c.revoked,
        };
        let (version, commit) = metrics::build_info();
        PageView {
            node: info.node_name.clone(),
            version: format!("{version} ({commit})"),
            gpu_backend: info.gpu_backend.clone(),
            taken_at: rfc3339(clock.unix_ms(now)),
            gpus,
            queue: QueueView {
                queued: e.queued as u64,
                waiting_on_load: e.waiting_on_load as u64,
                capacity: e.queue_limit as u64,
            },
            pods: self.pods(),
            counters,
            events: {
                let mut recent = self.lock_recent();
                recent.catch_up();
                recent
                    .kept
                    .iter()
                    .filter_map(|ev| line(ev, clock))
                    .collect()
            },
        }
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }
}

impl StatusPage {
    /// Live leases grouped by the pod holding them, pods in name order.
    fn pods(&self) -> Vec<PodView> {
        let mut pods: BTreeMap<String, Vec<LeaseView>> = BTreeMap::new();
        for (key, l) in self.node.owned_leases() {
            let pod = self
                .holders
                .holder(&key)
                .unwrap_or_else(|| "dev token (no pod)".to_owned());
            pods.entry(pod).or_default().push(LeaseView {
                lease_id: l.id.0,
                model: l.model.clone(),
                gpu_index: l.gpu.id.0,
                warm: l.warm,
                waited_ms: l.waited.as_millis() as u64,
                expires_in_ms: l.expires_in.as_millis() as u64,
            });
        }
        pods.into_iter()
            .map(|(pod, mut leases)| {
                leases.sort_by_key(|l| l.lease_id);
                PodView { pod, leases }
            })
            .collect()
    }
}

fn rfc3339(unix_ms: u64) -> String {
    i64::try_from(unix_ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .map_or_else(|| unix_ms.to_string(), |t| t.to_string())
}

/// One line of the page's event list; `None` for queue-depth changes (the
/// page shows the queue itself).
fn line(ev: &Event, clock: Clock) -> Option<EventView> {
    let lease = |what: &str, l: &LeaseInfo, why: &str| {
        format!(
            "lease {} {what}: {} on GPU {}{}{}",
            l.id.0,
            l.model,
            l.gpu.id.0,
            if l.warm { " (warm)" } else { "" },
            if why.is_empty() {
                String::new()
            } else {
                format!(", {why}")
            }
        )
    };
    let (level, kind, text) = match &ev.kind {
        EventKind::Queue(_) => return None,
        EventKind::LeaseGranted(l) => (Level::Info, "lease_granted", lease("granted", l, "")),
        EventKind::LeaseReleased(l) => (Level::Info, "lease_released", lease("released", l, "")),
        EventKind::LeaseExpired(l) => (
            Level::Warning,
            "lease_expired",
            lease("expired", l, "no KeepAlive within its TTL"),
        ),
        EventKind::LeaseRevoked { lease: l, reason } => (
            Level::Warning,
            "lease_revoked",
            lease(
                "revoked",
                l,
                match reason {
                    RevokeReason::GpuUnhealthy => "its GPU turned unhealthy",
                    RevokeReason::AllocationReleased => "its pod is gone",
                    RevokeReason::RuntimeLost => "the model runtime lost its copy",
                },
            ),
        ),
        EventKind::ModelLoading(c) => (
            Level::Info,
            "model_loading",
            format!(
                "model {} loading on GPU {} ({} MiB)",
                c.model, c.gpu.id.0, c.weights_mib
            ),
        ),
        EventKind::ModelLoaded { copy: c, took } => (
            Level::Info,
            "model_loaded",
            format!(
                "model {} loaded on GPU {} in {} ms",
                c.model,
                c.gpu.id.0,
                took.as_millis()
            ),
        ),
        EventKind::ModelLoadFailed { copy: c, error, .. } => (
            Level::Warning,
            "model_load_failed",
            format!(
                "model {} failed to load on GPU {}: {error}",
                c.model, c.gpu.id.0
            ),
        ),
        EventKind::ModelUnloaded { copy: c, reason } => (
            Level::Info,
            "model_unloaded",
            format!(
                "model {} unloaded from GPU {}: {reason}",
                c.model, c.gpu.id.0
            ),
        ),
        EventKind::GpuHealth { gpu, health } => match health {
            crate::gpu::Health::Healthy => (
                Level::Info,
                "gpu_health",
                format!("GPU {} healthy again", gpu.id.0),
            ),
            crate::gpu::Health::Unhealthy(why) => (
                Level::Warning,
                "gpu_health",
                format!("GPU {} UNHEALTHY: {why}", gpu.id.0),
            ),
        },
        EventKind::AdmissionRejected { model, outcome } => (
            Level::Warning,
            "admission_rejected",
            format!(
                "admission for {model} rejected: {} ({})",
                crate::proto::code_name(crate::service::outcome_code(*outcome)),
                outcome.as_str()
            ),
        ),
        EventKind::PoolOvercommitted {
            gpu,
            committed_mib,
            usable_mib,
        } => (
            Level::Warning,
            "pool",
            format!(
                "GPU {} pool over-committed ({committed_mib} of {usable_mib} MiB): admissions there wait",
                gpu.id.0
            ),
        ),
        EventKind::RuntimeLost { runtime, reason } => (
            Level::Warning,
            "runtime",
            format!("model runtime {runtime} UNREACHABLE: {reason} (admissions refused)"),
        ),
        EventKind::RuntimeBack {
            runtime,
            adopted,
            dropped,
        } => (
            Level::Info,
            "runtime",
            format!("model runtime {runtime} reachable: {adopted} adopted, {dropped} dropped"),
        ),
        EventKind::RuntimeDrifted {
            runtime,
            adopted,
            dropped,
        } => (
            Level::Warning,
            "runtime",
            format!(
                "model runtime {runtime} changed behind the daemon: {adopted} adopted, {dropped} dropped"
            ),
        ),
        EventKind::ModelOutgrewCatalog {
            copy,
            catalog_mib,
            measured_mib,
        } => (
            Level::Warning,
            "model_outgrew_catalog",
            format!(
                "model {} on GPU {} took {measured_mib} MiB, more than its catalog's {catalog_mib} MiB",
                copy.model, copy.gpu.id.0
            ),
        ),
        EventKind::PoolDrained { gpu } => (
            Level::Info,
            "pool",
            format!("GPU {} pool drained", gpu.id.0),
        ),
        EventKind::Kubelet(r) => (
            if r.registered {
                Level::Info
            } else {
                Level::Warning
            },
            "kubelet",
            format!(
                "{} {} with kubelet",
                r.resource,
                if r.registered {
                    "registered"
                } else {
                    "not registered"
                }
            ),
        ),
    };
    Some(EventView {
        at: rfc3339(clock.unix_ms(ev.at)),
        level,
        kind: kind.to_owned(),
        text,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::engine::Time;

    fn rejected(seq: u64) -> Shared {
        Arc::new(Event {
            seq,
            at: Time::from_millis(seq),
            owner: None,
            kind: EventKind::AdmissionRejected {
                model: "m".into(),
                outcome: Outcome::QueueFull,
            },
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_events_is_one_change_and_a_later_event_another() {
        let (tx, _) = broadcast::channel::<Shared>(16);
        let trigger = shutdown::Trigger::new();
        let bursts = Arc::new(AtomicUsize::new(0));
        let subscriptions = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(follow_bursts(
            {
                let (tx, subscriptions) = (tx.clone(), Arc::clone(&subscriptions));
                move || {
                    subscriptions.fetch_add(1, Ordering::SeqCst);
                    tx.subscribe()
                }
            },
            trigger.signal(),
            {
                let bursts = Arc::clone(&bursts);
                move || {
                    bursts.fetch_add(1, Ordering::SeqCst);
                }
            },
        ));
        tokio::task::yield_now().await;
        assert_eq!(subscriptions.load(Ordering::SeqCst), 1);
        // 100 events, far more than the channel holds, within COALESCE.
        for seq in 0..100 {
            tx.send(rejected(seq)).unwrap();
        }
        tokio::task::yield_now().await;
        // During the burst nobody listens: no event is kept for the task.
        assert_eq!(tx.receiver_count(), 0);
        assert_eq!(bursts.load(Ordering::SeqCst), 0, "not before COALESCE");
        tokio::time::sleep(COALESCE).await;
        tokio::task::yield_now().await;
        assert_eq!(bursts.load(Ordering::SeqCst), 1);
        assert_eq!(tx.receiver_count(), 1, "listening again");
        // Quiet: no change however long it lasts.
        tokio::time::sleep(COALESCE * 50).await;
        assert_eq!(bursts.load(Ordering::SeqCst), 1);
        tx.send(rejected(100)).unwrap();
        tokio::time::sleep(COALESCE * 2).await;
        assert_eq!(bursts.load(Ordering::SeqCst), 2);
        trigger.fire();
        task.await.unwrap();
    }

    #[test]
    fn a_rejection_line_names_the_callers_code_and_the_outcome() {
        let ev = Event {
            seq: 1,
            at: Time::from_millis(5),
            owner: None,
            kind: EventKind::AdmissionRejected {
                model: "sd3b".into(),
                outcome: Outcome::DeadlineExceeded,
            },
        };
        let line = line(&ev, Clock::start()).expect("a line");
        assert_eq!(line.kind, "admission_rejected");
        assert_eq!(
            line.text,
            "admission for sd3b rejected: DEADLINE_EXCEEDED (deadline_exceeded)"
        );
    }
}
