//! The pure admission engine: a deterministic state machine.
//!
//! It owns the node's GPU memory ledgers, model residency (LRU or
//! GreedyDual-Size, with pin counts), the bounded priority queue, leases with
//! TTLs and pods' allocations. It never sleeps, spawns, locks, logs or reads a
//! clock: every operation takes `now` and leaves its decisions as
//! [`Effect`]s, which the shell drains with [`Engine::drain_effects`] and
//! carries out (load a model, answer a waiting caller, publish an event).
//! [`Engine::next_deadline`] tells the shell when to call [`Engine::tick`].
//!
//! # Lifecycle of an admission
//! `admit` either grants at once (warm model, memory free) or returns a
//! [`TicketId`]; a ticket then ends in exactly one [`Effect::Grant`] or
//! [`Effect::Reject`], unless the caller cancels it first. A lease ends by
//! `release`, by expiry ([`Effect::Expire`]) or by revocation ([`Effect::Revoke`]).
//!
//! # Time
//! Every operation at `now` first ends what fell due strictly before `now`
//! (expired leases, admissions past their deadline), then applies its own
//! event, then ends what falls due exactly at `now`, then places queued work.
//! So an answer that arrives at the deadline instant counts as in time: a
//! load that finishes there grants its waiters, a keep-alive there extends
//! the lease, a release there is a release and not an expiry. This matches
//! the load window (a load that ends at the deadline is worth starting).
//!
//! # Placement (DESIGN.md §Admission)
//! A GPU where the model is ready and its working memory fits (evicting idle
//! copies if needed, fewest first); else one where it is loading (join the
//! load); else the GPU where a new copy fits after the fewest evictions of
//! idle copies.
//!
//! # Fairness under overload
//! Queued work is placed in priority then arrival order, around **one head
//! reservation**: the blocked admission of the least-served model (lowest
//! recent grant ratio) at the highest waiting priority holds what it needs on
//! one GPU (weights if it needs a copy, plus its working memory). Nothing placed
//! after it may eat into that memory, so it is placed once the tasks that
//! held the memory when it was chosen have ended; its model then keeps the
//! head for one turn (load time plus two task times) so the copy serves a
//! batch. No model with servable work goes without memory while a
//! better-served model holds the head. `dispatch.rs` has the guarantee in full
//! and why the earlier per-model reservations starved Stable Diffusion;
//! `fairness.rs` says what counts towards a model's grant ratio (nothing a pod
//! does beyond its own bounds).
//!
//! # Bounds per pod
//! A pod (allocation token) holds at most its slots in leases,
//! `Settings::pod_queue_limit` pending admissions and `Settings::pod_loads`
//! loads in flight; over them it is refused with an error naming its own
//! limit, and nothing it asks beyond them touches other pods' outcomes.

mod admission;
mod copies;
mod dispatch;
mod fairness;
mod lifecycle;
mod pool;
mod status;
#[cfg(test)]
mod tests;
mod types;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::time::Duration;

pub use pool::GpuSpec;
pub use status::{
    Counters, GpuStatus, HeadStatus, ModelCounters, Outcome, PendingStatus, ResidentStatus, Status,
};
pub use types::*;

use crate::config::{self, EvictionPolicy, ModelSpec};
use dispatch::Head;
use fairness::Fairness;
use pool::Pool;

/// The engine's hash maps: foldhash (hashbrown's default hasher, already in
/// the tree) is several times faster than SipHash on the hot admission path
/// and seeded per process; no engine output depends on iteration order
/// (whatever is collected from a map is sorted).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Engine-wide settings (from `config::AdmissionConfig` and `gpus.reserve_mib`).
///
/// [`Settings::default`] holds the config's defaults; build literals with
/// `..Settings::default()` so that new settings do not break them.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub reserve_mib: u64,
    /// Most admissions waiting in the queue, node-wide.
    pub queue_limit: usize,
    /// Most admissions one pod (allocation token) may have pending: queued
    /// or waiting on a load.
    pub pod_queue_limit: usize,
    /// Most loads one pod's admissions may have in flight.
    pub pod_loads: u32,
    pub default_timeout: Duration,
    pub lease_ttl: Duration,
    pub policy: EvictionPolicy,
}

impl Settings {
    pub fn from_config(cfg: &config::Config) -> Settings {
        Settings {
            reserve_mib: cfg.gpus.reserve_mib,
            queue_limit: cfg.admission.queue_limit,
            pod_queue_limit: cfg.admission.per_pod_queue_limit,
            pod_loads: cfg.admission.per_pod_loads,
            default_timeout: cfg.admission.default_timeout,
            lease_ttl: cfg.admission.lease_ttl,
            policy: cfg.admission.eviction_policy,
        }
    }
}

impl Default for Settings {
    /// The config's defaults (config/example.yaml).
    fn default() -> Settings {
        Settings {
            reserve_mib: 512,
            queue_limit: 256,
            pod_queue_limit: 32,
            pod_loads: 4,
            default_timeout: Duration::from_secs(30),
            lease_ttl: Duration::from_secs(60),
            policy: EvictionPolicy::Lru,
        }
    }
}

/// Why an engine could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("model {0:?} appears twice in the catalog")]
    DuplicateModel(String),
}

/// What a pod's allocation token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocKind {
    /// This many concurrent leases (`<domain>/slot`).
    Slots(u32),
    /// A dedicated carve-out of one GPU's pool (`<domain>/vram`).
    Vram { gpu: GpuId, mib: u64 },
}

#[derive(Debug, Clone)]
struct Allocation {
    kind: AllocKind,
    /// Leases plus admissions placed on a loading copy (each holds a slot).
    in_use: u32,
    /// Pending admissions (queued or waiting on a load): at most
    /// `Settings::pod_queue_limit`.
    waiting: u32,
    /// Loads in flight that this pod's admissions started: at most
    /// `Settings::pod_loads`. A load stays counted when its caller leaves.
    loads: u32,
}

/// A load in flight.
#[derive(Debug, Clone)]
struct InFlight {
    gpu: GpuId,
    model: ModelId,
    /// The pod whose admission started it (`None`: the operator's preload).
    by: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
struct LeaseEntry {
    lease: Lease,
    token: Arc<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TicketState {
    Queued,
    /// Placed on a copy that is loading on this GPU; holds a slot and working memory.
    Loading(GpuId),
}

#[derive(Debug, Clone)]
struct TicketEntry {
    token: Arc<str>,
    model: ModelId,
    key: QueueKey,
    requested_at: Time,
    deadline: Option<Time>,
    state: TicketState,
    /// A queue pass tried to place it with a free slot of its pod (or it was
    /// placed at once): its end counts for its model's grant ratio.
    competed: bool,
}

/// Queue order: higher priority first, then arrival.
type QueueKey = (Reverse<i32>, u64);

/// `Engine::by_model`'s order: priority level, model, arrival.
type ModelKey = (Reverse<i32>, ModelId, u64);

/// A queue entry: what a dispatch pass needs to skip a ticket without
/// looking anything up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Queued {
    ticket: TicketId,
    model: ModelId,
    deadline: Option<Time>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum DeadlineRef {
    Lease(LeaseId),
    Ticket(TicketId),
    /// A queue decision may change with time alone (see `Engine::pass_at`).
    Pass,
}

/// The admission engine. See the module docs.
///
/// `Clone` makes a what-if copy: the copy decides exactly as the original
/// would (tests compare an operation against a plain `tick` on a copy).
#[derive(Debug, Clone)]
pub struct Engine {
    settings: Settings,
    models: Vec<ModelSpec>,
    model_ids: HashMap<String, ModelId>,
    pools: Vec<Pool>,
    /// Pods' allocations by token.
    allocations: HashMap<Arc<str>, Allocation>,
    leases: HashMap<LeaseId, LeaseEntry>,
    tickets: HashMap<TicketId, TicketEntry>,
    /// Tickets waiting for a slot or for memory (not those waiting on a load).
    queue: BTreeMap<QueueKey, Queued>,
    /// The same tickets by priority level, then model, then arrival: a queue
    /// pass skips all of a model's tickets at a level at once (see `dispatch`).
    by_model: BTreeMap<ModelKey, Queued>,
    /// How many tickets each (level, model) run of `by_model` holds: a pass
    /// finds a level's runs without a lookup per model.
    runs: BTreeMap<(Reverse<i32>, ModelId), u32>,
    /// A pass's buffers, kept between passes (see `dispatch`).
    scratch: dispatch::Scratch,
    /// Queue passes walk the whole queue (the reference the property tests
    /// compare [`Engine::dispatch`]'s skipping against).
    walk_whole_queue: bool,
    /// Lease expiries and ticket deadlines; stale entries are skipped lazily.
    deadlines: BinaryHeap<Reverse<(Time, DeadlineRef)>>,
    /// Loads in flight, so a result can be matched without a scan.
    loading: HashMap<LoadId, InFlight>,
    /// The one reservation for queued work (see `dispatch`).
    head: Option<Head>,
    /// The earliest moment a decision of the last queue pass changes with
    /// time alone (a load stops fitting before a deadline, an arrival stops
    /// being fresh, a turn ends): `tick` passes again then, so what can be
    /// placed is placed at that moment, not at whichever call comes next.
    pass_at: Option<Time>,
    /// Each model's recent grant ratio and the running turn (see `fairness`).
    fairness: Fairness,
    /// Decisions waiting for the shell.
    effects: Vec<Effect>,
    next_lease: u64,
    next_ticket: u64,
    next_seq: u64,
    next_load: u64,
    shutting_down: bool,
    counters: Counters,
}

impl Engine {
    /// Lease ids are handed out from `first` on (never 0). The shell starts
    /// each run in a block of its own, so that an id from before a restart
    /// never names a lease of this run.
    pub fn start_lease_ids_at(&mut self, first: u64) {
        self.next_lease = first.max(1);
    }

    pub fn new(
        gpus: Vec<GpuSpec>,
        models: Vec<ModelSpec>,
        settings: Settings,
    ) -> Result<Engine, BuildError> {
        let mut model_ids = HashMap::with_capacity_and_hasher(models.len(), Default::default());
        for (i, m) in models.iter().enumerate() {
            let id = ModelId(i as u32);
            if model_ids.insert(m.name.clone(), id).is_some() {
                return Err(BuildError::DuplicateModel(m.name.clone()));
            }
        }
        let counters = Counters::for_catalog(models.len());
        let models_len = models.len();
        let pools = gpus
            .into_iter()
            .map(|spec| Pool::new(spec, settings.reserve_mib))
            .collect();
        Ok(Engine {
            settings,
            models,
            model_ids,
            pools,
            allocations: HashMap::default(),
            leases: HashMap::default(),
            tickets: HashMap::default(),
            queue: BTreeMap::new(),
            by_model: BTreeMap::new(),
            runs: BTreeMap::new(),
            scratch: Default::default(),
            walk_whole_queue: false,
            deadlines: BinaryHeap::new(),
            loading: HashMap::default(),
            head: None,
            pass_at: None,
            fairness: Fairness::new(models_len),
            effects: Vec::new(),
            next_lease: 1,
            next_ticket: 1,
            next_seq: 0,
            next_load: 1,
            shutting_down: false,
            counters,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn model_id(&self, name: &str) -> Option<ModelId> {
        self.model_ids.get(name).copied()
    }

    /// The catalog entry of `id`. Panics on an id this engine did not hand out.
    pub fn model(&self, id: ModelId) -> &ModelSpec {
        &self.models[id.0 as usize]
    }

    pub fn models(&self) -> &[ModelSpec] {
        &self.models
    }

    pub fn gpu_count(&self) -> usize {
        self.pools.len()
    }

    /// The spec of GPU `id`, if it exists.
    pub fn gpu(&self, id: GpuId) -> Option<&GpuSpec> {
        self.pools.get(id.0 as usize).map(|p| &p.spec)
    }

    /// Each GPU's health, in GPU order.
    pub fn gpu_healthy(&self) -> Vec<bool> {
        self.pools.iter().map(|p| p.healthy).collect()
    }

    pub fn gpu_by_uuid(&self, uuid: &str) -> Option<GpuId> {
        self.pools
            .iter()
            .position(|p| p.spec.uuid == uuid)
            .map(|i| GpuId(i as u32))
    }

    /// The lease `id` if it is live.
    pub fn lease(&self, id: LeaseId) -> Option<Lease> {
        self.leases.get(&id).map(|e| e.lease)
    }

    /// Every live lease, oldest first.
    pub fn leases(&self) -> Vec<Lease> {
        let mut v: Vec<Lease> = self.leases.values().map(|e| e.lease).collect();
        v.sort_by_key(|l| l.id);
        v
    }

    /// Admissions waiting for a slot or memory.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Admissions waiting on a model load.
    pub fn waiting_on_load(&self) -> usize {
        self.tickets.len() - self.queue.len()
    }

    /// Live leases held under `token`.
    pub fn leases_of(&self, token: &str) -> Vec<Lease> {
        let mut v: Vec<Lease> = self
            .leases
            .values()
            .filter(|e| &*e.token == token)
            .map(|e| e.lease)
            .collect();
        v.sort_by_key(|l| l.id);
        v
    }

    /// The admissions waiting on `load`, in placement order: the first is
    /// the one whose placement started it. Empty for a preload's load (until
    /// an admission joins it) and once the load has finished.
    pub fn load_waiters(&self, load: LoadId) -> &[TicketId] {
        self.loading
            .get(&load)
            .and_then(|f| self.pools.get(f.gpu.0 as usize)?.residents.peek(&f.model))
            .filter(
                |r| matches!(r.state, pool::ResidentState::Loading { load: l, .. } if l == load),
            )
            .map_or(&[], |r| r.waiters.as_slice())
    }

    /// What `token` was allocated, if it is known.
    pub fn allocation(&self, token: &str) -> Option<AllocKind> {
        self.allocations.get(token).map(|a| a.kind)
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The decisions made since the last drain, without taking them.
    pub fn pending_effects(&self) -> &[Effect] {
        &self.effects
    }

    /// Takes the decisions made since the last call, in order.
    pub fn drain_effects(&mut self) -> std::vec::Drain<'_, Effect> {
        self.effects.drain(..)
    }

    /// The earliest moment [`Engine::tick`] has work to do (a lease expiry,
    /// an admission deadline, or a queue decision that changes with time);
    /// `None` when nothing is timed.
    pub fn next_deadline(&mut self) -> Option<Time> {
        while let Some(&Reverse((at, r))) = self.deadlines.peek() {
            if self.deadline_is_live(at, r) {
                return Some(at);
            }
            self.deadlines.pop();
        }
        None
    }

    /// Processes every deadline at or before `now`, then places queued work.
    pub fn tick(&mut self, now: Time) {
        if self.expire_due(now) {
            self.settle(now);
        }
    }

    fn deadline_is_live(&self, at: Time, r: DeadlineRef) -> bool {
        match r {
            DeadlineRef::Lease(id) => self
                .leases
                .get(&id)
                .is_some_and(|e| e.lease.expires_at == at),
            DeadlineRef::Ticket(id) => self
                .tickets
                .get(&id)
                .is_some_and(|t| t.deadline == Some(at)),
            DeadlineRef::Pass => self.pass_at == Some(at),
        }
    }

    fn push_deadline(&mut self, at: Time, r: DeadlineRef) {
        let live = self.leases.len() + self.tickets.len();
        if self.deadlines.len() > 2 * live + 1024 {
            // Keep-alives leave stale entries behind; rebuild from the live ones.
            let mut fresh = Vec::with_capacity(live + 1);
            fresh.extend(
                self.leases
                    .iter()
                    .map(|(id, e)| Reverse((e.lease.expires_at, DeadlineRef::Lease(*id)))),
            );
            fresh.extend(
                self.tickets.iter().filter_map(|(id, t)| {
                    t.deadline.map(|d| Reverse((d, DeadlineRef::Ticket(*id))))
                }),
            );
            fresh.extend(self.pass_at.map(|at| Reverse((at, DeadlineRef::Pass))));
            self.deadlines = BinaryHeap::from(fresh);
        }
        self.deadlines.push(Reverse((at, r)));
    }

    /// Makes the engine the reference for its queue passes: every pass walks
    /// the whole queue in order, and an admission that queues runs its second
    /// pass even when the first changed nothing, as the engine did before
    /// passes skipped blocked models' runs. Decisions must not change: the
    /// property tests run both and compare. Not for production.
    #[doc(hidden)]
    pub fn walk_whole_queue(&mut self, on: bool) {
        self.walk_whole_queue = on;
    }

    /// Puts a ticket in the queue (and in its by-model index).
    fn enqueue(&mut self, key: QueueKey, q: Queued) {
        if self.by_model.insert((key.0, q.model, key.1), q).is_none() {
            *self.runs.entry((key.0, q.model)).or_insert(0) += 1;
        }
        self.queue.insert(key, q);
    }

    /// Takes a ticket out of the queue (and out of its by-model index).
    fn dequeue(&mut self, key: &QueueKey) -> Option<Queued> {
        let q = self.queue.remove(key)?;
        if self.by_model.remove(&(key.0, q.model, key.1)).is_some()
            && let std::collections::btree_map::Entry::Occupied(mut run) =
                self.runs.entry((key.0, q.model))
        {
            *run.get_mut() -= 1;
            if *run.get() == 0 {
                run.remove();
            }
        }
        Some(q)
    }

    fn pool(&self, gpu: GpuId) -> &Pool {
        &self.pools[gpu.0 as usize]
    }

    fn pool_mut(&mut self, gpu: GpuId) -> &mut Pool {
        &mut self.pools[gpu.0 as usize]
    }

    fn emit(&mut self, e: Effect) {
        self.effects.push(e);
    }

    /// The end of every operation at `now`: the deadlines that fall at `now`
    /// (after the operation's own event; see [`Engine::advance`]), then
    /// [`Engine::settle`] if anything changed.
    fn finish(&mut self, now: Time, changed: bool) {
        if self.expire_due(now) || changed {
            self.settle(now);
        }
    }

    /// After any change: place queued work, then declare pools entering or
    /// leaving the over-committed state.
    fn settle(&mut self, now: Time) {
        self.dispatch(now);
        self.settle_pools(now);
    }

    /// Declares pools entering or leaving the over-committed state.
    fn settle_pools(&mut self, now: Time) {
        for i in 0..self.pools.len() {
            let p = &mut self.pools[i];
            let (committed, usable) = (p.committed_mib(), p.usable_mib());
            match (committed > usable, p.overcommit_since.is_some()) {
                (true, false) => {
                    p.overcommit_since = Some(now);
                    self.effects.push(Effect::Overcommitted {
                        gpu: GpuId(i as u32),
                        committed_mib: committed,
                        usable_mib: usable,
                    });
                }
                (false, true) => {
                    p.overcommit_since = None;
                    self.effects.push(Effect::Drained {
                        gpu: GpuId(i as u32),
                    });
                }
                _ => {}
            }
        }
    }
}
