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
//!    chosen, when there is none, among blocked admissions that may wait
//!    (a no-wait admission never holds it) by priority, then
//!    by its model's recent grant ratio (lowest first; see
//!    [`super::fairness`]), then by its latest start (deadline minus the
//!    load it needs), then by arrival.
//! 2. It holds what it needs on one GPU (weights if it needs a new copy,
//!    plus its working memory): later admissions may use that GPU only where
//!    that memory stays free or reclaimable from idle copies. Nothing placed
//!    after the head can delay it: it is placed once the tasks that held the
//!    memory when it was chosen have ended. The waiting admissions of its
//!    model that fit beside it on its copy (its batch) are placed with it.
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
//!
//! # When passes run
//! A pass runs after every change, and again at once when it ended the
//! head's reservation after blocking a ticket against it. Some decisions
//! change with time alone — an arrival stops being fresh, a load stops
//! beating a deadline, a turn ends — so each pass notes the earliest such
//! moment and the engine asks to be ticked then ([`Engine::next_deadline`]).
//! What can be placed at a moment is placed at that moment, whichever calls
//! other pods make: one pod's calls never change another's outcome (the
//! flood property in `tests/engine_properties.rs`).
//!
//! # What a pass costs
//! A pass never looks at a model's tickets after one of them was blocked
//! for memory at the same priority level (they would be blocked too): it
//! merges per-model runs of the queue (`Engine::by_model`) in arrival
//! order and drops a run when it blocks. With the queue full (256) behind
//! a full node, a release costs a few steps per model with waiting work,
//! not a step per ticket (benches/README.md, "saturated queue"). The
//! decisions are those of a walk of the whole queue; the property tests
//! compare the two on every operation.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Bound;
use std::time::Duration;

use super::admission::{Blocked, LoadWindow, PlaceKind, Placement};
use super::pool::ResidentState;
use super::status::Outcome;
use super::{AllocKind, Engine, QueueKey, Queued, TicketState, types::*};

/// The head reservation: one waiting admission and the memory it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    pub ticket: TicketId,
    pub model: ModelId,
    pub gpu: GpuId,
    /// For the head alone: weights if a copy must be loaded there, plus its
    /// working memory.
    pub need_mib: u64,
}

/// The order in which blocked admissions become the head: priority, the
/// running turn, the model's grant ratio, latest start, arrival.
type HeadKey = (Reverse<i32>, bool, u64, u64, u64);

/// What one queue pass carries from ticket to ticket.
struct Pass {
    /// Per GPU, memory promised to the head (see [`Head`]).
    reserved: Vec<u64>,
    /// Models whose ticket was blocked for memory at this level: their
    /// later tickets (same level) would be too (the same need against the
    /// same reservation).
    failed: Vec<ModelId>,
    /// Per model, the latest deadline for which its load came too late:
    /// tickets with that deadline or an earlier one would be too late too.
    too_late: Vec<(ModelId, Option<Time>)>,
    /// The best blocked ticket of this level to become the head.
    candidate: Option<(HeadKey, TicketId, ModelId)>,
    /// The level's runs by their next ticket: (arrival, model, is the head).
    next: BinaryHeap<Reverse<(u64, ModelId, bool)>>,
    /// The pass placed, rejected or marked a ticket, or moved the head: a
    /// second pass at the same instant could decide differently.
    changed: bool,
    /// A ticket was blocked for memory in this pass.
    blocked: bool,
    /// The head's reservation ended (the head was placed, possibly on
    /// another GPU or with less than it held, or dropped: too late, its
    /// pod's load bound, no GPU could hold it) after a ticket was blocked
    /// for memory: that ticket was tried against a reservation that is gone,
    /// so the pass runs again.
    released: bool,
    /// The earliest later moment one of this pass's decisions changes with
    /// time alone (see [`Engine::pass_at`](super::Engine)).
    wake: Option<Time>,
}

/// A pass's buffers between passes, so that a pass allocates nothing.
#[derive(Debug, Clone, Default)]
pub(super) struct Scratch {
    reserved: Vec<u64>,
    failed: Vec<ModelId>,
    too_late: Vec<(ModelId, Option<Time>)>,
    next: BinaryHeap<Reverse<(u64, ModelId, bool)>>,
}

impl Pass {
    fn new(e: &mut Engine, now: Time) -> Pass {
        let Scratch {
            mut reserved,
            mut failed,
            mut too_late,
            mut next,
        } = std::mem::take(&mut e.scratch);
        reserved.clear();
        reserved.resize(e.pools.len(), 0);
        if let Some(h) = e.head {
            reserved[h.gpu.0 as usize] = h.need_mib;
        }
        failed.clear();
        too_late.clear();
        next.clear();
        // A running turn orders the candidates for the head until it ends.
        let wake = e.fairness.turn_end(now);
        Pass {
            reserved,
            failed,
            too_late,
            candidate: None,
            next,
            changed: false,
            blocked: false,
            released: false,
            wake,
        }
    }

    /// A decision of this pass changes at `at` with time alone.
    fn wake_at(wake: &mut Option<Time>, at: Time) {
        if wake.is_none_or(|w| at < w) {
            *wake = Some(at);
        }
    }

    /// Gives the buffers back to `e` and sets when to pass again; returns
    /// whether the pass changed anything, and whether it ended the head's
    /// reservation after blocking a ticket.
    fn end(self, e: &mut Engine) -> (bool, bool) {
        e.set_pass_at(self.wake);
        e.scratch = Scratch {
            reserved: self.reserved,
            failed: self.failed,
            too_late: self.too_late,
            next: self.next,
        };
        (self.changed, self.released)
    }
}

impl Engine {
    /// Places queued tickets in priority then arrival order around the head
    /// reservation, and appoints a head where none holds. See the module docs.
    ///
    /// The queue is walked one priority level at a time. A level above the
    /// head's ignores its reservation (priority comes first); at the end of
    /// each level, a blocked ticket of that level becomes the head if there is
    /// none or the head is of a lower level, so lower levels are placed
    /// around it in the same pass.
    ///
    /// # Only tickets a change can help
    /// Within a level, once a model's ticket is blocked for memory, every
    /// later ticket of that model is too (the same need against no more
    /// memory), so the pass does not look at them: it merges the level's
    /// per-model runs of `Engine::by_model` in arrival order and drops a
    /// model's run when it blocks. A pass costs a few steps per model with
    /// waiting work plus the tickets it places or skips for their own pod's
    /// slot or a late load, not the length of the queue. It visits the same
    /// tickets in the same order as a walk of the whole queue would (the
    /// property tests check this against `Engine::dispatch_by_walk`).
    pub(super) fn dispatch(&mut self, now: Time) -> bool {
        // A pass that ends the head's reservation (places or drops the head)
        // after blocking a ticket for memory has tried that ticket against
        // a reservation that is gone: pass again, so that what can be placed
        // at `now` is placed at `now`, whichever call comes next.
        // Each further pass follows a head placed or dropped for good (it is
        // not a candidate again at `now`), so this ends; the bound says so
        // twice.
        let mut changed = false;
        for _ in 0..=self.queue.len() {
            let head = self.head;
            let (c, released) = if self.walk_whole_queue {
                self.dispatch_by_walk(now)
            } else {
                self.dispatch_once(now)
            };
            changed |= c || self.head != head;
            if !released {
                break;
            }
        }
        changed
    }

    /// Sets when `tick` passes again for a decision that changes with time.
    fn set_pass_at(&mut self, at: Option<Time>) {
        if self.pass_at != at {
            self.pass_at = at;
            if let Some(at) = at {
                self.push_deadline(at, super::DeadlineRef::Pass);
            }
        }
    }

    /// The start of every pass: drops a head that no longer holds; false
    /// (and nothing timed) when nothing waits.
    fn pass_begins(&mut self) -> bool {
        if self.head.is_some_and(|h| !self.head_holds(h)) {
            self.head = None;
        }
        if self.queue.is_empty() {
            self.set_pass_at(None);
            return false;
        }
        true
    }

    /// One pass (see [`Engine::dispatch`]): whether it changed anything, and
    /// whether it ended the head's reservation after blocking a ticket.
    fn dispatch_once(&mut self, now: Time) -> (bool, bool) {
        if !self.pass_begins() {
            return (false, false);
        }
        let mut pass = Pass::new(self, now);
        let mut level = self.runs.keys().next().map(|k| k.0);
        while let Some(l) = level {
            self.dispatch_level(l, &mut pass, now);
            self.close_level(pass.candidate.take(), &mut pass.reserved);
            level = l.0.checked_sub(1).and_then(|p| {
                self.runs
                    .range((Reverse(p), ModelId(0))..)
                    .next()
                    .map(|(k, _)| k.0)
            });
        }
        pass.end(self)
    }

    /// One priority level of a pass: its tickets in arrival order, each
    /// model's run dropped once one of its tickets is blocked for memory.
    fn dispatch_level(&mut self, l: Reverse<i32>, pass: &mut Pass, now: Time) {
        pass.failed.clear();
        // The head of this level is visited in its place even after its
        // model's run was dropped; the runs leave it out.
        let head_here = self.head.and_then(|h| {
            let t = self.tickets.get(&h.ticket)?;
            (t.state == TicketState::Queued && t.key.0 == l).then_some((t.key.1, h.model))
        });
        let skip = head_here.map(|(seq, _)| seq);
        let mut next = std::mem::take(&mut pass.next);
        if let Some((seq, model)) = head_here {
            next.push(Reverse((seq, model, true)));
        }
        let runs = self
            .runs
            .range((l, ModelId(0))..=(l, ModelId(u32::MAX)))
            .map(|(k, _)| k.1);
        for model in runs {
            if let Some(seq) = self.run_after(l, model, None, skip) {
                next.push(Reverse((seq, model, false)));
            }
        }
        while let Some(Reverse((seq, model, is_head))) = next.pop() {
            if !is_head && pass.failed.contains(&model) {
                continue;
            }
            // Placed or ended earlier in this pass (a batch, a rejection):
            // its run goes on.
            if let Some(&q) = self.by_model.get(&(l, model, seq)) {
                self.visit(q, pass, now);
            }
            if !is_head
                && !pass.failed.contains(&model)
                && let Some(after) = self.run_after(l, model, Some(seq), skip)
            {
                next.push(Reverse((after, model, false)));
            }
        }
        pass.next = next;
    }

    /// The first ticket of `model` at level `l` after arrival `after` (from
    /// the start if `None`), other than `skip`.
    fn run_after(
        &self,
        l: Reverse<i32>,
        model: ModelId,
        after: Option<u64>,
        skip: Option<u64>,
    ) -> Option<u64> {
        let lo = match after {
            Some(seq) => Bound::Excluded((l, model, seq)),
            None => Bound::Included((l, model, 0)),
        };
        self.by_model
            .range((lo, Bound::Included((l, model, u64::MAX))))
            .map(|(k, _)| k.2)
            .find(|seq| Some(*seq) != skip)
    }

    /// The reference pass: every queued ticket in queue order, each skipped
    /// or tried exactly as [`Engine::dispatch`] would. Tests compare the two
    /// (see [`Engine::walk_whole_queue`]).
    fn dispatch_by_walk(&mut self, now: Time) -> (bool, bool) {
        if !self.pass_begins() {
            return (false, false);
        }
        let mut pass = Pass::new(self, now);
        let mut level: Option<Reverse<i32>> = None;
        // A snapshot: placing and rejecting change the queue as we go.
        let order: Vec<(QueueKey, Queued)> = self.queue.iter().map(|(k, q)| (*k, *q)).collect();
        for (key, q) in order {
            if self.queue.get(&key) != Some(&q) {
                continue;
            }
            if level != Some(key.0) {
                self.close_level(pass.candidate.take(), &mut pass.reserved);
                level = Some(key.0);
                pass.failed.clear();
            }
            let is_head = self.head.is_some_and(|h| h.ticket == q.ticket);
            if !is_head && pass.failed.contains(&q.model) {
                continue;
            }
            self.visit(q, &mut pass, now);
        }
        self.close_level(pass.candidate.take(), &mut pass.reserved);
        pass.end(self)
    }

    /// Tries one queued ticket in its turn of a pass: skipped if its model's
    /// load is too late for it or its pod has no free slot; else placed
    /// (the head with its batch), rejected if no GPU could ever hold it, or
    /// marked blocked (its model's run ends; it may become the head).
    fn visit(&mut self, q: Queued, pass: &mut Pass, now: Time) {
        let Queued {
            ticket,
            model,
            deadline,
        } = q;
        let Some(t) = self
            .tickets
            .get(&ticket)
            .filter(|t| t.state == TicketState::Queued)
        else {
            return;
        };
        let (requested_at, key) = (t.requested_at, t.key);
        let head = self.head.filter(|h| h.ticket == ticket);
        if head.is_none()
            && pass
                .too_late
                .iter()
                .any(|(m, d)| *m == model && deadline <= *d)
        {
            return;
        }
        let (has_slot, may_load) = match self.allocations.get(&t.token) {
            Some(a) => (
                matches!(a.kind, AllocKind::Slots(n) if a.in_use < n),
                a.loads < self.settings.pod_loads,
            ),
            None => (false, false),
        };
        if !has_slot {
            return;
        }
        if let Some(t) = self.tickets.get_mut(&ticket) {
            pass.changed |= !t.competed;
            t.competed = true;
        }
        let when = LoadWindow {
            now,
            deadline,
            fresh: requested_at == now,
            may_load,
        };
        // Whatever happens to it below, unless placed, it is decided anew
        // when its load windows change: when it stops being fresh, and when
        // a load started now would stop finishing before its deadline.
        if let Some(d) = deadline {
            let load = self.model(model).load_ms;
            let (now_ms, d_ms) = (now.as_millis(), d.as_millis());
            if load > 0 && now_ms + load <= d_ms {
                Pass::wake_at(&mut pass.wake, Time::from_millis(d_ms - load + 1));
            }
            // Fresh, it may start or join a load that would end too late.
            let late_join = || {
                self.pools.iter().any(|p| {
                    p.residents.peek(&model).is_some_and(|r| {
                        matches!(r.state, ResidentState::Loading { since, .. }
                            if since.as_millis() + load > d_ms)
                    })
                })
            };
            if when.fresh && (now_ms + load > d_ms || late_join()) {
                Pass::wake_at(&mut pass.wake, now + Duration::from_millis(1));
            }
        }
        let reserved = &mut pass.reserved;
        // The head may use its own reservation; so may a ticket of a higher
        // level than the head's (priority comes first).
        let lift = match self.head {
            Some(h) if h.ticket == ticket || key.0 < self.tickets[&h.ticket].key.0 => h.need_mib,
            _ => 0,
        };
        if let Some(h) = self.head {
            reserved[h.gpu.0 as usize] -= lift;
        }
        let result = self.place(model, reserved, when);
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
                pass.changed = true;
                pass.released |= head.is_some() && pass.blocked;
                let gpu = p.gpu;
                drop_head(self, reserved);
                if head.is_some() {
                    let spec = self.model(model);
                    let turn = Duration::from_millis(spec.load_ms + 2 * spec.task_ms);
                    self.fairness.start_turn(model, now + turn, now);
                    if let Some(end) = self.fairness.turn_end(now) {
                        Pass::wake_at(&mut pass.wake, end);
                    }
                }
                self.place_ticket(ticket, p, now);
                if head.is_some() {
                    self.place_batch(model, gpu, reserved, now);
                }
                return;
            }
            Err(Blocked::TooLate) => {
                pass.released |= head.is_some() && pass.blocked;
                drop_head(self, reserved);
                // Another ticket of this model, with a later deadline, may still load it.
                match pass.too_late.iter_mut().find(|(m, _)| *m == model) {
                    Some(entry) => entry.1 = entry.1.max(deadline),
                    None => pass.too_late.push((model, deadline)),
                }
                return;
            }
            // Its pod's own bound: other pods' tickets of this model may still load it.
            Err(Blocked::PodLoads) => {
                pass.released |= head.is_some() && pass.blocked;
                drop_head(self, reserved);
                return;
            }
            Err(Blocked::Memory) => {}
        }
        if self.check_fits_somewhere(model).is_err() {
            pass.changed = true;
            pass.released |= head.is_some() && pass.blocked;
            drop_head(self, reserved);
            let reason = self.no_fit_rejection(model);
            self.finish_ticket(ticket, reason, now);
            return;
        }
        pass.blocked = true;
        pass.failed.push(model);
        // An admission that may not wait (no deadline: it is dropped when
        // this pass leaves it blocked) never takes the head: it would hold
        // the reservation for nobody, and the waiting admission it took it
        // from would get it back only at the next pass, whenever some call
        // runs one.
        let outranks_head = deadline.is_some()
            && self
                .head
                .is_none_or(|h| key.0 < self.tickets[&h.ticket].key.0);
        if outranks_head {
            let k = self.head_key(model, key, deadline, now);
            if pass.candidate.as_ref().is_none_or(|c| k < c.0) {
                pass.candidate = Some((k, ticket, model));
            }
        }
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
            self.counters.count(Some(lease.model), Outcome::GrantedWarm);
            self.emit(Effect::Grant { ticket, lease });
        }
    }

    /// Places the head's batch: the other waiting admissions of `model` that
    /// can share the copy the head just took on `gpu`, in queue order.
    fn place_batch(&mut self, model: ModelId, gpu: GpuId, reserved: &[u64], now: Time) {
        let mut after = None;
        while let Some((key, q)) = self.next_of_model(model, after) {
            after = Some(key);
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

    /// The first queued ticket of `model` after `after` in queue order (from
    /// the start if `None`), by `Engine::by_model`: one lookup per
    /// priority level instead of a walk of the queue.
    fn next_of_model(&self, model: ModelId, after: Option<QueueKey>) -> Option<(QueueKey, Queued)> {
        let (mut level, mut lo) = match after {
            Some((l, seq)) => (l, Bound::Excluded((l, model, seq))),
            None => {
                let l = self.by_model.keys().next()?.0;
                (l, Bound::Included((l, model, 0)))
            }
        };
        loop {
            let hi = Bound::Included((level, model, u64::MAX));
            if let Some((k, q)) = self.by_model.range((lo, hi)).next() {
                return Some(((k.0, k.2), *q));
            }
            // The next level down with any ticket.
            let below = level.0.checked_sub(1)?;
            level = self
                .by_model
                .range((Reverse(below), ModelId(0), 0)..)
                .next()?
                .0
                .0;
            lo = Bound::Included((level, model, 0));
        }
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
    /// holding what it alone needs there.
    ///
    /// It holds no memory for others of its model that could share a copy
    /// it loads: they join the copy when the head is placed if memory allows.
    /// Holding it for one such follower made every cold head wait for
    /// another task's working memory to drain before its load could start,
    /// and kept that memory idle through the load; the overloaded simulation
    /// served 14 % fewer Stable Diffusion tasks that way (benches/README.md,
    /// "Head reservation").
    fn appoint_head(&self, ticket: TicketId, model: ModelId) -> Option<Head> {
        let (gpu, need_mib) = self.eventual_gpu(model)?;
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
