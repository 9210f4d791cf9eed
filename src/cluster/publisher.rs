//! The publishing task: decides when to write, writes, backs off.
//!
//! One task, woken by the node's events (and a slow safety-net timer),
//! never by polling:
//!
//! - labels are recomputed at start, on `GpuHealth` events (the only change
//!   that moves them) and on the safety net, and applied only when the
//!   computed set differs from the last one written;
//! - annotations are recomputed on any event, but only while their window is
//!   open: after a write, changes within `annotation_interval` just mark
//!   them stale and the task wakes once at the end of the window to read the
//!   state *then* and write it if it differs from what was written — one
//!   write per interval at most, the latest state wins, none when nothing
//!   changed. This also keeps a busy node from reading its status per event.
//!   Each write is stamped (`<domain>/residency-time`); a quiet node's
//!   unchanged state is re-stamped every [`REFRESH`], the heartbeat that
//!   lets readers tell a live daemon's state from a dead one's;
//! - Events are queued as they come and sent in order.
//!
//! Each of the three has its own [`Backoff`], so an RBAC gap for Events does
//! not hold up the labels. A failed write leaves the desired state in place,
//! and the retry sends whatever is desired by then.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node as K8sNode, ObjectReference};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event as K8sEvent, Recorder, Reporter};
use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::events::{EventSpec, event_for, node_reference};
use super::labels::{Labels, node_labels};
use super::residency::{self, Annotations, REFRESH, node_annotations};
use super::{ANNOTATION_MANAGER, LABEL_MANAGER, REPORTER, Settings, Stats};
use crate::node::{self, EventKind, Node};

/// Re-read the state this often even without events: memory taken by other
/// processes changes free pool memory without an event of its own.
pub(crate) const SAFETY_NET: Duration = Duration::from_secs(30);

/// Events waiting while the API fails; older ones are dropped first (what
/// is happening now matters more than a backlog).
const MAX_QUEUED_EVENTS: usize = 64;

/// Recorders kept for series aggregation (see [`Publisher::recorder`]).
const MAX_RECORDERS: usize = 64;

/// A desired value, the last one the API server accepted, and the retry
/// schedule.
struct Target<T> {
    desired: Option<T>,
    written: Option<T>,
    backoff: Backoff,
}

impl<T: PartialEq> Target<T> {
    fn new() -> Self {
        Target {
            desired: None,
            written: None,
            backoff: Backoff::default(),
        }
    }

    /// Computed and not yet written.
    fn pending(&self) -> bool {
        self.desired.is_some() && self.desired != self.written
    }
}

pub(super) struct Publisher {
    node: Arc<Node>,
    nodes: Api<K8sNode>,
    client: kube::Client,
    settings: Settings,
    stats: Arc<Stats>,
    /// The Node as our Events refer to it.
    reference: ObjectReference,
    labels: Target<Labels>,
    /// Labels must be recomputed (start, GPU health, safety net).
    labels_stale: bool,
    annotations: Target<Annotations>,
    /// Something happened since the annotations were last computed.
    annotations_stale: bool,
    /// When the last successful annotation write started; the window for
    /// the next one opens `annotation_interval` later.
    annotations_written_at: Option<Instant>,
    events: VecDeque<EventSpec>,
    events_backoff: Backoff,
    /// One Recorder per distinct (reason, note), see [`Publisher::recorder`].
    recorders: HashMap<(&'static str, String), Recorder>,
}

impl Publisher {
    pub(super) fn new(
        node: Arc<Node>,
        client: kube::Client,
        settings: Settings,
        stats: Arc<Stats>,
    ) -> Publisher {
        Publisher {
            node,
            nodes: Api::all(client.clone()),
            client,
            reference: node_reference(&settings.node_name),
            settings,
            stats,
            labels: Target::new(),
            labels_stale: true,
            annotations: Target::new(),
            annotations_stale: true,
            annotations_written_at: None,
            events: VecDeque::new(),
            events_backoff: Backoff::default(),
            recorders: HashMap::new(),
        }
    }

    /// Runs until the node shuts down (or is dropped). Writes in flight are
    /// abandoned at shutdown; nothing here can fail the daemon.
    pub(super) async fn run(mut self, mut events: broadcast::Receiver<node::Shared>) {
        let mut shutdown = self.node.shutdown_signal();
        loop {
            self.refresh(Instant::now());
            tokio::select! {
                biased;
                _ = shutdown.fired() => break,
                _ = self.write_due() => {}
            }
            let wake = self.next_wake(Instant::now());
            tokio::select! {
                biased;
                _ = shutdown.fired() => break,
                received = events.recv() => match received {
                    Ok(ev) => {
                        self.observe(&ev.kind);
                        // Take whatever else is already there: one status
                        // read and one round of writes for a burst.
                        loop {
                            match events.try_recv() {
                                Ok(ev) => self.observe(&ev.kind),
                                Err(TryRecvError::Lagged(missed)) => self.lagged(missed),
                                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                            }
                        }
                    }
                    Err(RecvError::Lagged(missed)) => self.lagged(missed),
                    Err(RecvError::Closed) => break,
                },
                _ = tokio::time::sleep_until(wake) => {
                    self.labels_stale = true;
                    self.annotations_stale = true;
                }
            }
        }
        tracing::debug!("cluster publisher stopped");
    }

    /// Notes what one node event changes.
    fn observe(&mut self, kind: &EventKind) {
        if matches!(kind, EventKind::GpuHealth { .. }) {
            self.labels_stale = true;
        }
        self.annotations_stale = true;
        if let Some(spec) = event_for(kind) {
            if self.events.len() == MAX_QUEUED_EVENTS
                && let Some(dropped) = self.events.pop_front()
            {
                tracing::debug!(reason = dropped.reason, note = %dropped.note,
                    "Kubernetes Event dropped: too many waiting for the API");
            }
            self.events.push_back(spec);
        }
    }

    /// Missed node events: the state is re-read; the Events among them are lost.
    fn lagged(&mut self, missed: u64) {
        tracing::warn!(
            missed,
            "cluster publisher fell behind the node's events; Kubernetes Events among them are lost"
        );
        self.labels_stale = true;
        self.annotations_stale = true;
    }

    fn annotation_window_opens(&self) -> Option<Instant> {
        self.annotations_written_at
            .map(|at| at + self.settings.annotation_interval)
    }

    /// Recomputes what is stale, with one status read: labels always,
    /// annotations only while their window is open (within it, the end of
    /// the window reads them).
    fn refresh(&mut self, now: Instant) {
        let window_open = self.annotation_window_opens().is_none_or(|at| now >= at);
        let annotations = self.annotations_stale && window_open;
        if !self.labels_stale && !annotations {
            return;
        }
        let status = self.node.engine_status();
        let s = &self.settings;
        if self.labels_stale {
            self.labels.desired = Some(node_labels(&status, &s.domain, s.slots_per_gpu));
            self.labels_stale = false;
        }
        if annotations {
            let read = node_annotations(&status, &s.domain, std::time::SystemTime::now());
            // The stamp alone is no reason to write until REFRESH has passed.
            let restamp_due = self
                .annotations_written_at
                .is_none_or(|at| now >= at + REFRESH);
            let unchanged = !restamp_due
                && (self.annotations.written.as_ref())
                    .is_some_and(|w| residency::same_state(w, &read, &s.domain));
            if unchanged {
                self.annotations.desired = self.annotations.written.clone();
            } else {
                if restamp_due {
                    // The heartbeat is written even if the wall clock has
                    // not moved (or went back) since the last write.
                    self.annotations.written = None;
                }
                self.annotations.desired = Some(read);
            }
            self.annotations_stale = false;
        }
    }

    /// When the loop must run again without an event: a retry, the end of
    /// the annotation window, or the safety net.
    fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = now + SAFETY_NET;
        if self.labels.pending() {
            wake = wake.min(self.labels.backoff.retry_at().unwrap_or(now));
        }
        if self.annotations_stale || self.annotations.pending() {
            let window = self.annotation_window_opens().unwrap_or(now);
            let retry = self.annotations.backoff.retry_at().unwrap_or(now);
            wake = wake.min(window.max(retry));
        }
        if !self.events.is_empty() {
            wake = wake.min(self.events_backoff.retry_at().unwrap_or(now));
        }
        // The heartbeat: re-stamp a quiet node's annotations on time. Only a
        // future instant, so a clock that makes the re-stamp equal to what
        // was written cannot spin the loop (the safety net covers it).
        if !self.annotations.pending()
            && let Some(restamp) = self.annotations_written_at.map(|at| at + REFRESH)
            && restamp > now
        {
            wake = wake.min(restamp);
        }
        wake
    }

    /// Writes whatever is pending and allowed now.
    async fn write_due(&mut self) {
        let now = Instant::now();
        if self.labels.pending()
            && self.labels.backoff.ready(now)
            && let Some(labels) = self.labels.desired.clone()
        {
            let body = apply_body(&self.settings.node_name, "labels", &labels);
            let result = self.apply(LABEL_MANAGER, &body).await;
            if settle("labels", result, &mut self.labels.backoff, &self.stats) {
                count(&self.stats.label_writes);
                self.labels.written = Some(labels);
            }
        }

        let now = Instant::now();
        let window_open = self.annotation_window_opens().is_none_or(|at| now >= at);
        if window_open
            && self.annotations.pending()
            && self.annotations.backoff.ready(now)
            && let Some(annotations) = self.annotations.desired.clone()
        {
            let body = apply_body(&self.settings.node_name, "annotations", &annotations);
            let result = self.apply(ANNOTATION_MANAGER, &body).await;
            if settle(
                "annotations",
                result,
                &mut self.annotations.backoff,
                &self.stats,
            ) {
                count(&self.stats.annotation_writes);
                self.annotations.written = Some(annotations);
                self.annotations_written_at = Some(now);
            }
        }

        while self.events_backoff.ready(Instant::now())
            && let Some(spec) = self.events.front().cloned()
        {
            let event = K8sEvent {
                type_: spec.type_,
                reason: spec.reason.into(),
                note: Some(spec.note.clone()),
                action: spec.action.into(),
                secondary: None,
            };
            let recorder = self.recorder(spec.reason, &spec.note);
            let result = recorder.publish(&event, &self.reference).await;
            if !settle("event", result, &mut self.events_backoff, &self.stats) {
                break;
            }
            count(&self.stats.events_published);
            self.events.pop_front();
        }
    }

    /// Server-side apply of `body` to our Node under `manager`, forced:
    /// these fields are ours, whoever touched them last.
    async fn apply(&self, manager: &str, body: &serde_json::Value) -> Result<(), kube::Error> {
        let params = PatchParams::apply(manager).force();
        self.nodes
            .patch(&self.settings.node_name, &params, &Patch::Apply(body))
            .await
            .map(|_| ())
    }

    /// The Recorder for one (reason, note).
    ///
    /// A Recorder turns a repeat of an Event within 6 minutes into a count on
    /// the first one, matching on type, reason and action but *not* the
    /// note: through one Recorder, GPU 1 failing after GPU 0 would show up
    /// as "GPU 0 unhealthy (x2)". A Recorder per note aggregates only true
    /// repeats (a flapping GPU). The map is bounded; clearing it only
    /// forgets which Events a repeat could be counted on.
    fn recorder(&mut self, reason: &'static str, note: &str) -> Recorder {
        if self.recorders.len() >= MAX_RECORDERS {
            self.recorders.clear();
        }
        let reporter = || Reporter {
            controller: REPORTER.into(),
            instance: Some(self.settings.node_name.clone()),
        };
        self.recorders
            .entry((reason, note.to_owned()))
            .or_insert_with(|| Recorder::new(self.client.clone(), reporter()))
            .clone()
    }
}

/// The apply body: the Node's identity and one metadata map (`labels` or
/// `annotations`), nothing else — every field sent is claimed by the manager.
fn apply_body(
    node_name: &str,
    field: &str,
    map: &std::collections::BTreeMap<String, String>,
) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": node_name, field: map },
    })
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Books a write's result: a failure counts, starts or extends the backoff
/// and is logged — at warn for the first of a streak, then at debug — and a
/// success after failures is logged once. Returns whether it succeeded.
fn settle(
    what: &'static str,
    result: Result<(), kube::Error>,
    backoff: &mut Backoff,
    stats: &Stats,
) -> bool {
    match result {
        Ok(()) => {
            let failures = backoff.succeeded();
            if failures > 0 {
                tracing::info!(what, failures, "cluster write succeeded again");
            }
            true
        }
        Err(e) => {
            count(&stats.publish_errors);
            let failures = backoff.failed(Instant::now());
            let retry_in_s = Backoff::delay(failures).as_secs();
            if failures == 1 {
                tracing::warn!(what, error = %e, retry_in_s,
                    "cluster write failed; retrying with backoff (repeats logged at debug)");
            } else {
                tracing::debug!(what, error = %e, failures, retry_in_s, "cluster write failed again");
            }
            false
        }
    }
}
