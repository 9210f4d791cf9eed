//! The node: the engine and all of the shell's bookkeeping, behind one lock.
//!
//! [`Node`] owns the [`Engine`] and the maps that say who waits for what
//! (pending admissions, preloads, lease owners, runtime endpoints). Its
//! fields are private; every change goes through a method that runs one
//! synchronous engine call, carries out the effects it left — answering
//! waiting callers, queueing runtime jobs, publishing [`Event`]s — and
//! leaves the maps consistent. Others get these methods, never the engine.
//!
//! Background work ([`Workers`], the deadline timer, the GPU reconciler)
//! runs model loads through the [`ModelRuntime`] one GPU at a time, sleeps
//! until the engine's next deadline, and applies GPU health.
//!
//! # Layout
//! - `state`: the state behind the lock, and effects → events (one place).
//! - [`event`](Event): the domain events, with typed reasons.
//! - `admit`: the calls that wait (Admit, Preload).
//! - `reach`: whether the model runtime answers; losing and regaining it.
//! - `worker`, `reconcile`: the background tasks.
//! - `view`: read-only snapshots ([`NodeStatus`], [`ModelResidency`]).
//! - `token`: allocation tokens.

mod admit;
mod bus;
mod clock;
pub mod epoch;
mod event;
mod reach;
mod reconcile;
mod state;
#[cfg(test)]
pub(crate) mod test_support;
pub mod token;
mod view;
mod watches;
mod worker;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, mpsc, watch};
use tracing::Span;

pub use admit::{AdmitFailure, PreloadFailure, Preloaded};
use bus::Bus;
pub(crate) use bus::Shared;
pub(crate) use clock::Clock;
#[cfg(test)]
pub(crate) use event::UnloadCause;
pub(crate) use event::{Event, EventKind, ModelCopy, QueueDepth};
pub use event::{GpuRef, LeaseInfo, LoadError, Registration};
pub use reach::RuntimeDown;
pub(crate) use reach::WatchIntervals;
pub(crate) use view::{ModelMemory, ModelResidency, NodeStatus};
pub use watches::TooManyWatches;
pub use worker::Workers;

use self::state::State;
use crate::engine::{
    AdminError, AllocError, AllocKind, Engine, GpuId, GpuSpec, Lease, LeaseError, LeaseId, LoadId,
    Status, Time,
};
use crate::gpu::{Backend, Health};
use crate::runtime::{Loaded, ModelRuntime};
use crate::shutdown;
use crate::telemetry::Metrics;

/// Facts about the node that calls report.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node_name: String,
    /// `nvml` or `simulated`.
    pub gpu_backend: String,
    pub load_timeout: Duration,
    /// Where the admin socket is, for error messages on the task socket.
    pub admin_socket: String,
}

/// Why an allocation could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum AllocateError {
    #[error("no randomness for a token: {0}")]
    Randomness(getrandom::Error),
    #[error(transparent)]
    Engine(#[from] AllocError),
}

/// The shared state of a running daemon. See the module docs.
pub struct Node {
    /// The engine and the bookkeeping. A `std` mutex, as in mini-redis's
    /// `db.rs`: it is held for one synchronous engine call and its effects,
    /// never across an `.await`, so it is never contended for long and an
    /// async mutex would only add cost.
    state: Mutex<State>,
    clock: Clock,
    info: NodeInfo,
    runtime: Arc<dyn ModelRuntime>,
    /// Every state change (the bus's shared broadcast, subscribed to
    /// without taking the state lock).
    events: broadcast::Sender<Shared>,
    /// Bumped whenever a GPU's health changed: the device plugins' publisher
    /// waits on this rather than on `events`, which would wake it for every
    /// lease granted or released (issue 11).
    health: watch::Sender<u64>,
    /// Wakes the deadline timer when an engine call moved the next deadline
    /// before the one it sleeps until. Notified after the lock is dropped.
    timer: Notify,
    /// The deadline the timer sleeps until, in ms (`u64::MAX`: none). Read
    /// and written under the `state` lock, so a call either sees the value
    /// or happened before the timer read the engine. Waking the timer on
    /// every call cost a task wake-up per Admit and Release (issue 11).
    timer_at: AtomicU64,
    /// Fires once, when the daemon starts shutting down.
    shutdown: shutdown::Trigger,
    /// Whether the model runtime answers, as the state last said: workers
    /// stop waiting on runtime calls when it turns false.
    up: watch::Sender<bool>,
    /// Wakes the runtime watch for a check now (a runtime call failed).
    check_now: Notify,
    /// What the shell observes for Prometheus (a leaf: it knows nothing of us).
    metrics: Arc<Metrics>,
    /// Watch streams one pod may hold open (`watches`).
    watch_limit: AtomicU32,
}

impl Node {
    /// Wraps an engine (GPUs and catalog already set up). Nothing runs until
    /// the returned [`Workers`] are spawned.
    pub fn new(
        engine: Engine,
        info: NodeInfo,
        runtime: Arc<dyn ModelRuntime>,
    ) -> (Arc<Node>, Workers) {
        let bus = Bus::new();
        let events = bus.all();
        let metrics = Arc::new(Metrics::default());
        let mut jobs = Vec::new();
        let mut queues = Vec::new();
        for i in 0..engine.gpu_count() {
            let (tx, rx) = mpsc::unbounded_channel();
            jobs.push(tx);
            queues.push((GpuId(i as u32), rx));
        }
        let state = State::new(engine, bus, jobs, Arc::clone(&metrics), runtime.kind());
        let node = Arc::new(Node {
            state: Mutex::new(state),
            clock: Clock::start(),
            info,
            runtime,
            events,
            health: watch::channel(0).0,
            timer: Notify::new(),
            timer_at: AtomicU64::new(u64::MAX),
            shutdown: shutdown::Trigger::new(),
            up: watch::channel(true).0,
            check_now: Notify::new(),
            metrics,
            watch_limit: AtomicU32::new(watches::DEFAULT_PER_POD),
        });
        (node, Workers::new(queues))
    }

    /// Runs `f` on the state at `now`, then carries out the effects it left
    /// (a load they start with no admission waiting on it is a child of
    /// `cause`). The lock is held for exactly that; nothing awaits.
    fn with_state<R>(&self, cause: &Span, f: impl FnOnce(&mut State, Time) -> R) -> R {
        let now = self.clock.now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let result = f(&mut state, now);
        state.settle_unconfirmed(now);
        state.carry_out(now, cause);
        let up = state.is_up();
        let next = state.next_deadline().map_or(u64::MAX, Time::as_millis);
        let earlier = next < self.timer_at.load(Ordering::Relaxed);
        drop(state);
        self.up
            .send_if_modified(|was| std::mem::replace(was, up) != up);
        if earlier {
            self.timer.notify_one();
        }
        result
    }

    /// Reads the state without changing it.
    fn read<R>(&self, f: impl FnOnce(&State, Time) -> R) -> R {
        let now = self.clock.now();
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&state, now)
    }

    pub(crate) fn clock(&self) -> Clock {
        self.clock
    }

    pub(crate) fn info(&self) -> &NodeInfo {
        &self.info
    }

    pub(crate) fn runtime(&self) -> &Arc<dyn ModelRuntime> {
        &self.runtime
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Every event from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Shared> {
        self.events.subscribe()
    }

    /// Changes whenever a GPU's health changed; read [`Node::gpu_healthy`]
    /// for the state.
    pub(crate) fn health_changes(&self) -> watch::Receiver<u64> {
        self.health.subscribe()
    }

    /// Fires once shutdown has begun (or the node is gone).
    pub(crate) fn shutdown_signal(&self) -> shutdown::Signal {
        self.shutdown.signal()
    }

    /// Begins shutdown: every waiting admission is answered UNAVAILABLE,
    /// every copy is unloaded through the runtime (unless the runtime's
    /// copies outlive the daemon), Watch streams end, and the runtime
    /// workers stop after their queued jobs.
    pub fn begin_shutdown(&self) {
        if self.shutdown.fire() {
            self.with_state(&Span::current(), |s, now| s.shutdown(now));
        }
    }

    // ---- views -----------------------------------------------------------

    /// A status snapshot, scoped to `token`'s leases when given.
    pub(crate) fn status(&self, token: Option<&str>) -> NodeStatus {
        let key = token.map(token::key);
        self.read(|s, now| s.status(key.as_deref(), now))
    }

    /// The engine's status: GPUs, pools, residents, queue, counters.
    pub fn engine_status(&self) -> Status {
        self.read(|s, _| s.engine().status())
    }

    /// The GPUs, in index order.
    pub fn gpus(&self) -> Vec<GpuSpec> {
        self.read(|s, _| {
            let e = s.engine();
            (0..e.gpu_count())
                .filter_map(|i| e.gpu(GpuId(i as u32)).cloned())
                .collect()
        })
    }

    /// Each GPU's health, in index order.
    pub(crate) fn gpu_healthy(&self) -> Vec<bool> {
        self.read(|s, _| s.engine().gpu_healthy())
    }

    /// A GPU named by UUID or index.
    pub(crate) fn find_gpu(&self, name: &str) -> Option<GpuId> {
        self.read(|s, _| {
            let e = s.engine();
            e.gpu_by_uuid(name).or_else(|| {
                name.parse::<u32>()
                    .ok()
                    .map(GpuId)
                    .filter(|g| e.gpu(*g).is_some())
            })
        })
    }

    /// Whether `token` belongs to a known allocation.
    pub(crate) fn knows_token(&self, token: &str) -> bool {
        let key = token::key(token);
        self.read(|s, _| s.engine().allocation(&key).is_some())
    }

    pub(crate) fn queue_depth(&self) -> QueueDepth {
        self.read(|s, _| s.queue_depth())
    }

    /// Catalog vs measured memory, per catalog model.
    pub(crate) fn model_memory(&self) -> Vec<ModelMemory> {
        self.read(|s, _| s.model_memory())
    }

    /// The catalog and where each model is.
    pub(crate) fn models(&self) -> Vec<ModelResidency> {
        self.read(|s, _| s.models())
    }

    fn lease_info(&self, lease: &Lease) -> LeaseInfo {
        self.read(|s, now| s.lease_info(lease, now))
    }

    // ---- leases and operator calls ---------------------------------------

    /// Ends a lease; `token` is `None` for the operator, who may end any.
    pub fn release(&self, lease: LeaseId, token: Option<&str>) -> Result<(), LeaseError> {
        let key = token.map(token::key);
        self.with_state(&Span::current(), |s, now| {
            s.release(lease, key.as_deref(), now)
        })
    }

    /// Extends a lease by its TTL; returns the time left.
    pub(crate) fn keep_alive(
        &self,
        lease: LeaseId,
        token: Option<&str>,
    ) -> Result<Duration, LeaseError> {
        let key = token.map(token::key);
        self.with_state(&Span::current(), |s, now| {
            s.keep_alive(lease, key.as_deref(), now)
        })
    }

    /// Operator: unloads idle copies of `model`; returns the GPUs.
    pub(crate) fn evict(&self, model: &str, gpu: Option<GpuId>) -> Result<Vec<GpuRef>, AdminError> {
        self.with_state(&Span::current(), |s, now| s.evict(model, gpu, now))
    }

    // ---- allocations -------------------------------------------------------

    /// Records a new allocation under a freshly minted token, and returns
    /// the token (what Allocate hands the container).
    pub fn allocate(&self, kind: AllocKind) -> Result<String, AllocateError> {
        let token = token::mint().map_err(AllocateError::Randomness)?;
        let key = token::key(&token);
        self.with_state(&Span::current(), |s, now| s.allocate(&key, kind, now))?;
        Ok(token)
    }

    /// Records an allocation saved before a restart, under its token's key
    /// ([`token::key`]).
    pub(crate) fn restore_allocation(&self, key: &str, kind: AllocKind) -> Result<(), AllocError> {
        self.with_state(&Span::current(), |s, now| s.allocate(key, kind, now))
    }

    /// Forgets an allocation by its token's key: its leases are revoked,
    /// its memory returns.
    pub(crate) fn deallocate(&self, key: &str) -> Result<AllocKind, AllocError> {
        self.with_state(&Span::current(), |s, now| s.deallocate(key, now))
    }

    // ---- GPUs, the runtime, kubelet ------------------------------------------

    /// Applies a GPU's health (from its health events or a poll): unhealthy
    /// drops its residents and revokes its leases. Returns whether it changed.
    pub fn set_gpu_health(&self, uuid: &str, health: &Health) -> bool {
        let changed = self.with_state(&Span::current(), |s, now| s.set_health(uuid, health, now));
        if changed {
            self.health.send_modify(|generation| *generation += 1);
        }
        changed
    }

    fn observe_gpu_used(&self, uuid: &str, used_mib: u64, backend: Backend) {
        self.with_state(&Span::current(), |s, now| {
            s.observe_used(uuid, used_mib, backend, now)
        });
    }

    /// A runtime load ended; `measured_mib` is what it really took, when
    /// measured.
    fn load_finished(
        &self,
        load: LoadId,
        result: &Result<Loaded, LoadError>,
        took: Duration,
        measured_mib: Option<u64>,
    ) {
        self.with_state(&Span::current(), |s, now| {
            s.load_finished(load, result, took, measured_mib, now)
        });
    }

    /// A runtime unload ended, having given back `returned_mib`.
    fn unload_returned(&self, model: &str, gpu_uuid: &str, returned_mib: u64) {
        self.with_state(&Span::current(), |s, _| {
            s.unload_returned(model, gpu_uuid, returned_mib)
        });
    }

    /// A worker finished a job of `gpu`.
    fn job_done(&self, gpu: GpuId) {
        self.with_state(&Span::current(), |s, _| s.job_done(gpu));
    }

    /// A device plugin's registration with kubelet changed: counted (when
    /// registered) and published.
    pub fn kubelet_registration(&self, registration: Registration) {
        // Counted under the state lock with the event published, so that a
        // reader who has the event sees the count, and one who saw the
        // count and then took the lock (any call) finds the event out.
        self.with_state(&Span::current(), |s, now| {
            if registration.registered {
                self.metrics.count_registration(&registration.resource);
            }
            s.registration(registration, now)
        });
    }

    // ---- the deadline timer ----------------------------------------------------

    /// The engine's next deadline, which the timer (the one asking) then
    /// sleeps until; a later one is found when it wakes.
    fn next_deadline(&self) -> Option<Time> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let next = state.next_deadline();
        self.timer_at
            .store(next.map_or(u64::MAX, Time::as_millis), Ordering::Relaxed);
        next
    }

    fn tick(&self) {
        self.with_state(&Span::current(), |s, now| s.tick(now));
    }

    /// Resolves after an engine call moved the deadline earlier.
    async fn deadline_moved(&self) {
        self.timer.notified().await;
    }
}
