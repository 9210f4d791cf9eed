//! What the engine shows: counters, a status snapshot, and a self-audit.

use super::pool::ResidentState;
use super::{AllocKind, Engine, TicketState, types::*};

/// How one admission ended. One counter each; labels for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    GrantedWarm,
    GrantedCold,
    Cancelled,
    UnknownToken,
    NotSlotAllocation,
    UnknownModel,
    TaskTypeNotServed,
    NeverFits,
    NoHealthyGpu,
    NoFreeSlot,
    NoCapacityNow,
    QueueFull,
    ShuttingDown,
    DeadlineExceeded,
    LoadFailed,
    NoGpuFits,
    AllocationReleased,
    PodQueueFull,
    PodLoadLimit,
}

impl Outcome {
    pub const ALL: [Outcome; 19] = [
        Outcome::GrantedWarm,
        Outcome::GrantedCold,
        Outcome::Cancelled,
        Outcome::UnknownToken,
        Outcome::NotSlotAllocation,
        Outcome::UnknownModel,
        Outcome::TaskTypeNotServed,
        Outcome::NeverFits,
        Outcome::NoHealthyGpu,
        Outcome::NoFreeSlot,
        Outcome::NoCapacityNow,
        Outcome::QueueFull,
        Outcome::ShuttingDown,
        Outcome::DeadlineExceeded,
        Outcome::LoadFailed,
        Outcome::NoGpuFits,
        Outcome::AllocationReleased,
        Outcome::PodQueueFull,
        Outcome::PodLoadLimit,
    ];

    /// A stable snake_case label (metrics, reports).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::GrantedWarm => "granted_warm",
            Outcome::GrantedCold => "granted_cold",
            Outcome::Cancelled => "cancelled",
            Outcome::UnknownToken => "unknown_token",
            Outcome::NotSlotAllocation => "not_slot_allocation",
            Outcome::UnknownModel => "unknown_model",
            Outcome::TaskTypeNotServed => "task_type_not_served",
            Outcome::NeverFits => "never_fits",
            Outcome::NoHealthyGpu => "no_healthy_gpu",
            Outcome::NoFreeSlot => "no_free_slot",
            Outcome::NoCapacityNow => "no_capacity_now",
            Outcome::QueueFull => "queue_full",
            Outcome::ShuttingDown => "shutting_down",
            Outcome::DeadlineExceeded => "deadline_exceeded",
            Outcome::LoadFailed => "load_failed",
            Outcome::NoGpuFits => "no_gpu_fits",
            Outcome::AllocationReleased => "allocation_released",
            Outcome::PodQueueFull => "pod_queue_full",
            Outcome::PodLoadLimit => "pod_load_limit",
        }
    }

    pub fn is_grant(self) -> bool {
        matches!(self, Outcome::GrantedWarm | Outcome::GrantedCold)
    }
}

impl From<&AdmitError> for Outcome {
    fn from(e: &AdmitError) -> Outcome {
        match e {
            AdmitError::UnknownToken => Outcome::UnknownToken,
            AdmitError::NotSlotAllocation => Outcome::NotSlotAllocation,
            AdmitError::UnknownModel { .. } => Outcome::UnknownModel,
            AdmitError::TaskTypeNotServed { .. } => Outcome::TaskTypeNotServed,
            AdmitError::NeverFits { .. } => Outcome::NeverFits,
            AdmitError::NoHealthyGpu => Outcome::NoHealthyGpu,
            AdmitError::NoFreeSlot { .. } => Outcome::NoFreeSlot,
            AdmitError::NoCapacityNow => Outcome::NoCapacityNow,
            AdmitError::QueueFull { .. } => Outcome::QueueFull,
            AdmitError::PodQueueFull { .. } => Outcome::PodQueueFull,
            AdmitError::PodLoadLimit { .. } => Outcome::PodLoadLimit,
            AdmitError::ShuttingDown => Outcome::ShuttingDown,
        }
    }
}

impl From<&Rejection> for Outcome {
    fn from(r: &Rejection) -> Outcome {
        match r {
            Rejection::DeadlineExceeded { .. } => Outcome::DeadlineExceeded,
            Rejection::LoadFailed { .. } => Outcome::LoadFailed,
            Rejection::NoHealthyGpu => Outcome::NoHealthyGpu,
            Rejection::NoGpuFits { .. } => Outcome::NoGpuFits,
            Rejection::AllocationReleased => Outcome::AllocationReleased,
            Rejection::ShuttingDown => Outcome::ShuttingDown,
        }
    }
}

/// Monotonic counters since the engine was built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// The same counts per catalog model, indexed by [`ModelId`].
    pub models: Vec<ModelCounters>,
    /// Admissions by outcome for names outside the catalog, like
    /// `outcomes`.
    pub outside_catalog: [u64; Outcome::ALL.len()],
    /// Admissions by final outcome, indexed like [`Outcome::ALL`].
    pub outcomes: [u64; Outcome::ALL.len()],
    pub released: u64,
    pub expired: u64,
    pub revoked: u64,
    pub loads_started: u64,
    pub loads_succeeded: u64,
    pub loads_failed: u64,
    /// Weights of every load started.
    pub loaded_mib: u64,
    pub evictions: u64,
    pub evicted_mib: u64,
}

/// One catalog model's share of [`Counters`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelCounters {
    /// Admissions by final outcome, indexed like [`Outcome::ALL`].
    pub outcomes: [u64; Outcome::ALL.len()],
    pub loads_started: u64,
    pub loads_failed: u64,
    /// Weights of every load started.
    pub loaded_mib: u64,
    pub evictions: u64,
}

impl ModelCounters {
    pub fn outcome(&self, o: Outcome) -> u64 {
        self.outcomes[o as usize]
    }
}

impl Counters {
    /// Zeroes for a catalog of `models` models.
    pub(super) fn for_catalog(models: usize) -> Counters {
        Counters {
            models: vec![ModelCounters::default(); models],
            ..Counters::default()
        }
    }

    /// An admission for `model` (`None`: a name outside the catalog) ended.
    pub(super) fn count(&mut self, model: Option<ModelId>, o: Outcome) {
        self.outcomes[o as usize] += 1;
        match model.and_then(|m| self.models.get_mut(m.0 as usize)) {
            Some(m) => m.outcomes[o as usize] += 1,
            None => self.outside_catalog[o as usize] += 1,
        }
    }

    /// Takes back a count of `o` for `model` (an answer given another way).
    pub(super) fn uncount(&mut self, model: ModelId, o: Outcome) {
        self.outcomes[o as usize] -= 1;
        self.model(model).outcomes[o as usize] -= 1;
    }

    pub(super) fn model(&mut self, model: ModelId) -> &mut ModelCounters {
        let i = model.0 as usize;
        if self.models.len() <= i {
            self.models.resize(i + 1, ModelCounters::default());
        }
        &mut self.models[i]
    }

    pub fn outcome(&self, o: Outcome) -> u64 {
        self.outcomes[o as usize]
    }

    /// Admissions that have ended (granted, rejected, refused or cancelled).
    pub fn ended(&self) -> u64 {
        self.outcomes.iter().sum()
    }
}

/// One GPU's pool and residents.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuStatus {
    pub id: GpuId,
    pub uuid: String,
    pub name: String,
    pub healthy: bool,
    pub total_mib: u64,
    pub reserve_mib: u64,
    pub external_mib: u64,
    pub usable_mib: u64,
    pub carved_mib: u64,
    pub weights_mib: u64,
    pub working_mib: u64,
    pub free_mib: u64,
    /// Since when the pool holds more than it can (admissions there wait).
    pub overcommitted_since: Option<Time>,
    /// Most recently used first.
    pub residents: Vec<ResidentStatus>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResidentStatus {
    pub model: ModelId,
    pub name: String,
    pub weights_mib: u64,
    pub loading: bool,
    pub pins: u32,
    /// When the copy became idle (no pins); `None` while pinned or loading.
    pub idle_since: Option<Time>,
}

/// An admission that has not been answered yet, and what it waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingStatus {
    pub ticket: TicketId,
    pub model: ModelId,
    pub priority: i32,
    pub requested_at: Time,
    pub deadline: Option<Time>,
    /// `Some(gpu)` while it waits on a copy loading there: it then holds a
    /// slot, its working memory and a pin on that copy. `None` while queued
    /// for a slot or for memory.
    pub loading_on: Option<GpuId>,
}

/// The head reservation: the waiting admission that memory goes to first
/// (see the engine's fairness guarantee).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadStatus {
    pub ticket: TicketId,
    pub model: ModelId,
    /// Work of a higher priority is placed regardless of the reservation.
    pub priority: i32,
    pub gpu: GpuId,
    /// Held for it alone: the weights if it needs a new copy, plus its
    /// working memory.
    pub reserved_mib: u64,
}

/// A snapshot of the whole engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub gpus: Vec<GpuStatus>,
    /// Admissions waiting for a slot or memory.
    pub queued: usize,
    /// Admissions waiting on a model load.
    pub waiting_on_load: usize,
    pub leases: usize,
    pub allocations: usize,
    /// The queue's bound (`Settings::queue_limit`).
    pub queue_limit: usize,
    /// The catalog's names, indexed by [`ModelId`] (as `counters.models`).
    pub models: Vec<String>,
    pub counters: Counters,
}

impl Engine {
    /// The head reservation, if one holds.
    pub fn head(&self) -> Option<HeadStatus> {
        self.head.map(|h| HeadStatus {
            ticket: h.ticket,
            model: h.model,
            priority: self.tickets.get(&h.ticket).map_or(0, |t| t.key.0.0),
            gpu: h.gpu,
            reserved_mib: h.need_mib,
        })
    }

    /// The pending admission `ticket`, if it has not been answered yet.
    pub fn pending(&self, ticket: TicketId) -> Option<PendingStatus> {
        let t = self.tickets.get(&ticket)?;
        Some(PendingStatus {
            ticket,
            model: t.model,
            priority: t.key.0.0,
            requested_at: t.requested_at,
            deadline: t.deadline,
            loading_on: match t.state {
                TicketState::Queued => None,
                TicketState::Loading(gpu) => Some(gpu),
            },
        })
    }

    pub fn status(&self) -> Status {
        let gpus = (0..self.pools.len())
            .filter_map(|i| self.gpu_status(GpuId(i as u32)))
            .collect();
        Status {
            gpus,
            queued: self.queue.len(),
            waiting_on_load: self.tickets.len() - self.queue.len(),
            leases: self.leases.len(),
            allocations: self.allocations.len(),
            queue_limit: self.settings.queue_limit,
            models: self.models.iter().map(|m| m.name.clone()).collect(),
            counters: self.counters.clone(),
        }
    }

    /// One GPU's pool and residents.
    pub fn gpu_status(&self, gpu: GpuId) -> Option<GpuStatus> {
        let p = self.pools.get(gpu.0 as usize)?;
        Some(GpuStatus {
            id: gpu,
            uuid: p.spec.uuid.clone(),
            name: p.spec.name.clone(),
            healthy: p.healthy,
            total_mib: p.spec.total_mib,
            reserve_mib: p.reserve_mib,
            external_mib: p.external_mib,
            usable_mib: p.usable_mib(),
            carved_mib: p.carved_mib,
            weights_mib: p.weights_mib,
            working_mib: p.working_mib,
            free_mib: p.free_mib(),
            overcommitted_since: p.overcommit_since,
            residents: p
                .residents
                .iter()
                .map(|(m, r)| ResidentStatus {
                    model: *m,
                    name: self.model(*m).name.clone(),
                    weights_mib: r.weights_mib,
                    loading: r.state != ResidentState::Ready,
                    pins: r.pins,
                    idle_since: r.is_evictable().then_some(r.idle_since),
                })
                .collect(),
        })
    }

    /// Recomputes every ledger from the leases, tickets and residents and
    /// compares with the running totals. Cheap enough for tests and debug
    /// builds; returns the first discrepancy found.
    pub fn audit(&self) -> Result<(), String> {
        self.audit_counters()?;
        let mut working = vec![0u64; self.pools.len()];
        let mut pins = vec![std::collections::HashMap::new(); self.pools.len()];
        let mut in_use: std::collections::HashMap<&str, u32> = Default::default();
        for e in self.leases.values() {
            let g = e.lease.gpu.0 as usize;
            working[g] += self.model(e.lease.model).working_mib;
            *pins[g].entry(e.lease.model).or_insert(0u32) += 1;
            *in_use.entry(&e.token).or_default() += 1;
        }
        for (id, t) in &self.tickets {
            match t.state {
                TicketState::Queued => {
                    if self.queue.get(&t.key).map(|q| q.ticket) != Some(*id) {
                        return Err(format!("{id} is queued but not in the queue"));
                    }
                    if t.deadline.is_none() {
                        return Err(format!("{id} is queued without a deadline"));
                    }
                }
                TicketState::Loading(gpu) => {
                    let g = gpu.0 as usize;
                    working[g] += self.model(t.model).working_mib;
                    *pins[g].entry(t.model).or_insert(0u32) += 1;
                    *in_use.entry(&t.token).or_default() += 1;
                    let r = self.pools[g]
                        .residents
                        .peek(&t.model)
                        .ok_or_else(|| format!("{id} waits on a copy that is gone"))?;
                    if !r.waiters.contains(id) {
                        return Err(format!("{id} missing from the waiters of its copy"));
                    }
                }
            }
        }
        if self.queue.len() > self.tickets.len() {
            return Err("queue holds unknown tickets".into());
        }
        let indexed = self.by_model.len() == self.queue.len()
            && self
                .queue
                .iter()
                .all(|(k, q)| self.by_model.get(&(k.0, q.model, k.1)) == Some(q));
        let mut runs: std::collections::BTreeMap<(std::cmp::Reverse<i32>, ModelId), u32> =
            Default::default();
        for k in self.by_model.keys() {
            *runs.entry((k.0, k.1)).or_insert(0) += 1;
        }
        if !indexed || runs != self.runs {
            return Err("the by-model index differs from the queue".into());
        }
        let mut waiting: std::collections::HashMap<&str, u32> = Default::default();
        for t in self.tickets.values() {
            *waiting.entry(&t.token).or_default() += 1;
        }
        let mut loads: std::collections::HashMap<&str, u32> = Default::default();
        for f in self.loading.values() {
            if let Some(by) = &f.by {
                *loads.entry(by).or_default() += 1;
            }
        }
        let mut carved = vec![0u64; self.pools.len()];
        for (token, a) in &self.allocations {
            let pending = waiting.get(&**token).copied().unwrap_or(0);
            if a.waiting != pending || pending as usize > self.settings.pod_queue_limit {
                return Err(format!(
                    "allocation waiting {} but {pending} pending tickets (limit {})",
                    a.waiting, self.settings.pod_queue_limit
                ));
            }
            let started = loads.get(&**token).copied().unwrap_or(0);
            if a.loads != started || started > self.settings.pod_loads {
                return Err(format!(
                    "allocation loads {} but {started} loads in flight (limit {})",
                    a.loads, self.settings.pod_loads
                ));
            }
            let used = in_use.get(&**token).copied().unwrap_or(0);
            if a.in_use != used {
                return Err(format!(
                    "allocation in_use {} but {used} leases/loads",
                    a.in_use
                ));
            }
            match a.kind {
                AllocKind::Slots(n) if used > n => {
                    return Err(format!("{used} in use of {n} slots"));
                }
                AllocKind::Vram { gpu, mib } => carved[gpu.0 as usize] += mib,
                AllocKind::Slots(_) => {}
            }
        }
        for (i, p) in self.pools.iter().enumerate() {
            if p.working_mib != working[i] {
                return Err(format!(
                    "gpu{i} working {} != recomputed {}",
                    p.working_mib, working[i]
                ));
            }
            if p.carved_mib != carved[i] {
                return Err(format!(
                    "gpu{i} carved {} != recomputed {}",
                    p.carved_mib, carved[i]
                ));
            }
            let weights: u64 = p.residents.iter().map(|(_, r)| r.weights_mib).sum();
            if p.weights_mib != weights {
                return Err(format!(
                    "gpu{i} weights {} != recomputed {weights}",
                    p.weights_mib
                ));
            }
            for (m, r) in p.residents.iter() {
                let want = pins[i].get(m).copied().unwrap_or(0);
                if r.pins != want {
                    return Err(format!("gpu{i} {m} pins {} != recomputed {want}", r.pins));
                }
                if r.pins > self.model(*m).max_concurrency {
                    return Err(format!("gpu{i} {m} pinned {} > max_concurrency", r.pins));
                }
            }
            if let Some(m) = pins[i].keys().find(|m| !p.residents.contains(*m)) {
                return Err(format!("gpu{i} {m} is leased or awaited but not resident"));
            }
            if !p.healthy && !p.residents.is_empty() {
                return Err(format!("unhealthy gpu{i} holds residents"));
            }
            if (p.committed_mib() > p.usable_mib()) != p.overcommit_since.is_some() {
                return Err(format!(
                    "gpu{i} committed {} usable {} but overcommit flag {:?}",
                    p.committed_mib(),
                    p.usable_mib(),
                    p.overcommit_since
                ));
            }
        }
        Ok(())
    }
}

impl Engine {
    /// The per-model counters add up to the node's.
    fn audit_counters(&self) -> Result<(), String> {
        let c = &self.counters;
        for o in Outcome::ALL {
            let parts: u64 =
                c.models.iter().map(|m| m.outcome(o)).sum::<u64>() + c.outside_catalog[o as usize];
            if parts != c.outcome(o) {
                return Err(format!(
                    "{} admissions {}, but {parts} counted per model",
                    c.outcome(o),
                    o.as_str()
                ));
            }
        }
        let sum = |f: fn(&ModelCounters) -> u64| c.models.iter().map(f).sum::<u64>();
        for (what, node, per_model) in [
            ("loads started", c.loads_started, sum(|m| m.loads_started)),
            ("loads failed", c.loads_failed, sum(|m| m.loads_failed)),
            ("MiB loaded", c.loaded_mib, sum(|m| m.loaded_mib)),
            ("evictions", c.evictions, sum(|m| m.evictions)),
        ] {
            if node != per_model {
                return Err(format!("{node} {what}, but {per_model} counted per model"));
            }
        }
        Ok(())
    }
}
