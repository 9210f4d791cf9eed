//! Everything that changes the engine from outside admission: pods'
//! allocations, model runtime results, GPU health and external memory, the
//! operator's Preload / Evict, restoring residency, shutdown.

use std::cmp::Reverse;
use std::sync::Arc;

use super::admission::LeaseEnd;
use super::pool::{Resident, ResidentState};
use super::status::Outcome;
use super::{AllocKind, Allocation, DeadlineRef, Engine, Queued, TicketState, types::*};

impl Engine {
    /// Records a pod's slot allocation (from the device plugin's Allocate).
    pub fn allocate_slots(&mut self, token: &str, slots: u32, now: Time) -> Result<(), AllocError> {
        if slots == 0 {
            return Err(AllocError::Empty);
        }
        self.insert_allocation(token, AllocKind::Slots(slots))?;
        let changed = self.advance(now);
        self.finish(now, changed);
        Ok(())
    }

    /// Records a pod's vram carve-out on one GPU. It cannot be refused (kubelet
    /// has already assigned the devices): idle copies are evicted to make
    /// room, and if pinned copies prevent that the pool is over-committed.
    pub fn allocate_vram(
        &mut self,
        token: &str,
        gpu: GpuId,
        mib: u64,
        now: Time,
    ) -> Result<(), AllocError> {
        if mib == 0 {
            return Err(AllocError::Empty);
        }
        if self.gpu(gpu).is_none() {
            return Err(AllocError::UnknownGpu(gpu));
        }
        self.insert_allocation(token, AllocKind::Vram { gpu, mib })?;
        self.advance(now);
        self.pool_mut(gpu).carved_mib += mib;
        self.relieve_pressure(gpu);
        self.finish(now, true);
        Ok(())
    }

    fn insert_allocation(&mut self, token: &str, kind: AllocKind) -> Result<(), AllocError> {
        if self.allocations.contains_key(token) {
            return Err(AllocError::DuplicateToken);
        }
        self.allocations.insert(
            Arc::from(token),
            Allocation {
                kind,
                in_use: 0,
                waiting: 0,
                loads: 0,
            },
        );
        Ok(())
    }

    /// Forgets a pod's allocation (the pod is gone): its leases are revoked,
    /// its pending admissions rejected, its carve-out returned to the pool.
    pub fn deallocate(&mut self, token: &str, now: Time) -> Result<AllocKind, AllocError> {
        let kind = self
            .allocations
            .get(token)
            .map(|a| a.kind)
            .ok_or(AllocError::UnknownToken)?;
        self.advance(now);
        let mut leases: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(_, e)| &*e.token == token)
            .map(|(id, _)| *id)
            .collect();
        leases.sort();
        for id in leases {
            self.end_lease(id, LeaseEnd::Revoked(RevokeReason::AllocationReleased), now);
        }
        let mut tickets: Vec<TicketId> = self
            .tickets
            .iter()
            .filter(|(_, t)| &*t.token == token)
            .map(|(id, _)| *id)
            .collect();
        tickets.sort();
        for id in tickets {
            self.finish_ticket(id, Rejection::AllocationReleased, now);
        }
        self.allocations.remove(token);
        // Its loads go on (others may wait on them) but count for no one now:
        // a later allocation with the same token starts from zero.
        for f in self.loading.values_mut() {
            if f.by.as_deref() == Some(token) {
                f.by = None;
            }
        }
        if let AllocKind::Vram { gpu, mib } = kind {
            self.pool_mut(gpu).carved_mib -= mib;
        }
        self.finish(now, true);
        Ok(kind)
    }

    /// The model runtime finished a load. Success turns the copy ready and
    /// grants everyone waiting on it; failure rolls the ledger back and
    /// rejects them. A result for a load the engine no longer tracks (the GPU
    /// failed meanwhile, and an `Unload` was already issued) is ignored and
    /// returns false.
    pub fn load_finished(&mut self, load: LoadId, result: Result<(), String>, now: Time) -> bool {
        let changed = self.advance(now);
        let Some((gpu, model)) = self.end_load(load) else {
            self.finish(now, changed);
            return false;
        };
        match result {
            Ok(()) => {
                self.counters.loads_succeeded += 1;
                let r = self
                    .pool_mut(gpu)
                    .residents
                    .peek_mut(&model)
                    .expect("a tracked load has its resident entry");
                r.state = ResidentState::Ready;
                let waiters = std::mem::take(&mut r.waiters);
                if r.pins == 0 {
                    r.idle_since = now;
                }
                for ticket in waiters {
                    let Some(t) = self.take_ticket(ticket) else {
                        continue;
                    };
                    let lease = self.new_lease(t.token, gpu, model, false, t.requested_at, now);
                    self.counters.count(Some(model), Outcome::GrantedCold);
                    self.emit(Effect::Grant { ticket, lease });
                }
            }
            Err(message) => {
                self.counters.loads_failed += 1;
                self.counters.model(model).loads_failed += 1;
                let waiters = self
                    .pool(gpu)
                    .residents
                    .peek(&model)
                    .map(|r| r.waiters.clone())
                    .unwrap_or_default();
                for ticket in waiters {
                    let reason = Rejection::LoadFailed {
                        gpu,
                        message: message.clone(),
                    };
                    self.finish_ticket(ticket, reason, now);
                }
                self.pool_mut(gpu).remove_resident(model);
            }
        }
        self.finish(now, true);
        true
    }

    /// A GPU's health changed. Unhealthy: its copies are dropped, its leases
    /// revoked, and admissions waiting on its loads go back to the queue to be
    /// placed elsewhere (or rejected when nothing healthy can hold them).
    /// Healthy again: it is empty and takes work at once.
    pub fn set_health(&mut self, gpu: GpuId, healthy: bool, now: Time) -> bool {
        self.advance(now);
        let changed = self
            .pools
            .get(gpu.0 as usize)
            .is_some_and(|p| p.healthy != healthy);
        if changed {
            self.pool_mut(gpu).healthy = healthy;
            if !healthy {
                self.empty_failed_gpu(gpu, now);
            }
        }
        self.finish(now, true);
        changed
    }

    fn empty_failed_gpu(&mut self, gpu: GpuId, now: Time) {
        let mut leases: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(_, e)| e.lease.gpu == gpu)
            .map(|(id, _)| *id)
            .collect();
        leases.sort();
        for id in leases {
            self.end_lease(id, LeaseEnd::Revoked(RevokeReason::GpuUnhealthy), now);
        }
        // Waiters on this GPU's loads: back to the queue in their original order.
        let mut moved: Vec<TicketId> = self
            .tickets
            .iter()
            .filter(|(_, t)| t.state == TicketState::Loading(gpu))
            .map(|(id, _)| *id)
            .collect();
        moved.sort();
        let requeue_deadline = now + self.settings.default_timeout;
        for id in moved {
            let t = self.tickets.get_mut(&id).expect("collected above");
            t.state = TicketState::Queued;
            // A caller that would not queue gets the default wait, so the
            // move stays bounded.
            if t.deadline.is_none() {
                t.deadline = Some(requeue_deadline);
                self.push_deadline(requeue_deadline, DeadlineRef::Ticket(id));
            }
            let t = &self.tickets[&id];
            let (key, token, model, deadline) = (t.key, Arc::clone(&t.token), t.model, t.deadline);
            self.enqueue(
                key,
                Queued {
                    ticket: id,
                    model,
                    deadline,
                },
            );
            let working = self.model(model).working_mib;
            self.pool_mut(gpu).working_mib -= working;
            if let Some(a) = self.allocations.get_mut(&token) {
                a.in_use -= 1;
            }
        }
        let pool = self.pool_mut(gpu);
        let models: Vec<ModelId> = pool.residents.iter().map(|(m, _)| *m).collect();
        for model in models {
            if let Some(r) = self.pool_mut(gpu).remove_resident(model)
                && let ResidentState::Loading { load, .. } = r.state
            {
                self.end_load(load);
            }
            self.emit(Effect::Unload {
                gpu,
                model,
                reason: UnloadReason::GpuUnhealthy,
            });
        }
        debug_assert_eq!(self.pool(gpu).working_mib, 0);
        debug_assert_eq!(self.pool(gpu).weights_mib, 0);
    }

    /// Memory on `gpu` used by processes the ledger does not know. Growth
    /// evicts idle copies; what cannot be evicted leaves the pool over-committed.
    pub fn set_external_mib(&mut self, gpu: GpuId, mib: u64, now: Time) {
        self.advance(now);
        if let Some(p) = self.pools.get_mut(gpu.0 as usize) {
            p.external_mib = mib;
            self.relieve_pressure(gpu);
        }
        self.finish(now, true);
    }

    /// Evicts idle copies in policy order until the pool fits or none is left.
    fn relieve_pressure(&mut self, gpu: GpuId) {
        let pool = self.pool(gpu);
        if pool.committed_mib() <= pool.usable_mib() {
            return;
        }
        let victims = pool
            .victims_for(0, None, self.settings.policy)
            .unwrap_or_else(|| self.all_idle(gpu));
        self.evict_victims(gpu, &victims, None);
    }

    fn all_idle(&self, gpu: GpuId) -> Vec<(ModelId, u64)> {
        self.pool(gpu)
            .residents
            .iter()
            .rev()
            .filter(|(_, r)| r.is_evictable())
            .map(|(m, r)| (*m, r.weights_mib))
            .collect()
    }

    /// Operator: load `model` ahead of demand, on `gpu` or on the GPU that
    /// needs the fewest evictions. Returns where the load goes.
    pub fn preload(
        &mut self,
        model: &str,
        gpu: Option<GpuId>,
        now: Time,
    ) -> Result<(GpuId, LoadId), AdminError> {
        let changed = self.advance(now);
        let result = self.preload_inner(model, gpu, now);
        self.finish(now, changed || result.is_ok());
        result
    }

    fn preload_inner(
        &mut self,
        model: &str,
        gpu: Option<GpuId>,
        now: Time,
    ) -> Result<(GpuId, LoadId), AdminError> {
        let id = self
            .model_id(model)
            .ok_or_else(|| AdminError::UnknownModel(model.to_owned()))?;
        let weights = self.model(id).weights_mib;
        if let Some(g) = gpu {
            let pool = self
                .pools
                .get(g.0 as usize)
                .ok_or(AdminError::UnknownGpu(g))?;
            if !pool.healthy {
                return Err(AdminError::GpuUnhealthy(g));
            }
        }
        if let Some((at, _)) = self
            .copies(id)
            .find(|(g, _)| gpu.is_none_or(|want| want == *g))
        {
            return Err(AdminError::AlreadyResident {
                model: model.to_owned(),
                gpu: at,
            });
        }
        // Fewest evictions, then most free memory.
        let mut best: Option<(usize, Reverse<u64>, GpuId)> = None;
        for (i, pool) in self.pools.iter().enumerate() {
            let g = GpuId(i as u32);
            if !pool.healthy || gpu.is_some_and(|want| want != g) {
                continue;
            }
            if let Some(victims) = pool.victims_for(weights, Some(id), self.settings.policy) {
                let cand = (victims.len(), Reverse(pool.free_mib()), g);
                if best.is_none_or(|b| (cand.0, cand.1) < (b.0, b.1)) {
                    best = Some(cand);
                }
            }
        }
        let Some((_, _, g)) = best else {
            let best_free_mib = self
                .pools
                .iter()
                .enumerate()
                .filter(|(i, p)| p.healthy && gpu.is_none_or(|want| want.0 as usize == *i))
                .map(|(_, p)| p.free_after_evicting_idle_mib())
                .max()
                .unwrap_or(0);
            return Err(AdminError::NoRoom {
                model: model.to_owned(),
                need_mib: weights,
                best_free_mib,
            });
        };
        let victims = self
            .pool(g)
            .victims_for(weights, Some(id), self.settings.policy)
            .unwrap_or_default();
        self.evict_victims(g, &victims, Some(id));
        let load = self.start_load(g, id, None, now);
        Ok((g, load))
    }

    /// Operator: unload every idle copy of `model` (on `gpu` only, if given).
    /// Returns the GPUs it was unloaded from; fails if no copy was idle.
    pub fn evict(
        &mut self,
        model: &str,
        gpu: Option<GpuId>,
        now: Time,
    ) -> Result<Vec<GpuId>, AdminError> {
        let changed = self.advance(now);
        let result = self.evict_inner(model, gpu);
        self.finish(now, changed || result.is_ok());
        result
    }

    fn evict_inner(&mut self, model: &str, gpu: Option<GpuId>) -> Result<Vec<GpuId>, AdminError> {
        let id = self
            .model_id(model)
            .ok_or_else(|| AdminError::UnknownModel(model.to_owned()))?;
        if let Some(g) = gpu
            && self.gpu(g).is_none()
        {
            return Err(AdminError::UnknownGpu(g));
        }
        let copies: Vec<(GpuId, Resident)> = self
            .copies(id)
            .filter(|(g, _)| gpu.is_none_or(|want| want == *g))
            .map(|(g, r)| (g, r.clone()))
            .collect();
        let mut evicted = Vec::new();
        let mut refusal = None;
        for (g, r) in copies {
            if r.is_evictable() {
                self.pool_mut(g).remove_resident(id);
                self.counters.evictions += 1;
                self.counters.evicted_mib += r.weights_mib;
                self.counters.model(id).evictions += 1;
                self.emit(Effect::Unload {
                    gpu: g,
                    model: id,
                    reason: UnloadReason::Admin,
                });
                evicted.push(g);
            } else if refusal.is_none() {
                refusal = Some(match r.state {
                    ResidentState::Loading { .. } => AdminError::Loading {
                        model: model.to_owned(),
                        gpu: g,
                    },
                    ResidentState::Ready => AdminError::Pinned {
                        model: model.to_owned(),
                        gpu: g,
                        pins: r.pins,
                    },
                });
            }
        }
        if evicted.is_empty() {
            return Err(refusal.unwrap_or(AdminError::NotResident {
                model: model.to_owned(),
                gpu,
            }));
        }
        Ok(evicted)
    }

    /// Records a copy the model runtime already holds (its `ListLoaded` at
    /// start) as ready and idle. It is real memory, so it is recorded even if
    /// that over-commits the pool.
    pub fn restore_resident(
        &mut self,
        gpu: GpuId,
        model: ModelId,
        now: Time,
    ) -> Result<(), AdminError> {
        let name = self.model(model).name.clone();
        let weights = self.model(model).weights_mib;
        let pool = self
            .pools
            .get_mut(gpu.0 as usize)
            .ok_or(AdminError::UnknownGpu(gpu))?;
        if pool.residents.contains(&model) {
            return Err(AdminError::AlreadyResident { model: name, gpu });
        }
        pool.weights_mib += weights;
        pool.residents
            .push(model, Resident::new(ResidentState::Ready, weights, now));
        let cost = self.model(model).load_ms.max(1) as f64;
        let policy = self.settings.policy;
        self.pool_mut(gpu).touch(model, cost, policy);
        self.settle(now);
        Ok(())
    }

    /// Shutdown: every pending admission is rejected with `ShuttingDown`,
    /// every copy is unloaded, and later admissions are refused.
    pub fn shutdown(&mut self, now: Time) {
        self.shutting_down = true;
        let mut tickets: Vec<TicketId> = self.tickets.keys().copied().collect();
        tickets.sort();
        for id in tickets {
            self.finish_ticket(id, Rejection::ShuttingDown, now);
        }
        for i in 0..self.pools.len() {
            let gpu = GpuId(i as u32);
            let models: Vec<ModelId> = self.pool(gpu).residents.iter().map(|(m, _)| *m).collect();
            for model in models {
                self.emit(Effect::Unload {
                    gpu,
                    model,
                    reason: UnloadReason::Shutdown,
                });
            }
        }
    }

    /// Every copy of `model`: (GPU, resident entry).
    fn copies(&self, model: ModelId) -> impl Iterator<Item = (GpuId, &Resident)> {
        self.pools
            .iter()
            .enumerate()
            .filter_map(move |(i, p)| p.residents.peek(&model).map(|r| (GpuId(i as u32), r)))
    }
}
