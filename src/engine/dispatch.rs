//! The queue pass: who gets memory as it frees up, and the one reservation
//! that makes it fair under contention.
//!
//! # Why a reservation per blocked model did not protect Stable Diffusion
//! The first design let the first blocked ticket of *every* model reserve
//! memory on the GPU where it would fit soonest, each pass afresh. Three
//! things defeated it in the overloaded default simulation:
//! - every blocked model chose the same GPU (the one with the most
//!   reclaimable memory), so its reservations summed to five or six times
//!   that GPU's capacity, and a ticket could be placed only where the
//!   promises *ahead* of it left room: that GPU served only the oldest
//!   blocked model, while the other GPU, promised to no one, was backfilled
//!   by warm sdxl-refiner tasks (57 % of all requests) whose 3.5 GiB chunks
//!   were taken again the moment they were freed; sd3b needs 11.7 GiB on one
//!   GPU and never saw them add up;
//! - a ticket reserved only while a cold load could still finish before its
//!   deadline, and with a FIFO queue ~24 s deep, an sd3b ticket (8 s load,
//!   30 s timeout) was always "too late" before its turn;
//! - a ticket blocked on memory on its warm copy was called "too late"
//!   whenever a cold copy elsewhere would be, and so reserved nothing either.
//!
//! # The guarantee now
//! Within the highest waiting priority, the node keeps **one head
//! reservation** for the least-served model:
//! 1. The head is a waiting admission that could be served in time. It is
//!    chosen, when there is none, among blocked admissions by priority, then
//!    by its model's recent grant ratio (lowest first; see
//!    [`super::fairness`]), then by its latest start (deadline minus the
//!    load it needs), then by arrival.
//! 2. It holds memory on one GPU for itself and for the other waiting
//!    admissions of its model that can share its copy (up to the model's
//!    `max_concurrency`): later admissions may use that GPU only where that
//!    memory stays free or reclaimable from idle copies. Nothing placed after
//!    the head can delay it: it is placed once the tasks that held the memory
//!    when it was chosen have ended. Its batch is placed with it.
//! 3. Its model then keeps the head for its next blocked admission for one
//!    *turn* (load time plus two task times), so the copy just loaded serves a
//!    batch before another model may evict it.
//! 4. Everything else is placed in priority then arrival order wherever it
//!    fits without touching the reservation.
//!
//! So no model that can be served goes without memory while a better-served
//! model holds the head, and the head never waits behind work that came
//! after it. A model's ratio falls while its admissions go unserved, so every
//! model with servable work eventually holds the head.

use std::cmp::Reverse;
use std::time::Duration;

use super::admission::{Blocked, LoadWindow, PlaceKind, Placement};
use super::pool::ResidentState;
use super::status::Outcome;
use super::{AllocKind, Engine, Queued, TicketState, types::*};

/// The head reservation: one waiting admission and the memory it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    pub ticket: TicketId,
    pub model: ModelId,
    pub gpu: GpuId,
    /// For the head and its batch: weights if a copy must be loaded there,
    /// plus working memory for each admission of the batch.
    pub need_mib: u64,
}

/// The order in which blocked admissions become the head: priority, the
/// running turn, the model's grant ratio, latest start, arrival.
type HeadKey = (Reverse<i32>, bool, u64, u64, u64);

impl Engine {
    /// Places queued tickets in priority then arrival order around the head
    /// reservation, and appoints a head where none holds. See the module docs.
    ///
    /// The queue is walked one priority level at a time. A level above the
    /// head's ignores its reservation (priority comes first); at the end of
    /// each level, a blocked ticket of that level becomes the head if there is
    /// none or the head is of a lower level, so lower levels are placed
    /// around it in the same pass.
    pub(super) fn dispatch(&mut self, now: Time) {
        if self.head.is_some_and(|h| !self.head_holds(h)) {
            self.head = None;
        }
        if self.queue.is_empty() {
            return;
        }
        let mut reserved = vec![0u64; self.pools.len()];
        if let Some(h) = self.head {
            reserved[h.gpu.0 as usize] = h.need_mib;
        }
        // Models whose ticket just failed for memory: later tickets of theirs
        // (same level) would fail too (the same need against the same
        // reservation).
        let mut failed: Vec<ModelId> = Vec::new();
        // Per model, the latest deadline for which its load came too late:
        // tickets with that deadline or an earlier one would be too late too.
        let mut too_late: Vec<(ModelId, Option<Time>)> = Vec::new();
        let mut candidate: Option<(HeadKey, TicketId, ModelId)> = None;
        let mut level: Option<Reverse<i32>> = None;
        // A snapshot: placing and rejecting change the queue as we go.
        let order: Vec<Queued> = self.queue.values().copied().collect();
        for Queued {
            ticket,
            model,
            deadline,
        } in order
        {
            let Some(t) = self
                .tickets
                .get(&ticket)
                .filter(|t| t.state == TicketState::Queued)
            else {
                continue;
            };
            let (requested_at, key) = (t.requested_at, t.key);
            if level != Some(key.0) {
                self.close_level(candidate.take(), &mut reserved);
                level = Some(key.0);
                failed.clear();
            }
            let head = self.head.filter(|h| h.ticket == ticket);
            if head.is_none()
                && (failed.contains(&model)
                    || too_late.iter().any(|(m, d)| *m == model && deadline <= *d))
            {
                continue;
            }
            let Some(t) = self.tickets.get(&ticket) else {
                continue;
            };
            let (has_slot, may_load) = match self.allocations.get(&t.token) {
                Some(a) => (
                    matches!(a.kind, AllocKind::Slots(n) if a.in_use < n),
                    a.loads < self.settings.pod_loads,
                ),
                None => (false, false),
            };
            if !has_slot {
                continue;
            }
            if let Some(t) = self.tickets.get_mut(&ticket) {
                t.competed = true;
            }
            let when = LoadWindow {
                now,
                deadline,
                fresh: requested_at == now,
                may_load,
            };
            // The head may use its own reservation, but must leave its
            // batch's part of it: the batch is placed with it. A ticket of a
            // higher level than the head's ignores the reservation.
            let lift = match self.head {
                Some(h) if h.ticket == ticket => self.own_need(model, h.gpu).min(h.need_mib),
                Some(h) if key.0 < self.tickets[&h.ticket].key.0 => h.need_mib,
                _ => 0,
            };
            if let Some(h) = self.head {
                reserved[h.gpu.0 as usize] -= lift;
            }
            let result = self.place(model, &reserved, when);
            if let Some(h) = self.head {
                reserved[h.gpu.0 as usize] += lift;
            }
            let drop_head = |e: &mut Engine, reserved: &mut Vec<u64>| {
                if let Some(h) = head {
                    reserved[h.gpu.0 as usize] -= h.need_mib;
                    e.head = None;
                }
            };
            match result {
                Ok(p) => {
                    let gpu = p.gpu;
                    drop_head(self, &mut reserved);
                    if head.is_some() {
                        let spec = self.model(model);
                        let turn = Duration::from_millis(spec.load_ms + 2 * spec.task_ms);
                        self.fairness.start_turn(model, now + turn, now);
                    }
                    self.place_ticket(ticket, p, now);
                    if head.is_some() {
                        self.place_batch(model, gpu, &reserved, now);
                    }
                    continue;
                }
                Err(Blocked::TooLate) => {
                    drop_head(self, &mut reserved);
                    // Another ticket of this model, with a later deadline, may still load it.
                    match too_late.iter_mut().find(|(m, _)| *m == model) {
                        Some(entry) => entry.1 = entry.1.max(deadline),
                        None => too_late.push((model, deadline)),
                    }
                    continue;
                }
                // Its pod's own bound: other pods' tickets of this model may still load it.
                Err(Blocked::PodLoads) => {
                    drop_head(self, &mut reserved);
                    continue;
                }
                Err(Blocked::Memory) => {}
            }
            if self.check_fits_somewhere(model).is_err() {
                drop_head(self, &mut reserved);
                let reason = self.no_fit_rejection(model);
                self.finish_ticket(ticket, reason, now);
                continue;
            }
            failed.push(model);
            let outranks_head = self
                .head
                .is_none_or(|h| key.0 < self.tickets[&h.ticket].key.0);
            if outranks_head {
                let k = self.head_key(model, key, deadline, now);
                if candidate.as_ref().is_none_or(|c| k < c.0) {
                    candidate = Some((k, ticket, model));
                }
            }
        }
        self.close_level(candidate, &mut reserved);
    }

    /// The end of a priority level: its best blocked ticket becomes the head
    /// if there is none, or instead of a head of a lower level.
    fn close_level(
        &mut self,
        candidate: Option<(HeadKey, TicketId, ModelId)>,
        reserved: &mut [u64],
    ) {
        let Some((_, ticket, model)) = candidate else {
            return;
        };
        let Some(new) = self.appoint_head(ticket, model) else {
            return;
        };
        if let Some(old) = self.head.replace(new) {
            reserved[old.gpu.0 as usize] -= old.need_mib;
        }
        reserved[new.gpu.0 as usize] += new.need_mib;
    }

    /// Grants a placed ticket (warm) by an effect, or starts its wait on a load.
    fn place_ticket(&mut self, ticket: TicketId, p: Placement, now: Time) {
        if let Admission::Granted(lease) = self.apply(ticket, p, now) {
            self.counters.count(Outcome::GrantedWarm);
            self.emit(Effect::Grant { ticket, lease });
        }
    }

    /// Places the head's batch: the other waiting admissions of `model` that
    /// can share the copy the head just took on `gpu`, in queue order.
    fn place_batch(&mut self, model: ModelId, gpu: GpuId, reserved: &[u64], now: Time) {
        let batch: Vec<Queued> = self
            .queue
            .values()
            .filter(|q| q.model == model)
            .copied()
            .collect();
        for q in batch {
            let Some(t) = self.tickets.get(&q.ticket) else {
                continue;
            };
            let may_load = match self.allocations.get(&t.token) {
                Some(a) if matches!(a.kind, AllocKind::Slots(n) if a.in_use < n) => {
                    a.loads < self.settings.pod_loads
                }
                _ => continue,
            };
            let when = LoadWindow {
                now,
                deadline: q.deadline,
                fresh: false,
                may_load,
            };
            match self.place(model, reserved, when) {
                Ok(p) if p.gpu == gpu && p.kind != PlaceKind::Cold => {
                    if let Some(t) = self.tickets.get_mut(&q.ticket) {
                        t.competed = true;
                    }
                    self.place_ticket(q.ticket, p, now);
                }
                _ => break,
            }
        }
    }

    /// Whether the pod of `ticket` has a slot free for it.
    fn has_free_slot(&self, ticket: TicketId) -> bool {
        self.tickets
            .get(&ticket)
            .and_then(|t| self.allocations.get(&t.token))
            .is_some_and(|a| matches!(a.kind, AllocKind::Slots(n) if a.in_use < n))
    }

    /// Whether the head still waits and can still be served where it holds memory.
    fn head_holds(&self, h: Head) -> bool {
        let pool = self.pool(h.gpu);
        self.tickets
            .get(&h.ticket)
            .is_some_and(|t| t.state == TicketState::Queued)
            && pool.healthy
            && self.own_need(h.model, h.gpu) <= pool.capacity_for_models_mib()
    }

    /// What `model` needs on `gpu` for one more admission: working memory,
    /// plus the weights when no copy is there.
    fn own_need(&self, model: ModelId, gpu: GpuId) -> u64 {
        let spec = self.model(model);
        let resident = self.pool(gpu).residents.contains(&model);
        spec.working_mib + if resident { 0 } else { spec.weights_mib }
    }

    fn head_key(
        &self,
        model: ModelId,
        key: super::QueueKey,
        deadline: Option<Time>,
        now: Time,
    ) -> HeadKey {
        let spec = self.model(model);
        let has_copy = self.pools.iter().any(|p| {
            p.healthy
                && p.residents.peek(&model).is_some_and(|r| {
                    matches!(
                        r.state,
                        ResidentState::Ready | ResidentState::Loading { .. }
                    )
                })
        });
        let load = if has_copy { 0 } else { spec.load_ms };
        let latest_start = deadline.map_or(u64::MAX, |d| d.as_millis().saturating_sub(load));
        (
            key.0,
            !self.fairness.has_turn(model, now),
            self.fairness.ratio_ppm(model),
            latest_start,
            key.1,
        )
    }

    /// Makes `ticket` the head, on the GPU where its model will fit soonest,
    /// with memory for the batch that can share its copy there.
    fn appoint_head(&self, ticket: TicketId, model: ModelId) -> Option<Head> {
        let (gpu, one) = self.eventual_gpu(model)?;
        let spec = self.model(model);
        let pins = self.pool(gpu).residents.peek(&model).map_or(0, |r| r.pins);
        let room = spec.max_concurrency.saturating_sub(pins + 1);
        // Only admissions whose pod has a free slot can join the batch: a pod
        // waiting for its own slot must not enlarge (or shrink) anyone's
        // reservation.
        let others = self
            .queue
            .values()
            .filter(|q| q.model == model && q.ticket != ticket && self.has_free_slot(q.ticket))
            .take(room as usize)
            .count() as u64;
        let need_mib =
            (one + others * spec.working_mib).min(self.pool(gpu).capacity_for_models_mib());
        Some(Head {
            ticket,
            model,
            gpu,
            need_mib,
        })
    }

    pub(super) fn no_fit_rejection(&self, model: ModelId) -> Rejection {
        let spec = self.model(model);
        let largest = self
            .pools
            .iter()
            .filter(|p| p.healthy)
            .map(|p| p.usable_mib())
            .max();
        match largest {
            None => Rejection::NoHealthyGpu,
            Some(l) => Rejection::NoGpuFits {
                need_mib: spec.weights_mib + spec.working_mib,
                largest_usable_mib: l,
            },
        }
    }

    /// The healthy GPU where `model` will fit soonest, and what one admission
    /// needs there: one holding a copy (it frees up as tasks end; needs
    /// working memory), else the one closest to fitting a new copy.
    fn eventual_gpu(&self, model: ModelId) -> Option<(GpuId, u64)> {
        let mut best: Option<(bool, u64, GpuId, u64)> = None;
        for (i, pool) in self.pools.iter().enumerate() {
            if !pool.healthy {
                continue;
            }
            let gpu = GpuId(i as u32);
            let resident = pool.residents.contains(&model);
            let need = self.own_need(model, gpu);
            if need > pool.capacity_for_models_mib() {
                continue;
            }
            let cand = (resident, pool.free_after_evicting_idle_mib(), gpu, need);
            if best.is_none_or(|b| (cand.0, cand.1) > (b.0, b.1)) {
                best = Some(cand);
            }
        }
        best.map(|b| (b.2, b.3))
    }
}
