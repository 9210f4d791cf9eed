//! The model runtime's side of the state: whether it answers, what it
//! holds (reconciling the ledger with its list of copies), and what its
//! copies really occupy (measured memory). `node::reach` has the semantics.

use std::collections::BTreeMap;

use tracing::Span;

use super::State;
use crate::engine::{GpuId, LoadId, ModelId, TicketId, Time};
use crate::node::admit::AdmitFailure;
use crate::node::event::{EventKind, LoadError, OUTGROWN_PERCENT, UnloadCause};
use crate::node::reach::{Reach, RuntimeDown};
use crate::node::view::{ModelMemory, RuntimeStatus};
use crate::runtime::LoadedCopy;

/// What a reconcile changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(in crate::node) struct Reconciled {
    pub(in crate::node) adopted: usize,
    pub(in crate::node) dropped: usize,
}

impl State {
    pub(in crate::node) fn is_up(&self) -> bool {
        self.reach == Reach::Up
    }

    /// Why nothing can be admitted now, while the runtime is unreachable.
    pub(in crate::node) fn runtime_down(&self, now: Time) -> Option<RuntimeDown> {
        match &self.reach {
            Reach::Up => None,
            Reach::Down { since, reason } => Some(RuntimeDown {
                runtime: self.runtime_kind,
                reason: reason.clone(),
                down_for: now.saturating_since(*since),
            }),
        }
    }

    pub(in crate::node) fn runtime_status(&self, now: Time) -> RuntimeStatus {
        let down = self.runtime_down(now);
        RuntimeStatus {
            kind: self.runtime_kind,
            reachable: down.is_none(),
            reason: down.as_ref().map(|d| d.reason.clone()).unwrap_or_default(),
            down_for: down.map(|d| d.down_for).unwrap_or_default(),
        }
    }

    /// The runtime stopped answering. Waiting admissions are withdrawn
    /// (UNAVAILABLE), loads in flight answered as lost, idle copies dropped;
    /// copies pinned by leases stay, unconfirmed, until the runtime answers
    /// again. Returns false when it was already down (the reason is kept).
    pub(in crate::node) fn runtime_lost(&mut self, reason: &str, now: Time) -> bool {
        if !self.is_up() {
            return false;
        }
        self.reach = Reach::Down {
            since: now,
            reason: reason.to_owned(),
        };
        let down = self.runtime_down(now).expect("just set");
        // Queued admissions first: they hold nothing, so withdrawing them
        // frees nothing that could place another.
        let mut loads: Vec<LoadId> = self.loads.keys().copied().collect();
        loads.sort();
        let on_loads: Vec<TicketId> = loads
            .iter()
            .flat_map(|l| self.engine.load_waiters(*l).to_vec())
            .collect();
        let mut queued: Vec<TicketId> = self
            .waiters
            .keys()
            .filter(|t| !on_loads.contains(t))
            .copied()
            .collect();
        queued.sort();
        for ticket in queued {
            if let Some(waiter) = self.waiters.remove(&ticket) {
                self.engine.cancel(ticket, now);
                self.metrics.count_runtime_unavailable();
                let _ = waiter
                    .tx
                    .send(Err(AdmitFailure::RuntimeUnavailable(down.clone())));
            }
        }
        // Loads in flight: their waiters and preloads hear the loss now.
        for load in loads {
            let Some(r) = self.loads.get(&load).copied() else {
                continue;
            };
            let error = Err(LoadError::RuntimeLost(reason.to_owned()));
            self.load_finished(load, &error, now.saturating_since(r.started), None, now);
        }
        self.carry_out(now, &Span::none());
        // What is left in the ledger is ready copies.
        for (gpu, model, pins) in self.ready_copies() {
            if pins == 0 {
                self.drop_copy(gpu, model, now);
            } else {
                self.unconfirmed.insert((gpu, model));
            }
        }
        tracing::warn!(runtime = self.runtime_kind, %reason, unconfirmed = self.unconfirmed.len(),
            "model runtime lost: admissions refused until it answers again");
        let runtime = self.runtime_kind;
        let reason = reason.to_owned();
        self.emit(now, None, EventKind::RuntimeLost { runtime, reason });
        true
    }

    /// While the runtime is down: unconfirmed copies whose last lease ended
    /// leave the ledger (nothing vouches for them any more).
    pub(in crate::node) fn settle_unconfirmed(&mut self, now: Time) {
        if self.is_up() || self.unconfirmed.is_empty() {
            return;
        }
        let idle: Vec<(GpuId, ModelId)> = self
            .ready_copies()
            .into_iter()
            .filter(|(g, m, pins)| *pins == 0 && self.unconfirmed.contains(&(*g, *m)))
            .map(|(g, m, _)| (g, m))
            .collect();
        for (gpu, model) in idle {
            self.drop_copy(gpu, model, now);
        }
    }

    /// How many jobs each GPU's worker was ever sent: taken before listing
    /// the runtime, handed back to [`State::reconcile`].
    pub(in crate::node) fn job_epoch(&self) -> Vec<u64> {
        self.jobs_sent.clone()
    }

    /// Makes the ledger agree with the runtime's list of copies, taken when
    /// the jobs sent were `epoch`:
    /// - a listed copy the ledger lacks is adopted (idle, warm);
    /// - a ready copy the runtime does not list is dropped, its leases
    ///   revoked;
    /// - a listed copy the ledger has is confirmed.
    ///
    /// A GPU whose worker ran or queued jobs since `epoch` is left for the
    /// next reconcile (the list may predate them), except for the copies
    /// left unconfirmed when the runtime was lost: their fate is decided
    /// now. Loading copies are the engine's until their load ends. A down
    /// runtime is up again afterwards.
    pub(in crate::node) fn reconcile(
        &mut self,
        listed: &[LoadedCopy],
        epoch: &[u64],
        now: Time,
    ) -> Reconciled {
        let mut by_key: BTreeMap<(GpuId, ModelId), &LoadedCopy> = BTreeMap::new();
        for copy in listed {
            match (
                self.engine.gpu_by_uuid(&copy.gpu_uuid),
                self.engine.model_id(&copy.model),
            ) {
                (Some(gpu), Some(model)) => {
                    by_key.insert((gpu, model), copy);
                }
                _ => tracing::debug!(model = %copy.model, gpu = %copy.gpu_uuid,
                    "the model runtime holds a copy of a model or GPU this daemon does not know; leaving it alone"),
            }
        }
        let steady = |s: &State, gpu: GpuId| {
            let i = gpu.0 as usize;
            s.jobs_in_flight.get(i) == Some(&0) && s.jobs_sent.get(i) == epoch.get(i)
        };
        let mut done = Reconciled::default();
        for (gpu, model, _) in self.ready_copies() {
            let key = (gpu, model);
            if let Some(copy) = by_key.remove(&key) {
                self.unconfirmed.remove(&key);
                self.serve(gpu, model, &copy.endpoint, &copy.runtime_model);
                continue;
            }
            let decide = self.unconfirmed.remove(&key) || steady(self, gpu);
            if decide && self.drop_copy(gpu, model, now) {
                done.dropped += 1;
            }
        }
        for ((gpu, model), copy) in by_key {
            if steady(self, gpu) && self.adopt(gpu, model, copy, now) {
                tracing::info!(model = %copy.model, gpu = %copy.gpu_uuid, "adopted a copy the model runtime holds");
                done.adopted += 1;
            }
        }
        if !self.is_up() {
            self.reach = Reach::Up;
            tracing::info!(
                runtime = self.runtime_kind,
                adopted = done.adopted,
                dropped = done.dropped,
                "model runtime reachable; residency rebuilt from its list"
            );
            let runtime = self.runtime_kind;
            let kind = EventKind::RuntimeBack {
                runtime,
                adopted: done.adopted,
                dropped: done.dropped,
            };
            self.emit(now, None, kind);
        } else if done != Reconciled::default() {
            tracing::warn!(
                adopted = done.adopted,
                dropped = done.dropped,
                "the model runtime's copies had drifted from the ledger; reconciled"
            );
            let kind = EventKind::RuntimeDrifted {
                runtime: self.runtime_kind,
                adopted: done.adopted,
                dropped: done.dropped,
            };
            self.emit(now, None, kind);
        }
        done
    }

    /// A check failed again while the runtime is down: the reason shown is
    /// the latest.
    pub(in crate::node) fn set_down_reason(&mut self, reason: &str, _now: Time) {
        if let Reach::Down { reason: r, .. } = &mut self.reach {
            reason.clone_into(r);
        }
    }

    /// Every ready copy: (GPU, model, pins).
    fn ready_copies(&self) -> Vec<(GpuId, ModelId, u32)> {
        self.engine
            .status()
            .gpus
            .iter()
            .flat_map(|g| {
                g.residents
                    .iter()
                    .filter(|r| !r.loading)
                    .map(move |r| (g.id, r.model, r.pins))
            })
            .collect()
    }

    /// The runtime no longer holds this ready copy: it leaves the ledger
    /// (its leases revoked) and the maps. False when there is none.
    fn drop_copy(&mut self, gpu: GpuId, model: ModelId, now: Time) -> bool {
        let copy = self.model_copy(gpu, model);
        let Some(revoked) = self.engine.drop_copy(gpu, model, now) else {
            return false;
        };
        self.served.remove(&(gpu, model));
        self.measured.remove(&(gpu, model));
        self.unconfirmed.remove(&(gpu, model));
        tracing::info!(model = %copy.model, gpu = %copy.gpu.uuid, revoked,
            "the model runtime no longer holds this copy; dropped from the ledger");
        let reason = UnloadCause::RuntimeLost;
        self.emit(now, None, EventKind::ModelUnloaded { copy, reason });
        true
    }

    // ---- measured memory ---------------------------------------------------

    /// The copy really occupies `mib`: the ledger counts that; a copy that
    /// outgrew its catalog entry raises a warning.
    pub(super) fn measured(&mut self, (gpu, model): (GpuId, ModelId), mib: u64, now: Time) {
        if self.engine.resize_copy(gpu, model, mib, now).is_none() {
            return;
        }
        self.measured.insert((gpu, model), mib);
        self.memory.entry(model).or_default().measured_mib = Some(mib);
        let catalog_mib = self.engine.model(model).weights_mib;
        if mib * 100 > catalog_mib * (100 + OUTGROWN_PERCENT) {
            let copy = self.model_copy(gpu, model);
            tracing::warn!(model = %copy.model, gpu = %copy.gpu.uuid, catalog_mib, measured_mib = mib,
                "model copy outgrew its catalog entry; the ledger counts what it measured — update weights_mib");
            let kind = EventKind::ModelOutgrewCatalog {
                copy,
                catalog_mib,
                measured_mib: mib,
            };
            self.emit(now, None, kind);
        }
    }

    /// Measured memory of the copies on `gpu`.
    pub(super) fn measured_on(&self, gpu: GpuId) -> u64 {
        self.measured
            .iter()
            .filter(|((g, _), _)| *g == gpu)
            .map(|(_, mib)| mib)
            .sum()
    }

    /// An unload of `model` on `gpu_uuid` gave back `returned_mib`.
    pub(in crate::node) fn unload_returned(
        &mut self,
        model: &str,
        gpu_uuid: &str,
        returned_mib: u64,
    ) {
        let Some(id) = self.engine.model_id(model) else {
            return;
        };
        let memory = self.memory.entry(id).or_default();
        memory.returned_mib = Some(returned_mib);
        if let Some(took) = memory.measured_mib
            && returned_mib * 100 < took * (100 - OUTGROWN_PERCENT)
        {
            tracing::warn!(%model, gpu = %gpu_uuid, took_mib = took, returned_mib,
                "an unload gave back less than the load took; the rest counts as other processes' memory");
        }
    }

    /// Catalog vs measured, per model.
    pub(in crate::node) fn model_memory(&self) -> Vec<ModelMemory> {
        self.engine
            .models()
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let m = self
                    .memory
                    .get(&ModelId(i as u32))
                    .cloned()
                    .unwrap_or_default();
                ModelMemory {
                    model: spec.name.clone(),
                    catalog_mib: spec.weights_mib,
                    ..m
                }
            })
            .collect()
    }
}
