//! The async shell around the engine, and the admission gRPC service.
//!
//! [`Node`] owns the [`Engine`] behind a `std::sync::Mutex` that is held only
//! for one synchronous engine call plus the handling of the effects it left
//! (answering waiting callers, queueing runtime jobs, publishing events) —
//! never across an `.await`. Background tasks ([`tasks`]) sleep until the
//! engine's next deadline, run model loads and unloads through the
//! [`ModelRuntime`] one GPU at a time, and reconcile the GPU inventory.
//!
//! [`AdmissionService`] is the thin tonic adapter, instantiated once per
//! socket with its [`Access`] level.

mod convert;
mod core;
mod grpc;
pub mod tasks;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, mpsc, watch};

pub use self::core::Event;
pub use grpc::AdmissionService;

use self::core::{Core, Job};
use crate::engine::{Engine, GpuId, Time};
use crate::proto::vision::v1 as pb;
use crate::runtime::ModelRuntime;
use crate::telemetry::Metrics;

/// Resolves once `rx` has seen shutdown begin (or the node is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here: it must not live across
    // an await in a spawned task (it is not Send).
    let _ = rx.wait_for(|down| *down).await;
}

/// Who is on the other end of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The task socket mounted into pods: calls carry the caller's token and
    /// see only their own leases; operator calls are refused.
    Task,
    /// The admin socket (mode 0600, never mounted): everything, no token.
    Admin,
}

/// Milliseconds since the daemon started, as the engine counts time.
/// `tokio::time::Instant` so that tests can pause and advance time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: tokio::time::Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock {
            start: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> Time {
        Time::from_millis(u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    pub fn instant(&self, t: Time) -> tokio::time::Instant {
        self.start + Duration::from_millis(t.as_millis())
    }

    /// Sleeps until `at`; with no deadline, forever (a branch of a
    /// `select!` that other branches end).
    pub async fn sleep_until(self, at: Option<Time>) {
        match at {
            Some(at) => tokio::time::sleep_until(self.instant(at)).await,
            None => std::future::pending().await,
        }
    }
}

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

/// The shared state of a running daemon. See the module docs.
pub struct Node {
    core: Mutex<Core>,
    clock: Clock,
    info: NodeInfo,
    runtime: Arc<dyn ModelRuntime>,
    /// Every state change, for Watch streams.
    events: broadcast::Sender<Event>,
    /// Bumped with every GPU health event: the device plugins' publisher
    /// waits on this rather than on `events`, which would wake it for every
    /// lease granted or released (issue 11).
    health: watch::Sender<u64>,
    /// Wakes the deadline timer when an engine call moved the next deadline
    /// before the one it sleeps until.
    timer: Notify,
    /// The deadline the timer sleeps until, in ms (`u64::MAX`: none). Read
    /// and written under the `core` lock, so a call either sees the value
    /// or happened before the timer read the engine. Waking the timer on
    /// every call cost a task wake-up per Admit and Release (issue 11).
    timer_at: AtomicU64,
    /// One runtime job queue per GPU: loads and unloads of one GPU run in the
    /// engine's order.
    jobs: Vec<mpsc::UnboundedSender<Job>>,
    /// Flips to true once when the daemon starts shutting down.
    shutdown: watch::Sender<bool>,
    /// What the shell observes for Prometheus (waits, load durations, registrations).
    metrics: Arc<Metrics>,
}

/// The receiving ends that [`tasks::spawn_runtime_workers`] consumes.
pub struct JobQueues(Vec<(GpuId, mpsc::UnboundedReceiver<Job>)>);

impl Node {
    /// Wraps an engine (GPUs and catalog already set up).
    pub fn new(
        engine: Engine,
        info: NodeInfo,
        runtime: Arc<dyn ModelRuntime>,
        clock: Clock,
    ) -> (Arc<Node>, JobQueues) {
        let (events, _) = broadcast::channel(1024);
        let mut jobs = Vec::new();
        let mut queues = Vec::new();
        for i in 0..engine.gpu_count() {
            let (tx, rx) = mpsc::unbounded_channel();
            jobs.push(tx);
            queues.push((GpuId(i as u32), rx));
        }
        let node = Arc::new(Node {
            core: Mutex::new(Core::new(engine)),
            clock,
            info,
            runtime,
            events,
            health: watch::channel(0).0,
            timer: Notify::new(),
            timer_at: AtomicU64::new(u64::MAX),
            jobs,
            shutdown: watch::channel(false).0,
            metrics: Arc::new(Metrics::default()),
        });
        (node, JobQueues(queues))
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    pub fn info(&self) -> &NodeInfo {
        &self.info
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn runtime(&self) -> &Arc<dyn ModelRuntime> {
        &self.runtime
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Changes whenever a GPU's health changed (a `GpuHealth` event was
    /// published); read the engine for the state.
    pub fn health_changes(&self) -> watch::Receiver<u64> {
        self.health.subscribe()
    }

    /// A receiver that sees `true` once shutdown has begun.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Runs one synchronous call on the engine at `now`, then carries out the
    /// effects it left. The lock is held for exactly that; nothing awaits.
    pub fn with_engine<R>(&self, f: impl FnOnce(&mut Engine, Time) -> R) -> R {
        self.with_core(|core, now| f(&mut core.engine, now))
    }

    fn with_core<R>(&self, f: impl FnOnce(&mut Core, Time) -> R) -> R {
        let now = self.clock.now();
        let mut core = self.core.lock().unwrap_or_else(PoisonError::into_inner);
        let result = f(&mut core, now);
        core.carry_out(now, &self.events, &self.jobs, &self.metrics);
        let next = core
            .engine
            .next_deadline()
            .map_or(u64::MAX, Time::as_millis);
        let earlier = next < self.timer_at.load(Ordering::Relaxed);
        drop(core);
        if earlier {
            self.timer.notify_one();
        }
        result
    }

    /// The engine's next deadline, which the timer (the one asking) then
    /// sleeps until; a later one is found when it wakes.
    fn next_deadline(&self) -> Option<Time> {
        let mut core = self.core.lock().unwrap_or_else(PoisonError::into_inner);
        let next = core.engine.next_deadline();
        self.timer_at
            .store(next.map_or(u64::MAX, Time::as_millis), Ordering::Relaxed);
        next
    }

    fn read_core<R>(&self, f: impl FnOnce(&Core, Time) -> R) -> R {
        let now = self.clock.now();
        let core = self.core.lock().unwrap_or_else(PoisonError::into_inner);
        f(&core, now)
    }

    /// Reads engine state without changing it.
    pub fn read<R>(&self, f: impl FnOnce(&Engine) -> R) -> R {
        let core = self.core.lock().unwrap_or_else(PoisonError::into_inner);
        f(&core.engine)
    }

    /// Publishes a node-level event (one the engine does not produce, e.g. a
    /// kubelet registration) to Watch streams and the cluster publisher.
    pub fn publish(&self, body: pb::watch_event::Event) {
        let now = self.clock.now();
        let mut core = self.core.lock().unwrap_or_else(PoisonError::into_inner);
        core.emit(&self.events, now, None, body);
    }

    /// Begins shutdown: every waiting admission is answered UNAVAILABLE, every
    /// copy is unloaded through the runtime, Watch streams end, and the
    /// runtime workers stop after their queued jobs.
    pub fn begin_shutdown(&self) {
        if self.shutdown.send_replace(true) {
            return;
        }
        // A runtime whose copies outlive the daemon: the workers stop before
        // the engine's shutdown unloads reach them.
        let keep = !self.runtime.unload_on_shutdown();
        if keep {
            for tx in &self.jobs {
                let _ = tx.send(Job::Stop);
            }
        }
        self.with_engine(|engine, now| engine.shutdown(now));
        if !keep {
            for tx in &self.jobs {
                let _ = tx.send(Job::Stop);
            }
        }
    }

    /// Records a copy the runtime already holds (its ListLoaded at start) as
    /// an idle resident, with the endpoint leases on it name. `None` when
    /// the model or GPU is not this daemon's, or the copy is already known.
    pub fn restore_resident(&self, copy: &crate::runtime::LoadedCopy) -> Option<()> {
        self.with_core(|core, now| {
            let gpu = core.engine.gpu_by_uuid(&copy.gpu_uuid)?;
            let model = core.engine.model_id(&copy.model)?;
            core.engine.restore_resident(gpu, model, now).ok()?;
            if !copy.endpoint.is_empty() {
                core.endpoints.insert((gpu, model), copy.endpoint.clone());
            }
            Some(())
        })
    }

    /// A status snapshot in wire form, scoped to `token` when given.
    pub fn status_pb(&self, token: Option<&str>) -> pb::StatusResponse {
        self.read_core(|core, now| convert::status(core, &self.info, token, now))
    }
}
