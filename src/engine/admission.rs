//! Admission: placement, the queue, leases.

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

use super::pool::{Resident, ResidentState};
use super::status::Outcome;
use super::{
    AllocKind, DeadlineRef, Engine, InFlight, LeaseEntry, QueueKey, Queued, TicketEntry,
    TicketState, types::*,
};

/// How an admission uses the GPU it is placed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum PlaceKind {
    /// The model is ready there.
    Warm,
    /// The model is loading there; join that load.
    Join,
    /// Load a new copy there.
    Cold,
}

/// Where and how an admission (or a preload) goes.
#[derive(Debug)]
pub(super) struct Placement {
    pub gpu: GpuId,
    pub kind: PlaceKind,
    /// Idle copies to evict first, in policy order, with their weights.
    pub victims: Vec<(ModelId, u64)>,
}

/// Why an admission could not be placed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Blocked {
    /// Not enough memory (or every copy at max_concurrency) on any GPU.
    Memory,
    /// Memory would do, but the load it needs would not finish before the deadline.
    TooLate,
    /// It needs a new copy, and its pod already has `pod_loads` loads in flight.
    PodLoads,
}

/// When a load started or joined for an admission would be worth it, and
/// whether its pod may start one at all.
#[derive(Debug, Clone, Copy)]
pub(super) struct LoadWindow {
    pub now: Time,
    pub deadline: Option<Time>,
    /// Asked in this very call: its load warms the model even if the caller
    /// gives up first (a retry then finds it warm), so it is always allowed.
    pub fresh: bool,
    /// The pod is below its `pod_loads` bound: it may start a new copy.
    pub may_load: bool,
}

impl LoadWindow {
    fn allows_load_done_at(&self, done: Time) -> bool {
        self.fresh || self.deadline.is_none_or(|d| done <= d)
    }
}

/// Placement preference: kind first, then fewest evictions, then most free memory.
type PlaceKey = (PlaceKind, usize, Reverse<u64>);

/// How a lease ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LeaseEnd {
    Released,
    Expired,
    Revoked(RevokeReason),
}

impl Engine {
    /// Admits a task: a lease now, a ticket answered later, or an error now.
    pub fn admit(&mut self, req: &AdmitRequest, now: Time) -> Result<Admission, AdmitError> {
        let mut changed = self.advance(now);
        let evictions = self.counters.evictions;
        let mut quiet = false;
        let result = self.admit_inner(req, now, &mut quiet);
        let model = self.model_id(&req.model);
        match &result {
            Ok(Admission::Granted(_)) => self.counters.count(model, Outcome::GrantedWarm),
            Ok(Admission::Pending(_)) => {}
            Err(e) => self.counters.count(model, Outcome::from(e)),
        }
        let expired = self.expire_due(now);
        changed |= expired;
        let evicted = self.counters.evictions != evictions;
        if changed || evicted || matches!(result, Ok(Admission::Pending(_))) {
            if quiet && !expired && !self.walk_whole_queue {
                // The queue pass of this admission changed nothing, and
                // nothing changed since: another pass would decide the same
                // (the reference engine runs it; the property tests compare).
                self.settle_pools(now);
            } else {
                self.settle(now);
            }
        }
        result
    }

    /// `quiet` is set when the admission was queued after a queue pass that
    /// changed nothing, and nothing changed after that pass.
    fn admit_inner(
        &mut self,
        req: &AdmitRequest,
        now: Time,
        quiet: &mut bool,
    ) -> Result<Admission, AdmitError> {
        if self.shutting_down {
            return Err(AdmitError::ShuttingDown);
        }
        let (token, alloc) = self
            .allocations
            .get_key_value(req.token.as_str())
            .ok_or(AdmitError::UnknownToken)?;
        let AllocKind::Slots(slots) = alloc.kind else {
            return Err(AdmitError::NotSlotAllocation);
        };
        let has_slot = alloc.in_use < slots;
        let may_wait = (alloc.waiting as usize) < self.settings.pod_queue_limit;
        let may_load = alloc.loads < self.settings.pod_loads;
        let token = Arc::clone(token);
        let model = self
            .model_id(&req.model)
            .ok_or_else(|| AdmitError::UnknownModel {
                name: req.model.clone(),
                known: self.models.iter().map(|m| m.name.clone()).collect(),
            })?;
        let spec = self.model(model);
        if let Some(tt) = &req.task_type
            && !spec.task_types.is_empty()
            && !spec.task_types.iter().any(|t| t == tt)
        {
            return Err(AdmitError::TaskTypeNotServed {
                model: spec.name.clone(),
                task_type: tt.clone(),
                served: spec.task_types.clone(),
            });
        }
        self.check_fits_somewhere(model)?;

        let deadline = match req.wait {
            Wait::Default => Some(now + self.settings.default_timeout),
            Wait::For(d) if d > Duration::ZERO => Some(now + d),
            Wait::For(_) | Wait::NoQueue => None,
        };
        let no_queue = deadline.is_none();
        if no_queue && !has_slot {
            return Err(AdmitError::NoFreeSlot { slots });
        }

        let pod_queue_full = AdmitError::PodQueueFull {
            limit: self.settings.pod_queue_limit,
        };
        let pod_load_limit = AdmitError::PodLoadLimit {
            limit: self.settings.pod_loads,
        };
        let when = LoadWindow {
            now,
            deadline,
            fresh: true,
            may_load,
        };

        // Fast path: nothing waits ahead of us.
        if self.queue.is_empty() && has_slot {
            match self.place(model, &[], when) {
                Ok(p) if p.kind == PlaceKind::Warm => {
                    self.commit_placement(&token, model, &p, now);
                    let lease = self.new_lease(token, p.gpu, model, true, now, now);
                    return Ok(Admission::Granted(lease));
                }
                // Waiting on a load is waiting too.
                Ok(_) if !may_wait => return Err(pod_queue_full),
                Ok(p) => {
                    let ticket = self.new_ticket(token, model, req.priority, now, deadline, false);
                    return Ok(self.apply(ticket, p, now));
                }
                Err(Blocked::PodLoads) if no_queue => return Err(pod_load_limit),
                Err(_) if no_queue => {
                    self.fairness.record(model, false, now);
                    return Err(AdmitError::NoCapacityNow);
                }
                Err(_) => {}
            }
        }
        // Its own bound first: a pod at its limit learns about its limit,
        // whatever the rest of the queue looks like.
        if !may_wait {
            return Err(pod_queue_full);
        }
        if !no_queue && self.queue.len() >= self.settings.queue_limit {
            // The node is full, not this pod: it counts against the model.
            self.fairness.record(model, false, now);
            return Err(AdmitError::QueueFull {
                limit: self.settings.queue_limit,
            });
        }
        let ticket = self.new_ticket(token, model, req.priority, now, deadline, true);
        // Queued behind others: let the queue order decide, now.
        let quiet_pass = has_slot && !self.dispatch(now);
        if no_queue
            && self
                .tickets
                .get(&ticket)
                .is_some_and(|t| t.state == TicketState::Queued)
        {
            self.drop_ticket(ticket);
            if !may_load && matches!(self.place(model, &[], when), Err(Blocked::PodLoads)) {
                return Err(pod_load_limit);
            }
            if has_slot {
                self.fairness.record(model, false, now);
            }
            return Err(AdmitError::NoCapacityNow);
        }
        // Granted by that dispatch: answer directly rather than by an effect.
        let own_grant = self
            .effects
            .iter()
            .rposition(|f| matches!(f, Effect::Grant { ticket: t, .. } if *t == ticket));
        if let Some(i) = own_grant
            && let Effect::Grant { lease, .. } = self.effects.remove(i)
        {
            // Counted once, by `admit`, as it answers.
            self.counters.uncount(lease.model, Outcome::GrantedWarm);
            return Ok(Admission::Granted(lease));
        }
        *quiet = quiet_pass;
        Ok(Admission::Pending(ticket))
    }

    /// Refuses a model no healthy GPU could hold even when empty.
    pub(super) fn check_fits_somewhere(&self, model: ModelId) -> Result<(), AdmitError> {
        let spec = self.model(model);
        let need = spec.weights_mib + spec.working_mib;
        let largest = self
            .pools
            .iter()
            .filter(|p| p.healthy)
            .map(|p| p.usable_mib())
            .max()
            .ok_or(AdmitError::NoHealthyGpu)?;
        if need > largest {
            return Err(AdmitError::NeverFits {
                model: spec.name.clone(),
                need_mib: need,
                largest_usable_mib: largest,
            });
        }
        Ok(())
    }

    /// Registers a pending ticket with its deadline; `queued` puts it in the
    /// queue (otherwise it is about to be placed).
    fn new_ticket(
        &mut self,
        token: Arc<str>,
        model: ModelId,
        priority: i32,
        now: Time,
        deadline: Option<Time>,
        queued: bool,
    ) -> TicketId {
        let id = TicketId(self.next_ticket);
        self.next_ticket += 1;
        if let Some(a) = self.allocations.get_mut(&token) {
            a.waiting += 1;
        }
        let key: QueueKey = (Reverse(priority), self.next_seq);
        self.next_seq += 1;
        if queued {
            self.enqueue(
                key,
                Queued {
                    ticket: id,
                    model,
                    deadline,
                },
            );
        }
        if let Some(d) = deadline {
            self.push_deadline(d, DeadlineRef::Ticket(id));
        }
        self.tickets.insert(
            id,
            TicketEntry {
                token,
                model,
                key,
                requested_at: now,
                deadline,
                state: TicketState::Queued,
                // Not queued: about to be placed.
                competed: !queued,
            },
        );
        id
    }

    /// The best GPU for `model` right now.
    ///
    /// `reserved` (per GPU, during a queue pass) is memory promised to queued
    /// work ahead of this one: a placement must leave at least that much free
    /// or reclaimable from idle copies. `when` says whether a load may be
    /// started or joined: only if it is expected to finish (the catalog's
    /// `load_ms`) before the admission's deadline, or the admission is fresh
    /// (so a model always gets warmed by someone who asked).
    pub(super) fn place(
        &self,
        model: ModelId,
        reserved: &[u64],
        when: LoadWindow,
    ) -> Result<Placement, Blocked> {
        let spec = self.model(model);
        let mut best: Option<(PlaceKey, Placement)> = None;
        let mut too_late = false;
        let mut load_limited = false;
        // A GPU where it could be served in time but for memory (or a pin on
        // its copy): then it is waiting for memory, not too late.
        let mut short_of_memory = false;
        for (i, pool) in self.pools.iter().enumerate() {
            if !pool.healthy {
                continue;
            }
            let (kind, need) = match pool.residents.peek(&model) {
                Some(r) if r.pins >= spec.max_concurrency => {
                    short_of_memory |= match r.state {
                        ResidentState::Ready => true,
                        ResidentState::Loading { since, .. } => {
                            when.allows_load_done_at(since + Duration::from_millis(spec.load_ms))
                        }
                    };
                    continue;
                }
                Some(r) => match r.state {
                    ResidentState::Ready => (PlaceKind::Warm, spec.working_mib),
                    ResidentState::Loading { since, .. } => {
                        if !when.allows_load_done_at(since + Duration::from_millis(spec.load_ms)) {
                            too_late = true;
                            continue;
                        }
                        (PlaceKind::Join, spec.working_mib)
                    }
                },
                None => {
                    if !when.may_load {
                        load_limited = true;
                        continue;
                    }
                    if !when.allows_load_done_at(when.now + Duration::from_millis(spec.load_ms)) {
                        too_late = true;
                        continue;
                    }
                    (PlaceKind::Cold, spec.weights_mib + spec.working_mib)
                }
            };
            let rank = best.as_ref().map(|(k, _)| k.0);
            if rank.is_some_and(|r| r < kind) {
                continue;
            }
            let Some(victims) = pool.victims_for(need, Some(model), self.settings.policy) else {
                short_of_memory = true;
                continue;
            };
            let promised = reserved.get(i).copied().unwrap_or(0);
            if promised > 0 && pool.headroom_after(model, need, &victims) < promised {
                short_of_memory = true;
                continue;
            }
            let key = (kind, victims.len(), Reverse(pool.free_mib()));
            if best.as_ref().is_none_or(|(k, _)| key < *k) {
                let gpu = GpuId(i as u32);
                best = Some((key, Placement { gpu, kind, victims }));
            }
        }
        match best {
            Some((_, p)) => Ok(p),
            None if short_of_memory => Err(Blocked::Memory),
            None if load_limited => Err(Blocked::PodLoads),
            None if too_late => Err(Blocked::TooLate),
            None => Err(Blocked::Memory),
        }
    }

    /// Takes what a placement needs: the pod's slot, evictions, working
    /// memory, a new load for a cold copy, and a pin on the copy.
    fn commit_placement(&mut self, token: &Arc<str>, model: ModelId, p: &Placement, now: Time) {
        if let Some(a) = self.allocations.get_mut(token) {
            a.in_use += 1;
        }
        self.evict_victims(p.gpu, &p.victims, Some(model));
        let working = self.model(model).working_mib;
        self.pool_mut(p.gpu).working_mib += working;
        if p.kind == PlaceKind::Cold {
            self.start_load(p.gpu, model, Some(token), now);
        }
        self.pin(p.gpu, model);
    }

    /// Places a pending ticket: a grant now (warm), or a wait on a load.
    pub(super) fn apply(&mut self, ticket: TicketId, p: Placement, now: Time) -> Admission {
        let t = &self.tickets[&ticket];
        let (model, token, key) = (t.model, Arc::clone(&t.token), t.key);
        self.dequeue(&key);
        self.commit_placement(&token, model, &p, now);
        if p.kind == PlaceKind::Warm {
            let t = self
                .take_ticket(ticket)
                .expect("ticket being placed exists");
            return Admission::Granted(self.new_lease(
                token,
                p.gpu,
                model,
                true,
                t.requested_at,
                now,
            ));
        }
        if let Some(r) = self.pool_mut(p.gpu).residents.peek_mut(&model) {
            r.waiters.push(ticket);
        }
        if let Some(t) = self.tickets.get_mut(&ticket) {
            t.state = TicketState::Loading(p.gpu);
        }
        Admission::Pending(ticket)
    }

    fn pin(&mut self, gpu: GpuId, model: ModelId) {
        let cost = self.model(model).load_ms.max(1) as f64;
        let policy = self.settings.policy;
        let pool = self.pool_mut(gpu);
        pool.touch(model, cost, policy);
        if let Some(r) = pool.residents.peek_mut(&model) {
            r.pins += 1;
        }
    }

    /// Evicts idle copies (already chosen by the policy) and says so.
    pub(super) fn evict_victims(
        &mut self,
        gpu: GpuId,
        victims: &[(ModelId, u64)],
        for_model: Option<ModelId>,
    ) {
        let policy = self.settings.policy;
        for &(victim, _) in victims {
            let pool = self.pool_mut(gpu);
            if let Some(r) = pool.remove_resident(victim) {
                debug_assert!(r.is_evictable(), "only idle copies are evicted");
                pool.note_victim(r.gds_h, policy);
                self.counters.evictions += 1;
                self.counters.evicted_mib += r.weights_mib;
                self.counters.model(victim).evictions += 1;
                self.emit(Effect::Unload {
                    gpu,
                    model: victim,
                    reason: UnloadReason::Evicted { for_model },
                });
            }
        }
    }

    /// Starts loading a new copy (weights committed now) and says so; `by`
    /// is the pod whose admission asked for it.
    pub(super) fn start_load(
        &mut self,
        gpu: GpuId,
        model: ModelId,
        by: Option<&Arc<str>>,
        now: Time,
    ) -> LoadId {
        let load = LoadId(self.next_load);
        self.next_load += 1;
        let weights = self.model(model).weights_mib;
        let cost = self.model(model).load_ms.max(1) as f64;
        let policy = self.settings.policy;
        let pool = self.pool_mut(gpu);
        pool.weights_mib += weights;
        pool.residents.push(
            model,
            Resident::new(ResidentState::Loading { load, since: now }, weights, now),
        );
        pool.touch(model, cost, policy);
        if let Some(a) = by.and_then(|t| self.allocations.get_mut(t)) {
            a.loads += 1;
        }
        let by = by.map(Arc::clone);
        self.loading.insert(load, InFlight { gpu, model, by });
        self.counters.loads_started += 1;
        self.counters.loaded_mib += weights;
        let m = self.counters.model(model);
        m.loads_started += 1;
        m.loaded_mib += weights;
        self.emit(Effect::Load { load, gpu, model });
        load
    }

    /// Creates a live lease (slot and working memory are already held).
    pub(super) fn new_lease(
        &mut self,
        token: Arc<str>,
        gpu: GpuId,
        model: ModelId,
        warm: bool,
        requested_at: Time,
        now: Time,
    ) -> Lease {
        self.fairness.record(model, true, now);
        let id = LeaseId(self.next_lease);
        self.next_lease += 1;
        let lease = Lease {
            id,
            gpu,
            model,
            warm,
            requested_at,
            granted_at: now,
            expires_at: now + self.settings.lease_ttl,
        };
        self.push_deadline(lease.expires_at, DeadlineRef::Lease(id));
        self.leases.insert(id, LeaseEntry { lease, token });
        lease
    }

    /// Releases a lease: its working memory and slot return; the model stays
    /// resident as the most recently used copy. `token` is `None` for the
    /// operator, who may release any lease.
    pub fn release(
        &mut self,
        lease: LeaseId,
        token: Option<&str>,
        now: Time,
    ) -> Result<(), LeaseError> {
        self.advance(now);
        let result = self.check_owner(lease, token);
        if result.is_ok() {
            self.end_lease(lease, LeaseEnd::Released, now);
        }
        self.expire_due(now);
        self.settle(now);
        result
    }

    /// Extends a lease by the TTL from `now`; returns the new expiry.
    pub fn keep_alive(
        &mut self,
        lease: LeaseId,
        token: Option<&str>,
        now: Time,
    ) -> Result<Time, LeaseError> {
        let mut changed = self.advance(now);
        let result = self.check_owner(lease, token).map(|()| {
            let expires_at = now + self.settings.lease_ttl;
            let e = self.leases.get_mut(&lease).expect("checked above");
            e.lease.expires_at = expires_at;
            self.push_deadline(expires_at, DeadlineRef::Lease(lease));
            expires_at
        });
        changed |= self.expire_due(now);
        if changed {
            self.settle(now);
        }
        result
    }

    fn check_owner(&self, lease: LeaseId, token: Option<&str>) -> Result<(), LeaseError> {
        match self.leases.get(&lease) {
            Some(e) if token.is_none_or(|t| *e.token == *t) => Ok(()),
            _ => Err(LeaseError::UnknownLease(lease)),
        }
    }

    /// The caller of a pending ticket went away: drop it without an answer.
    /// Returns false when the ticket is unknown (already answered).
    pub fn cancel(&mut self, ticket: TicketId, now: Time) -> bool {
        self.advance(now);
        let model = self.tickets.get(&ticket).map(|t| t.model);
        if let Some(model) = model {
            self.record_unserved(ticket, true, now);
            self.drop_ticket(ticket);
            self.counters.count(Some(model), Outcome::Cancelled);
        }
        let known = model.is_some();
        self.expire_due(now);
        self.settle(now);
        known
    }

    /// Ends a lease: frees its working memory, pin and slot; says why.
    pub(super) fn end_lease(&mut self, id: LeaseId, end: LeaseEnd, now: Time) {
        let Some(LeaseEntry { lease, token }) = self.leases.remove(&id) else {
            return;
        };
        let spec = &self.models[lease.model.0 as usize];
        let (working, cost) = (spec.working_mib, spec.load_ms.max(1) as f64);
        let policy = self.settings.policy;
        let pool = self.pool_mut(lease.gpu);
        pool.working_mib -= working;
        if let Some(r) = pool.residents.peek_mut(&lease.model) {
            r.pins -= 1;
            if r.pins == 0 {
                r.idle_since = now;
            }
        }
        if end == LeaseEnd::Released {
            pool.touch(lease.model, cost, policy);
        }
        if let Some(a) = self.allocations.get_mut(&token) {
            a.in_use -= 1;
        }
        match end {
            LeaseEnd::Released => self.counters.released += 1,
            LeaseEnd::Expired => {
                self.counters.expired += 1;
                self.emit(Effect::Expire { lease });
            }
            LeaseEnd::Revoked(reason) => {
                self.counters.revoked += 1;
                self.emit(Effect::Revoke { lease, reason });
            }
        }
    }

    /// Answers a pending ticket with a rejection.
    pub(super) fn finish_ticket(&mut self, ticket: TicketId, reason: Rejection, now: Time) {
        let model = self.tickets.get(&ticket).map(|t| t.model);
        let unserved = match reason {
            Rejection::DeadlineExceeded { .. }
            | Rejection::LoadFailed { .. }
            | Rejection::NoHealthyGpu
            | Rejection::NoGpuFits { .. } => true,
            Rejection::AllocationReleased | Rejection::ShuttingDown => false,
        };
        self.record_unserved(ticket, unserved, now);
        if self.drop_ticket(ticket) {
            self.counters.count(model, Outcome::from(&reason));
            self.emit(Effect::Reject { ticket, reason });
        }
    }

    /// A pending ticket ends without a lease: it counts against its model's
    /// grant ratio if it competed for capacity and `unserved` says the node
    /// (not its pod, nor shutdown) is why.
    fn record_unserved(&mut self, ticket: TicketId, unserved: bool, now: Time) {
        if let Some(t) = self.tickets.get(&ticket)
            && t.competed
            && unserved
        {
            self.fairness.record(t.model, false, now);
        }
    }

    /// Forgets a pending ticket (granted or dropped); its pod has one fewer waiting.
    pub(super) fn take_ticket(&mut self, ticket: TicketId) -> Option<TicketEntry> {
        let t = self.tickets.remove(&ticket)?;
        if let Some(a) = self.allocations.get_mut(&t.token) {
            a.waiting -= 1;
        }
        Some(t)
    }

    /// Forgets a load in flight (finished, failed, or dropped with its GPU);
    /// its pod may start another. Returns its copy, if it was tracked.
    pub(super) fn end_load(&mut self, load: LoadId) -> Option<(GpuId, ModelId)> {
        let f = self.loading.remove(&load)?;
        if let Some(a) = f.by.and_then(|t| self.allocations.get_mut(&t)) {
            a.loads -= 1;
        }
        Some((f.gpu, f.model))
    }

    /// Removes a pending ticket and everything it holds (queue place, or slot,
    /// working memory and pin on a loading copy). Returns false if unknown.
    pub(super) fn drop_ticket(&mut self, ticket: TicketId) -> bool {
        let Some(t) = self.take_ticket(ticket) else {
            return false;
        };
        match t.state {
            TicketState::Queued => {
                self.dequeue(&t.key);
            }
            TicketState::Loading(gpu) => {
                let working = self.model(t.model).working_mib;
                let pool = self.pool_mut(gpu);
                pool.working_mib -= working;
                if let Some(r) = pool.residents.peek_mut(&t.model) {
                    r.pins -= 1;
                    r.waiters.retain(|w| *w != ticket);
                }
                if let Some(a) = self.allocations.get_mut(&t.token) {
                    a.in_use -= 1;
                }
            }
        }
        true
    }

    /// Processes every deadline strictly before `now`: the first step of every
    /// operation at `now`. Deadlines that fall exactly at `now` wait for
    /// [`Engine::expire_due`], after the operation's own event: an answer that
    /// arrives at the deadline instant counts as in time (the same rule as
    /// [`LoadWindow`]: a load that ends at the deadline is worth starting), so a
    /// load that finishes, a release that frees memory or a keep-alive that
    /// extends a lease at that very millisecond wins over the deadline.
    /// Returns whether anything ended.
    pub(super) fn advance(&mut self, now: Time) -> bool {
        self.expire(now, false)
    }

    /// Processes the deadlines that fall at `now` (and any earlier one left):
    /// the last step of an operation, before [`Engine::settle`].
    pub(super) fn expire_due(&mut self, now: Time) -> bool {
        self.expire(now, true)
    }

    fn expire(&mut self, now: Time, including_now: bool) -> bool {
        let mut changed = false;
        while let Some(&Reverse((at, r))) = self.deadlines.peek() {
            if at > now || (at == now && !including_now) {
                break;
            }
            self.deadlines.pop();
            if !self.deadline_is_live(at, r) {
                continue;
            }
            changed = true;
            match r {
                DeadlineRef::Lease(id) => self.end_lease(id, LeaseEnd::Expired, now),
                DeadlineRef::Ticket(id) => {
                    let waited = now.saturating_since(self.tickets[&id].requested_at);
                    self.finish_ticket(id, Rejection::DeadlineExceeded { waited }, now);
                }
                // Nothing ends: the pass that follows decides anew.
                DeadlineRef::Pass => self.pass_at = None,
            }
        }
        changed
    }
}
