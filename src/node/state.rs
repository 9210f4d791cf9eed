//! The state behind the node's lock: the engine, and the shell's own
//! bookkeeping of who waits for what.
//!
//! Every method here leaves the maps consistent with the engine: a lease's
//! owner is recorded where it is granted and forgotten where it ends, a
//! waiter is dropped where its ticket is answered or cancelled. The engine's
//! effects become events and runtime jobs in one place, [`State::carry_out`];
//! the other events (a release, a finished load, a health change, a kubelet
//! registration) are emitted by the one method that makes each change.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::Span;

use super::admit::{AdmitFailure, PreloadFailure};
use super::bus::{Bus, Shared};
use super::event::{
    Event, EventKind, GpuRef, LeaseInfo, LoadError, ModelCopy, QueueDepth, Registration,
};
use super::reach::Reach;
use super::view::{ModelMemory, ModelResidency, NodeStatus};
use super::worker::Job;
use crate::engine::{
    AdminError, AdmitRequest, AllocError, AllocKind, Effect, Engine, GpuId, Lease, LeaseError,
    LeaseId, LoadId, ModelId, TicketId, Time, UnloadReason,
};
use crate::gpu::{Backend, Health};
use crate::runtime::{Loaded, LoadedCopy};
use crate::telemetry::Metrics;

mod effects;
mod runtime;

/// What a pending admission's caller receives.
pub(super) type Answer = Result<Lease, AdmitFailure>;

/// Someone waiting for a pending admission.
struct Waiter {
    tx: oneshot::Sender<Answer>,
    token: Arc<str>,
    model: ModelId,
    /// The admission's span: a load started for it is its child.
    span: Span,
}

/// What a Preload caller waits for: how long the load took, or why it failed.
pub(super) type PreloadAnswer = oneshot::Sender<Result<Duration, LoadError>>;

/// An admission's immediate outcome.
pub(super) enum Admitted {
    Granted(LeaseInfo),
    Pending(TicketId),
}

/// Where and as what the model runtime serves a copy.
#[derive(Debug, Clone, Default)]
struct Served {
    endpoint: String,
    /// The runtime's name for the model.
    model: String,
}

/// A load the runtime is running (the shell answers it itself when the
/// runtime is lost).
#[derive(Debug, Clone, Copy)]
struct Running {
    gpu: GpuId,
    model: ModelId,
    started: Time,
}

pub(super) struct State {
    engine: Engine,
    /// Callers of pending admissions, by ticket.
    waiters: HashMap<TicketId, Waiter>,
    /// Operators waiting for a Preload to finish, by the load it started.
    preloads: HashMap<LoadId, Vec<PreloadAnswer>>,
    /// The token behind each live lease (lease events go to their owner only).
    owners: HashMap<LeaseId, Arc<str>>,
    /// Endpoint and runtime name of each loaded copy, when the runtime names them.
    served: HashMap<(GpuId, ModelId), Served>,
    /// Loads handed to the workers and not finished yet.
    loads: HashMap<LoadId, Running>,
    /// Runtime jobs per GPU: queued or running now, and sent ever (a
    /// reconcile skips a GPU whose jobs moved while it listed the runtime).
    jobs_in_flight: Vec<u32>,
    jobs_sent: Vec<u64>,
    /// Whether the model runtime answers (`node::reach`).
    reach: Reach,
    /// The runtime's kind, for messages.
    runtime_kind: &'static str,
    /// Copies pinned by leases when the runtime was lost: kept until it
    /// answers again and its list confirms or drops them.
    unconfirmed: BTreeSet<(GpuId, ModelId)>,
    /// What each measured copy really occupies (the ledger counts this).
    measured: HashMap<(GpuId, ModelId), u64>,
    /// Per model: the last measured load and what the last unload returned.
    memory: HashMap<ModelId, ModelMemory>,
    /// The queue depth last published: only changes are.
    last_queue: QueueDepth,
    /// Sequence number of the last event.
    seq: u64,
    /// Where events go (Watch streams, the cluster publisher).
    bus: Bus,
    /// One runtime job queue per GPU: loads and unloads of one GPU run in
    /// the engine's order.
    jobs: Vec<mpsc::UnboundedSender<Job>>,
    metrics: Arc<Metrics>,
}

impl State {
    pub(super) fn new(
        engine: Engine,
        bus: Bus,
        jobs: Vec<mpsc::UnboundedSender<Job>>,
        metrics: Arc<Metrics>,
        runtime_kind: &'static str,
    ) -> State {
        State {
            waiters: HashMap::new(),
            preloads: HashMap::new(),
            owners: HashMap::new(),
            served: HashMap::new(),
            loads: HashMap::new(),
            jobs_in_flight: vec![0; jobs.len()],
            jobs_sent: vec![0; jobs.len()],
            // Until the runtime fails to answer.
            reach: Reach::Up,
            runtime_kind,
            unconfirmed: BTreeSet::new(),
            measured: HashMap::new(),
            memory: HashMap::new(),
            engine,
            last_queue: QueueDepth::default(),
            seq: 0,
            bus,
            jobs,
            metrics,
        }
    }

    /// The engine, read-only: every change goes through a method here.
    pub(super) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(super) fn next_deadline(&mut self) -> Option<Time> {
        self.engine.next_deadline()
    }

    // ---- views -----------------------------------------------------------

    pub(super) fn gpu_ref(&self, gpu: GpuId) -> GpuRef {
        GpuRef {
            id: gpu,
            uuid: self
                .engine
                .gpu(gpu)
                .map(|g| g.uuid.clone())
                .unwrap_or_default(),
        }
    }

    fn model_copy(&self, gpu: GpuId, model: ModelId) -> ModelCopy {
        let spec = self.engine.model(model);
        ModelCopy {
            model: spec.name.clone(),
            gpu: self.gpu_ref(gpu),
            weights_mib: spec.weights_mib,
        }
    }

    pub(super) fn lease_info(&self, lease: &Lease, now: Time) -> LeaseInfo {
        let spec = self.engine.model(lease.model);
        LeaseInfo {
            id: lease.id,
            model: spec.name.clone(),
            gpu: self.gpu_ref(lease.gpu),
            warm: lease.warm,
            waited: lease.waited(),
            expires_in: lease.expires_at.saturating_since(now),
            ttl: self.engine.settings().lease_ttl,
            runtime_endpoint: self
                .served
                .get(&(lease.gpu, lease.model))
                .map(|s| s.endpoint.clone())
                .unwrap_or_default(),
            runtime_model: self
                .served
                .get(&(lease.gpu, lease.model))
                .map(|s| s.model.clone())
                .unwrap_or_default(),
            working_mib: spec.working_mib,
        }
    }

    pub(super) fn queue_depth(&self) -> QueueDepth {
        QueueDepth {
            queued: self.engine.queued(),
            waiting_on_load: self.engine.waiting_on_load(),
        }
    }

    /// The node's status; `token` scopes the leases shown.
    pub(super) fn status(&self, token: Option<&str>, now: Time) -> NodeStatus {
        let leases = match token {
            Some(t) => self.engine.leases_of(t),
            None => self.engine.leases(),
        };
        let slots = match token.and_then(|t| self.engine.allocation(t)) {
            Some(AllocKind::Slots(n)) => n,
            _ => 0,
        };
        NodeStatus {
            at: now,
            engine: self.engine.status(),
            leases: leases.iter().map(|l| self.lease_info(l, now)).collect(),
            slots,
            runtime: self.runtime_status(now),
            memory: self.model_memory(),
        }
    }

    /// The catalog and where each model is resident or loading.
    pub(super) fn models(&self) -> Vec<ModelResidency> {
        let status = self.engine.status();
        self.engine
            .models()
            .iter()
            .map(|m| {
                let on = |loading: bool| {
                    status
                        .gpus
                        .iter()
                        .filter(|g| {
                            g.residents
                                .iter()
                                .any(|r| r.name == m.name && r.loading == loading)
                        })
                        .map(|g| g.uuid.clone())
                        .collect()
                };
                ModelResidency {
                    spec: m.clone(),
                    resident_on: on(false),
                    loading_on: on(true),
                }
            })
            .collect()
    }

    // ---- events ----------------------------------------------------------

    /// Publishes an event; nobody listening is fine.
    fn emit(&mut self, now: Time, owner: Option<Arc<str>>, kind: EventKind) {
        self.seq += 1;
        self.bus.publish(Event {
            seq: self.seq,
            at: now,
            owner,
            kind,
        });
    }

    /// A Watch stream for `token`: its own events and the node's.
    pub(super) fn subscribe_pod(&mut self, token: &Arc<str>) -> broadcast::Receiver<Shared> {
        self.bus.subscribe_pod(token)
    }

    /// Watch streams `token` has open.
    pub(super) fn streams_of(&self, token: &str) -> usize {
        self.bus.streams_of(token)
    }

    /// A lease went to `token`: its owner is recorded, its wait observed,
    /// and the grant published. Both ways to a lease (at once, or for a
    /// waiter) come through here.
    fn lease_granted(&mut self, lease: &Lease, token: Arc<str>, now: Time) -> LeaseInfo {
        self.owners.insert(lease.id, Arc::clone(&token));
        self.metrics
            .observe_wait(lease.warm, lease.waited().as_secs_f64());
        let info = self.lease_info(lease, now);
        self.emit(now, Some(token), EventKind::LeaseGranted(info.clone()));
        info
    }

    // ---- admissions and leases -------------------------------------------

    /// Admits, recording the models evicted for it on `span`. A pending
    /// admission's answer goes to `tx`.
    /// While the runtime is unreachable nothing is admitted: no load could
    /// start, and no copy can be confirmed to exist.
    pub(super) fn admit(
        &mut self,
        req: &AdmitRequest,
        tx: oneshot::Sender<Answer>,
        span: &Span,
        now: Time,
    ) -> Result<Admitted, AdmitFailure> {
        if let Some(down) = self.runtime_down(now) {
            self.metrics.count_runtime_unavailable();
            return Err(AdmitFailure::RuntimeUnavailable(down));
        }
        let result = self.engine.admit(req, now).map_err(AdmitFailure::Refused)?;
        let evicted: Vec<&str> = self
            .engine
            .pending_effects()
            .iter()
            .filter_map(|f| match f {
                Effect::Unload {
                    model,
                    reason: UnloadReason::Evicted { .. },
                    ..
                } => Some(self.engine.model(*model).name.as_str()),
                _ => None,
            })
            .collect();
        if !evicted.is_empty() {
            span.record("evicted", evicted.join(",").as_str());
        }
        let token: Arc<str> = Arc::from(req.token.as_str());
        Ok(match result {
            crate::engine::Admission::Granted(lease) => {
                Admitted::Granted(self.lease_granted(&lease, token, now))
            }
            crate::engine::Admission::Pending(ticket) => {
                let model = self
                    .engine
                    .model_id(&req.model)
                    .expect("admitted models exist");
                let waiter = Waiter {
                    tx,
                    token,
                    model,
                    span: span.clone(),
                };
                self.waiters.insert(ticket, waiter);
                Admitted::Pending(ticket)
            }
        })
    }

    /// The caller of a pending admission went away. A lease granted to it in
    /// the instant before is given straight back.
    pub(super) fn cancel(&mut self, ticket: TicketId, granted: Option<Lease>, now: Time) {
        self.waiters.remove(&ticket);
        self.engine.cancel(ticket, now);
        if let Some(lease) = granted {
            self.owners.remove(&lease.id);
            let _ = self.engine.release(lease.id, None, now);
        }
    }

    pub(super) fn release(
        &mut self,
        id: LeaseId,
        token: Option<&str>,
        now: Time,
    ) -> Result<(), LeaseError> {
        let lease = self.engine.lease(id);
        self.engine.release(id, token, now)?;
        if let Some(lease) = lease {
            let info = self.lease_info(&lease, now);
            let owner = self.owners.remove(&lease.id);
            self.emit(now, owner, EventKind::LeaseReleased(info));
        }
        Ok(())
    }

    pub(super) fn keep_alive(
        &mut self,
        id: LeaseId,
        token: Option<&str>,
        now: Time,
    ) -> Result<Duration, LeaseError> {
        self.engine
            .keep_alive(id, token, now)
            .map(|t| t.saturating_since(now))
    }

    pub(super) fn tick(&mut self, now: Time) {
        self.engine.tick(now);
    }

    // ---- operator calls --------------------------------------------------

    pub(super) fn preload(
        &mut self,
        model: &str,
        gpu: Option<GpuId>,
        answer: PreloadAnswer,
        now: Time,
    ) -> Result<GpuRef, PreloadFailure> {
        if let Some(down) = self.runtime_down(now) {
            self.metrics.count_runtime_unavailable();
            return Err(PreloadFailure::RuntimeUnavailable(down));
        }
        let (gpu, load) = self
            .engine
            .preload(model, gpu, now)
            .map_err(PreloadFailure::Refused)?;
        self.preloads.entry(load).or_default().push(answer);
        Ok(self.gpu_ref(gpu))
    }

    pub(super) fn evict(
        &mut self,
        model: &str,
        gpu: Option<GpuId>,
        now: Time,
    ) -> Result<Vec<GpuRef>, AdminError> {
        let gpus = self.engine.evict(model, gpu, now)?;
        Ok(gpus.into_iter().map(|g| self.gpu_ref(g)).collect())
    }

    /// A copy the model runtime already holds, idle, with the endpoint
    /// leases on it name (and its size, when the runtime reports one);
    /// false when the engine would not take it (already resident there).
    fn adopt(&mut self, gpu: GpuId, model: ModelId, copy: &LoadedCopy, now: Time) -> bool {
        if self.engine.restore_resident(gpu, model, now).is_err() {
            return false;
        }
        self.serve(gpu, model, &copy.endpoint, &copy.runtime_model);
        if copy.size_mib > 0 {
            self.measured((gpu, model), copy.size_mib, now);
        }
        true
    }

    /// Records where and as what the runtime serves a copy.
    fn serve(&mut self, gpu: GpuId, model: ModelId, endpoint: &str, runtime_model: &str) {
        if endpoint.is_empty() && runtime_model.is_empty() {
            self.served.remove(&(gpu, model));
        } else {
            let served = Served {
                endpoint: endpoint.to_owned(),
                model: runtime_model.to_owned(),
            };
            self.served.insert((gpu, model), served);
        }
    }

    // ---- allocations -----------------------------------------------------

    pub(super) fn allocate(
        &mut self,
        token: &str,
        kind: AllocKind,
        now: Time,
    ) -> Result<(), AllocError> {
        match kind {
            AllocKind::Slots(n) => self.engine.allocate_slots(token, n, now),
            AllocKind::Vram { gpu, mib } => self.engine.allocate_vram(token, gpu, mib, now),
        }
    }

    pub(super) fn deallocate(&mut self, token: &str, now: Time) -> Result<AllocKind, AllocError> {
        self.engine.deallocate(token, now)
    }

    // ---- GPUs --------------------------------------------------------------

    /// Applies a GPU's health; publishes and returns true when it changed.
    pub(super) fn set_health(&mut self, uuid: &str, health: &Health, now: Time) -> bool {
        let Some(gpu) = self.engine.gpu_by_uuid(uuid) else {
            return false;
        };
        let healthy = health.is_healthy();
        if !self.engine.set_health(gpu, healthy, now) {
            return false;
        }
        match health {
            Health::Healthy => tracing::info!(gpu = %uuid, "GPU healthy again"),
            Health::Unhealthy(reason) => tracing::warn!(gpu = %uuid, %reason,
                "GPU unhealthy: residents dropped, leases revoked"),
        }
        let gpu = self.gpu_ref(gpu);
        let health = health.clone();
        self.emit(now, None, EventKind::GpuHealth { gpu, health });
        true
    }

    /// Reconciles memory used by processes the ledger does not account for,
    /// from the inventory's `used_mib`.
    pub(super) fn observe_used(&mut self, uuid: &str, used_mib: u64, backend: Backend, now: Time) {
        let Some(gpu) = self.engine.gpu_by_uuid(uuid) else {
            return;
        };
        let Some(g) = self.engine.gpu_status(gpu) else {
            return;
        };
        let ours = match backend {
            Backend::Nvml => g.carved_mib + g.weights_mib + g.working_mib,
            Backend::Simulated => self.measured_on(gpu),
        };
        let external = external_estimate(backend, used_mib, ours);
        if external != g.external_mib {
            self.engine.set_external_mib(gpu, external, now);
        }
    }

    // ---- the model runtime -------------------------------------------------

    /// The runtime finished (or failed, or gave up on) a load: the copy's
    /// endpoint is recorded, the result published, Preload callers answered,
    /// the engine told, and a measured size put in the ledger. A load the
    /// shell already answered (the runtime was lost meanwhile) is ignored.
    pub(super) fn load_finished(
        &mut self,
        load: LoadId,
        result: &Result<Loaded, LoadError>,
        took: Duration,
        measured_mib: Option<u64>,
        now: Time,
    ) {
        let Some(Running { gpu, model, .. }) = self.loads.remove(&load) else {
            tracing::debug!(%load, "a load already answered finished");
            return;
        };
        let copy = self.model_copy(gpu, model);
        let kind = match result {
            Ok(loaded) => {
                self.metrics.observe_load(took.as_secs_f64());
                self.serve(gpu, model, &loaded.endpoint, &loaded.runtime_model);
                EventKind::ModelLoaded { copy, took }
            }
            Err(error) => {
                tracing::warn!(model = %copy.model, gpu = %copy.gpu.uuid, %error, "model load failed");
                let error = error.clone();
                EventKind::ModelLoadFailed { copy, took, error }
            }
        };
        self.emit(now, None, kind);
        for tx in self.preloads.remove(&load).unwrap_or_default() {
            let _ = tx.send(result.as_ref().map(|_| took).map_err(Clone::clone));
        }
        let outcome = result.as_ref().map(|_| ()).map_err(ToString::to_string);
        let known = self.engine.load_finished(load, outcome, now);
        if let (true, Ok(_), Some(mib)) = (known, result, measured_mib) {
            self.measured((gpu, model), mib, now);
        }
    }

    // ---- node-level events -------------------------------------------------

    pub(super) fn registration(&mut self, registration: Registration, now: Time) {
        self.emit(now, None, EventKind::Kubelet(registration));
    }

    /// Shutdown: every waiting admission is answered and every copy
    /// unloaded through the runtime (with reason `shutdown`: a runtime whose
    /// copies outlive the daemon keeps them, and the next daemon adopts
    /// them through ListLoaded); then the workers stop.
    pub(super) fn shutdown(&mut self, now: Time) {
        self.engine.shutdown(now);
        self.carry_out(now, &Span::none());
        for tx in &self.jobs {
            let _ = tx.send(Job::Stop);
        }
    }

    /// Hands a job to its GPU's worker, counting it as in flight.
    fn send_job(&mut self, gpu: GpuId, job: Job) {
        let i = gpu.0 as usize;
        if let Some(tx) = self.jobs.get(i)
            && tx.send(job).is_ok()
        {
            self.jobs_in_flight[i] += 1;
            self.jobs_sent[i] += 1;
        }
    }

    /// A worker finished a job of `gpu`.
    pub(super) fn job_done(&mut self, gpu: GpuId) {
        if let Some(n) = self.jobs_in_flight.get_mut(gpu.0 as usize) {
            *n = n.saturating_sub(1);
        }
    }
}

/// Memory used by processes the ledger does not account for.
///
/// NVML's "used" includes our own pods and model runtime, so the ledger's
/// commitment is subtracted — assuming all of it is really in use makes this
/// a lower bound on others' use. The simulated inventory's "used" is by
/// construction other processes' memory only.
fn external_estimate(backend: Backend, used_mib: u64, committed_mib: u64) -> u64 {
    match backend {
        Backend::Nvml => used_mib.saturating_sub(committed_mib),
        Backend::Simulated => used_mib,
    }
}
