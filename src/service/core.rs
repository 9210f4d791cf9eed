//! The state behind the lock: the engine plus who waits for what, and the
//! carrying out of the engine's effects.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use super::convert;
use crate::engine::{
    Effect, Engine, GpuId, Lease, LeaseId, LoadId, ModelId, Rejection, TicketId, Time, UnloadReason,
};
use crate::proto::vision::v1 as pb;
use crate::runtime::LoadRequest;
use crate::telemetry::Metrics;
use pb::watch_event::Event as Body;

/// A state change, as Watch streams see it.
#[derive(Debug, Clone)]
pub struct Event {
    pub seq: u64,
    pub at: Time,
    /// The token whose lease or admission this is; `None` for node-level events.
    pub owner: Option<Arc<str>>,
    pub body: Body,
}

/// Work for one GPU's runtime worker.
#[derive(Debug)]
pub enum Job {
    Load {
        load: LoadId,
        model: ModelId,
        req: LoadRequest,
        /// The span that caused the load (an admission, a preload): the
        /// load's span is its child, so a cold start shows in the caller's trace.
        cause: tracing::Span,
    },
    Unload {
        model: String,
        gpu_uuid: String,
    },
    /// Shutdown: finish what is queued, then stop.
    Stop,
}

/// Someone waiting for a pending admission.
pub(super) struct Waiter {
    pub tx: oneshot::Sender<Result<Lease, Rejection>>,
    pub token: Arc<str>,
    pub model: ModelId,
}

pub(super) struct Core {
    pub engine: Engine,
    pub waiters: HashMap<TicketId, Waiter>,
    /// Operators waiting for a Preload to finish, by load.
    pub preloads: HashMap<LoadId, Vec<oneshot::Sender<Result<Duration, String>>>>,
    /// When each load in flight started.
    pub loads: HashMap<LoadId, Time>,
    /// The token behind each live lease (events go to their owner only).
    pub owners: HashMap<LeaseId, Arc<str>>,
    /// Runtime endpoint of each loaded copy, when the runtime names one.
    pub endpoints: HashMap<(GpuId, ModelId), String>,
    last_queue: (usize, usize),
    seq: u64,
}

impl Core {
    pub fn new(engine: Engine) -> Core {
        Core {
            engine,
            waiters: HashMap::new(),
            preloads: HashMap::new(),
            loads: HashMap::new(),
            owners: HashMap::new(),
            endpoints: HashMap::new(),
            last_queue: (0, 0),
            seq: 0,
        }
    }

    /// Publishes an event; nobody listening is fine.
    pub fn emit(
        &mut self,
        events: &broadcast::Sender<Event>,
        now: Time,
        owner: Option<Arc<str>>,
        body: Body,
    ) {
        self.seq += 1;
        let _ = events.send(Event {
            seq: self.seq,
            at: now,
            owner,
            body,
        });
    }

    fn emit_pool(
        &mut self,
        events: &broadcast::Sender<Event>,
        now: Time,
        gpu: GpuId,
        overcommitted: bool,
        committed_mib: u64,
        usable_mib: u64,
    ) {
        let body = Body::Pool(pb::PoolEvent {
            gpu_index: gpu.0,
            gpu_uuid: self
                .engine
                .gpu(gpu)
                .map(|g| g.uuid.clone())
                .unwrap_or_default(),
            overcommitted,
            committed_mib,
            usable_mib,
        });
        self.emit(events, now, None, body);
    }

    /// Carries out every effect the engine left, including those that
    /// carrying them out causes (a grant nobody waits for any more is released).
    pub fn carry_out(
        &mut self,
        now: Time,
        events: &broadcast::Sender<Event>,
        jobs: &[mpsc::UnboundedSender<Job>],
        metrics: &Metrics,
    ) {
        loop {
            let effects: Vec<Effect> = self.engine.drain_effects().collect();
            if effects.is_empty() {
                break;
            }
            for effect in effects {
                self.carry_out_one(effect, now, events, jobs, metrics);
            }
        }
        let queue = (self.engine.queued(), self.engine.waiting_on_load());
        if queue != self.last_queue {
            self.last_queue = queue;
            let body = Body::Queue(pb::QueueEvent {
                queued: queue.0 as u32,
                waiting_on_load: queue.1 as u32,
            });
            self.emit(events, now, None, body);
        }
    }

    fn carry_out_one(
        &mut self,
        effect: Effect,
        now: Time,
        events: &broadcast::Sender<Event>,
        jobs: &[mpsc::UnboundedSender<Job>],
        metrics: &Metrics,
    ) {
        match effect {
            Effect::Grant { ticket, lease } => {
                let Some(waiter) = self.waiters.remove(&ticket) else {
                    // Granted to a caller that is gone: give it straight back.
                    let _ = self.engine.release(lease.id, None, now);
                    return;
                };
                let body = Body::LeaseGranted(pb::LeaseEvent {
                    lease: Some(convert::lease(self, &lease, now)),
                    reason: String::new(),
                });
                if waiter.tx.send(Ok(lease)).is_err() {
                    let _ = self.engine.release(lease.id, None, now);
                    return;
                }
                self.owners.insert(lease.id, Arc::clone(&waiter.token));
                metrics.observe_wait(lease.warm, lease.waited().as_secs_f64());
                self.emit(events, now, Some(waiter.token), body);
            }
            Effect::Reject { ticket, reason } => {
                if let Some(waiter) = self.waiters.remove(&ticket) {
                    let body = Body::AdmissionRejected(pb::AdmissionRejected {
                        model: self.engine.model(waiter.model).name.clone(),
                        reason: crate::engine::Outcome::from(&reason).as_str().to_owned(),
                    });
                    self.emit(events, now, Some(Arc::clone(&waiter.token)), body);
                    let _ = waiter.tx.send(Err(reason));
                }
            }
            Effect::Load { load, gpu, model } => {
                self.loads.insert(load, now);
                let spec = self.engine.model(model).clone();
                let gpu_spec = self.engine.gpu(gpu).expect("the engine's own GPU").clone();
                let body = Body::ModelLoading(pb::ModelEvent {
                    model: spec.name.clone(),
                    gpu_index: gpu.0,
                    gpu_uuid: gpu_spec.uuid.clone(),
                    weights_mib: spec.weights_mib,
                    reason: String::new(),
                    duration_ms: 0,
                });
                self.emit(events, now, None, body);
                tracing::info!(model = %spec.name, gpu = %gpu_spec.uuid, %load, "loading model");
                let req = LoadRequest {
                    model: spec.name,
                    gpu_uuid: gpu_spec.uuid,
                    gpu_index: gpu.0,
                    weights_mib: spec.weights_mib,
                    load_id: load.0,
                    expected: Duration::from_millis(spec.load_ms),
                };
                if let Some(tx) = jobs.get(gpu.0 as usize) {
                    let _ = tx.send(Job::Load {
                        load,
                        model,
                        req,
                        cause: tracing::Span::current(),
                    });
                }
            }
            Effect::Unload { gpu, model, reason } => {
                self.endpoints.remove(&(gpu, model));
                let spec = self.engine.model(model);
                let uuid = self
                    .engine
                    .gpu(gpu)
                    .expect("the engine's own GPU")
                    .uuid
                    .clone();
                let reason_text = match reason {
                    UnloadReason::Evicted { for_model: Some(m) } => {
                        format!("evicted for {}", self.engine.model(m).name)
                    }
                    UnloadReason::Evicted { for_model: None } => {
                        "evicted for memory pressure".into()
                    }
                    UnloadReason::Admin => "admin".into(),
                    UnloadReason::GpuUnhealthy => "gpu_unhealthy".into(),
                    UnloadReason::Shutdown => "shutdown".into(),
                };
                tracing::info!(model = %spec.name, gpu = %uuid, reason = %reason_text, "unloading model");
                let body = Body::ModelEvicted(pb::ModelEvent {
                    model: spec.name.clone(),
                    gpu_index: gpu.0,
                    gpu_uuid: uuid.clone(),
                    weights_mib: spec.weights_mib,
                    reason: reason_text,
                    duration_ms: 0,
                });
                let name = spec.name.clone();
                self.emit(events, now, None, body);
                if let Some(tx) = jobs.get(gpu.0 as usize) {
                    let _ = tx.send(Job::Unload {
                        model: name,
                        gpu_uuid: uuid,
                    });
                }
            }
            Effect::Expire { lease } => {
                let owner = self.owners.remove(&lease.id);
                let model = &self.engine.model(lease.model).name;
                let gpu = self
                    .engine
                    .gpu(lease.gpu)
                    .map(|g| g.uuid.as_str())
                    .unwrap_or_default();
                let span = tracing::info_span!("lease.expire", lease = lease.id.0, model = %model, gpu.uuid = %gpu,
                    held_ms = now.saturating_since(lease.granted_at).as_millis() as u64);
                span.in_scope(|| tracing::warn!(lease = %lease.id, %model, "lease expired without KeepAlive; reclaimed"));
                let body = Body::LeaseExpired(pb::LeaseEvent {
                    lease: Some(convert::lease(self, &lease, now)),
                    reason: "expired".into(),
                });
                self.emit(events, now, owner, body);
            }
            Effect::Revoke { lease, reason } => {
                let owner = self.owners.remove(&lease.id);
                let reason = match reason {
                    crate::engine::RevokeReason::GpuUnhealthy => "gpu_unhealthy",
                    crate::engine::RevokeReason::AllocationReleased => "allocation_released",
                };
                let body = Body::LeaseRevoked(pb::LeaseEvent {
                    lease: Some(convert::lease(self, &lease, now)),
                    reason: reason.into(),
                });
                self.emit(events, now, owner, body);
            }
            Effect::Overcommitted {
                gpu,
                committed_mib,
                usable_mib,
            } => {
                tracing::warn!(%gpu, committed_mib, usable_mib,
                    "GPU pool over-committed; admissions there wait until it drains");
                self.emit_pool(events, now, gpu, true, committed_mib, usable_mib);
            }
            Effect::Drained { gpu } => {
                tracing::info!(%gpu, "GPU pool no longer over-committed");
                self.emit_pool(events, now, gpu, false, 0, 0);
            }
        }
    }
}
