//! Effects → events and runtime jobs: the one place the engine's
//! decisions are carried out.

use std::sync::Arc;
use std::time::Duration;

use tracing::Span;

use super::{Running, State};
use crate::engine::{Effect, GpuId, Lease, LoadId, ModelId, Outcome, TicketId, Time, UnloadReason};
use crate::node::admit::AdmitFailure;
use crate::node::event::{EventKind, UnloadCause};
use crate::node::worker::Job;
use crate::runtime::{self, LoadRequest};

impl State {
    /// Carries out every effect the engine left, including those that
    /// carrying them out causes (a grant nobody waits for any more is
    /// released), then publishes a changed queue depth. `cause` is the span
    /// of the call that made the engine decide: a load that no admission
    /// waits on (a preload) is its child.
    pub(in crate::node) fn carry_out(&mut self, now: Time, cause: &Span) {
        loop {
            let effects: Vec<Effect> = self.engine.drain_effects().collect();
            if effects.is_empty() {
                break;
            }
            for effect in effects {
                self.carry_out_one(effect, now, cause);
            }
        }
        let queue = self.queue_depth();
        if queue != self.last_queue {
            self.last_queue = queue;
            self.emit(now, None, EventKind::Queue(queue));
        }
    }

    fn carry_out_one(&mut self, effect: Effect, now: Time, cause: &Span) {
        match effect {
            Effect::Grant { ticket, lease } => self.answer_grant(ticket, lease, now),
            Effect::Reject { ticket, reason } => {
                if let Some(waiter) = self.waiters.remove(&ticket) {
                    let model = self.engine.model(waiter.model).name.clone();
                    let outcome = Outcome::from(&reason);
                    let kind = EventKind::AdmissionRejected { model, outcome };
                    self.emit(now, Some(Arc::clone(&waiter.token)), kind);
                    let _ = waiter.tx.send(Err(AdmitFailure::Rejected(reason)));
                }
            }
            Effect::Load { load, gpu, model } => self.start_load(load, gpu, model, now, cause),
            Effect::Unload { gpu, model, reason } => self.unload(gpu, model, reason, now),
            Effect::Expire { lease } => {
                let info = self.lease_info(&lease, now);
                let held_ms = now.saturating_since(lease.granted_at).as_millis() as u64;
                let span = tracing::info_span!("lease.expire", lease = lease.id.0, model = %info.model,
                    gpu.uuid = %info.gpu.uuid, held_ms);
                span.in_scope(|| {
                    tracing::warn!(lease = %lease.id, model = %info.model,
                    "lease expired without KeepAlive; reclaimed")
                });
                let owner = self.owners.remove(&lease.id);
                self.emit(now, owner, EventKind::LeaseExpired(info));
            }
            Effect::Revoke { lease, reason } => {
                let info = self.lease_info(&lease, now);
                let owner = self.owners.remove(&lease.id);
                let kind = EventKind::LeaseRevoked {
                    lease: info,
                    reason,
                };
                self.emit(now, owner, kind);
            }
            Effect::Overcommitted {
                gpu,
                committed_mib,
                usable_mib,
            } => {
                tracing::warn!(%gpu, committed_mib, usable_mib,
                    "GPU pool over-committed; admissions there wait until it drains");
                let gpu = self.gpu_ref(gpu);
                let kind = EventKind::PoolOvercommitted {
                    gpu,
                    committed_mib,
                    usable_mib,
                };
                self.emit(now, None, kind);
            }
            Effect::Drained { gpu } => {
                tracing::info!(%gpu, "GPU pool no longer over-committed");
                let gpu = self.gpu_ref(gpu);
                self.emit(now, None, EventKind::PoolDrained { gpu });
            }
        }
    }

    /// A pending admission got its lease; if its caller is gone, the lease
    /// goes straight back.
    fn answer_grant(&mut self, ticket: TicketId, lease: Lease, now: Time) {
        let Some(waiter) = self.waiters.remove(&ticket) else {
            let _ = self.engine.release(lease.id, None, now);
            return;
        };
        if waiter.tx.send(Ok(lease)).is_err() {
            let _ = self.engine.release(lease.id, None, now);
            return;
        }
        self.lease_granted(&lease, waiter.token, now);
    }

    /// Publishes the load and hands it to the GPU's worker, under the span
    /// of the admission that caused it (the first waiting on it), or of the
    /// call that did (a preload).
    fn start_load(&mut self, load: LoadId, gpu: GpuId, model: ModelId, now: Time, cause: &Span) {
        let copy = self.model_copy(gpu, model);
        tracing::info!(model = %copy.model, gpu = %copy.gpu.uuid, %load, "loading model");
        let cause = self
            .engine
            .load_waiters(load)
            .first()
            .and_then(|t| self.waiters.get(t))
            .map_or_else(|| cause.clone(), |w| w.span.clone());
        let req = LoadRequest {
            model: copy.model.clone(),
            gpu_uuid: copy.gpu.uuid.clone(),
            gpu_index: gpu.0,
            weights_mib: copy.weights_mib,
            load_id: load.0,
            expected: Duration::from_millis(self.engine.model(model).load_ms),
        };
        self.emit(now, None, EventKind::ModelLoading(copy));
        let started = now;
        self.loads.insert(
            load,
            Running {
                gpu,
                model,
                started,
            },
        );
        let job = Job::Load { load, req, cause };
        self.send_job(gpu, job);
    }

    fn unload(&mut self, gpu: GpuId, model: ModelId, reason: UnloadReason, now: Time) {
        self.served.remove(&(gpu, model));
        self.measured.remove(&(gpu, model));
        let copy = self.model_copy(gpu, model);
        let (cause, why) = match reason {
            UnloadReason::Evicted { for_model } => (
                UnloadCause::Evicted {
                    for_model: for_model.map(|m| self.engine.model(m).name.clone()),
                },
                runtime::UnloadReason::Evicted,
            ),
            UnloadReason::Admin => (UnloadCause::Admin, runtime::UnloadReason::Operator),
            UnloadReason::GpuUnhealthy => (
                UnloadCause::GpuUnhealthy,
                runtime::UnloadReason::GpuUnhealthy,
            ),
            UnloadReason::Shutdown => (UnloadCause::Shutdown, runtime::UnloadReason::Shutdown),
        };
        tracing::info!(model = %copy.model, gpu = %copy.gpu.uuid, reason = %cause, "unloading model");
        let job = Job::Unload {
            model: copy.model.clone(),
            gpu_uuid: copy.gpu.uuid.clone(),
            reason: why,
        };
        self.emit(
            now,
            None,
            EventKind::ModelUnloaded {
                copy,
                reason: cause,
            },
        );
        self.send_job(gpu, job);
    }
}
