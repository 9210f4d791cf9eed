//! Whether the model runtime answers, and what losing and regaining it does
//! to the ledger. Only runtimes that hold copies of their own (Triton, the
//! gRPC SPI) are watched; the bookkeeping runtime is always up.
//!
//! # Lost
//! The watch asks the runtime's `ready()` (Triton: `ServerLive`; the SPI:
//! `ListLoaded`) every
//! `runtime.health_interval`, and at once when a load or unload fails with
//! the runtime unreachable. A failed or unanswered check (within
//! [`CHECK_TIMEOUT`]) means the runtime is **lost**:
//! - new admissions and preloads are refused at once with UNAVAILABLE
//!   (warm or cold: no load can start, and no copy can be confirmed to
//!   exist), and so are admissions that were queued;
//! - loads in flight are answered: their waiters get UNAVAILABLE ("the model
//!   runtime was lost during the load"), and the workers stop waiting on
//!   them; what the runtime makes of them is settled by the next reconcile;
//! - idle copies leave the ledger (event `ModelUnloaded`, reason
//!   `runtime_lost`; nothing is unloaded): the cluster stops seeing this
//!   node as warm for them, and their memory is free in the ledger;
//! - copies pinned by leases stay, **unconfirmed**: the leases stay valid
//!   (Release and KeepAlive work, nothing is revoked), since the runtime
//!   may only be slow to answer while it serves the tasks. An unconfirmed
//!   copy whose last lease ends while the runtime is lost leaves the ledger.
//! - `/readyz` says not ready; `/metrics` and `visionctl status` say why.
//!
//! # Regained
//! When a check succeeds again, the runtime's `list_loaded` (Triton:
//! `RepositoryIndex`, READY models) rebuilds residency ([`Node`]'s
//! reconcile): copies it holds that the ledger lacks are adopted as idle,
//! warm copies (a runtime that was only unreachable keeps its models, and
//! they come back without a reload); unconfirmed copies it still holds are
//! confirmed, their leases untouched; unconfirmed copies it lost (it
//! restarted) leave the ledger and their leases are revoked
//! (`runtime_lost`) — those leases name a copy that no longer exists. Only
//! then are admissions taken again. A failed list keeps the runtime lost.
//!
//! # Drift
//! While up, the same reconcile runs every `runtime.reconcile_interval`: a
//! model unloaded behind the daemon's back leaves the ledger, one loaded
//! behind its back is adopted. A GPU whose worker had a load or unload in
//! flight meanwhile is left for the next round. The ledger never keeps a
//! copy the runtime does not hold for longer than that, and never loses
//! track of one it does.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::Span;

use super::Node;
use crate::config::duration;
use crate::engine::Time;

/// How long one readiness check may take before the runtime counts as lost.
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// How long start-up waits for the model runtime's ListLoaded.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the model runtime answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reach {
    Up,
    Down { since: Time, reason: String },
}

/// The model runtime is unreachable: what a refused admission is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the model runtime ({runtime}) is unreachable{}: {reason}", since(*.down_for))]
pub struct RuntimeDown {
    pub runtime: &'static str,
    pub reason: String,
    /// How long it has been unreachable.
    pub down_for: Duration,
}

fn since(d: Duration) -> String {
    if d.is_zero() {
        String::new()
    } else {
        format!(" (for {})", duration::format(d))
    }
}

/// How often the watch checks and reconciles.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WatchIntervals {
    pub(crate) check: Duration,
    pub(crate) reconcile: Duration,
}

impl Node {
    /// Connects to the runtime at start: reconciles residency with its list
    /// (adopting the copies it already holds), or leaves it lost (the watch
    /// keeps trying) when it does not answer.
    pub(crate) async fn connect_runtime(&self) {
        if !self.runtime.holds_copies() {
            return;
        }
        if let Err(reason) = self.reconcile_runtime().await {
            tracing::warn!(runtime = self.runtime.kind(), %reason,
                "model runtime not reachable at start; admissions are refused until it answers");
            self.runtime_lost(&reason);
        }
    }

    /// Lists the runtime's copies and reconciles the ledger with them.
    async fn reconcile_runtime(&self) -> Result<(), String> {
        let epoch = self.read(|s, _| s.job_epoch());
        let listed = match tokio::time::timeout(LIST_TIMEOUT, self.runtime.list_loaded()).await {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => {
                return Err(format!(
                    "its list of copies took longer than {}",
                    duration::format(LIST_TIMEOUT)
                ));
            }
        };
        self.with_state(&Span::current(), |s, now| s.reconcile(&listed, &epoch, now));
        Ok(())
    }

    /// The runtime stopped answering (see the module docs).
    fn runtime_lost(&self, reason: &str) {
        self.with_state(&Span::current(), |s, now| s.runtime_lost(reason, now));
    }

    /// A runtime call failed as if the runtime were unreachable: check now.
    pub(super) fn suspect_runtime(&self) {
        self.check_now.notify_one();
    }

    /// Whether the runtime answers (for `/readyz`).
    pub(crate) fn runtime_reachable(&self) -> bool {
        *self.up.borrow()
    }

    /// Checks the runtime every `intervals.check` (and when a call failed),
    /// reconciles every `intervals.reconcile`; ends at shutdown. `None` for
    /// a runtime that holds no copies.
    pub(crate) fn spawn_runtime_watch(
        self: &Arc<Node>,
        intervals: WatchIntervals,
    ) -> Option<JoinHandle<()>> {
        if !self.runtime.holds_copies() {
            return None;
        }
        let node = Arc::clone(self);
        let mut shutdown = node.shutdown_signal();
        Some(tokio::spawn(async move {
            // Start connected: the first check is one interval away.
            let first = tokio::time::Instant::now() + intervals.check;
            let mut check = tokio::time::interval_at(first, intervals.check);
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_reconcile = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = check.tick() => {}
                    _ = node.check_now.notified() => {}
                    _ = shutdown.fired() => return,
                }
                let answer = tokio::time::timeout(CHECK_TIMEOUT, node.runtime.ready()).await;
                let failure = match answer {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some(format!(
                        "no answer to a readiness check within {}",
                        duration::format(CHECK_TIMEOUT)
                    )),
                };
                let up = node.runtime_reachable();
                match failure {
                    Some(reason) if up => node.runtime_lost(&reason),
                    Some(reason) => {
                        node.with_state(&Span::current(), |s, now| s.set_down_reason(&reason, now));
                    }
                    None if !up || last_reconcile.elapsed() >= intervals.reconcile => {
                        last_reconcile = tokio::time::Instant::now();
                        if let Err(reason) = node.reconcile_runtime().await {
                            if up {
                                node.runtime_lost(&reason);
                            } else {
                                node.with_state(&Span::current(), |s, now| {
                                    s.set_down_reason(&reason, now)
                                });
                            }
                        }
                    }
                    None => {}
                }
            }
        }))
    }
}
