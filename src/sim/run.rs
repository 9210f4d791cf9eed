//! The discrete-event loop: the simulator plays the pods' task clients, the
//! model runtime and the GPUs around the real engine, on a virtual clock.
//!
//! Events live in a min-heap ordered by (time, scheduling order), so equal
//! times replay in a fixed order and a seed gives one history. Before each
//! event, any engine deadline that falls earlier is ticked first, exactly as
//! the daemon's shell sleeps until [`Engine::next_deadline`]. After every
//! engine call its effects are drained and carried out: a `Load` becomes a
//! completion `load_ms` later, a `Grant` becomes a running task, and so on.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use crate::config::{Config, ModelSpec};
use crate::engine::{
    Admission, AdmitRequest, Effect, Engine, GpuId, Lease, LeaseId, LoadId, ModelId, Settings,
    TicketId, Time, Wait,
};

use super::report::{Report, RunFacts};
use super::timeline::Sampler;
use super::workload::{self, Arrival, Arrivals, Fault, Faults};
use super::{Error, Options};

/// Something that happens at a moment of simulated time.
#[derive(Debug, Clone, Copy)]
enum Event {
    /// A client asks for a task (the next arrival is scheduled then).
    Arrival(Arrival),
    /// The model runtime finishes a load (successfully: faults are GPU-wide).
    LoadDone(LoadId),
    /// A long task's client extends its lease, every TTL/2.
    KeepAlive(LeaseId),
    /// A task ends and its client releases the lease.
    TaskEnd(LeaseId),
    /// A GPU fails (the next fault is scheduled then).
    Fault(Fault),
    /// A failed GPU comes back.
    Recover(GpuId),
}

/// A heap entry; ordered by (time, seq) only, reversed for a min-heap.
#[derive(Debug)]
struct Scheduled {
    at_ms: u64,
    seq: u64,
    event: Event,
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at_ms, other.seq).cmp(&(self.at_ms, self.seq))
    }
}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ms, self.seq) == (other.at_ms, other.seq)
    }
}

impl Eq for Scheduled {}

/// An admission the engine has not answered yet.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    arrival_ms: u64,
    pod: u32,
    task_ms: u64,
}

/// A task holding a lease.
#[derive(Debug, Clone, Copy)]
struct Running {
    end_ms: u64,
    pod: u32,
    gpu: GpuId,
    /// Its working memory.
    working_mib: u64,
}

/// Per GPU, how long it had work running (a task or a load), within the
/// arrival period: the report's "busy" share of GPU-time.
#[derive(Debug)]
struct Busy {
    /// Tasks and loads running now, per GPU.
    active: Vec<u32>,
    /// When each GPU last went from idle to busy.
    since_ms: Vec<u64>,
    busy_ms: Vec<u64>,
    /// Busy time after this (the drain) is not counted.
    until_ms: u64,
}

impl Busy {
    fn new(gpus: usize, until_ms: u64) -> Busy {
        Busy {
            active: vec![0; gpus],
            since_ms: vec![0; gpus],
            busy_ms: vec![0; gpus],
            until_ms,
        }
    }

    fn start(&mut self, gpu: GpuId, now_ms: u64) {
        let g = gpu.0 as usize;
        if self.active[g] == 0 {
            self.since_ms[g] = now_ms;
        }
        self.active[g] += 1;
    }

    fn stop(&mut self, gpu: GpuId, now_ms: u64) {
        let g = gpu.0 as usize;
        self.active[g] -= 1;
        if self.active[g] == 0 {
            let end = now_ms.min(self.until_ms);
            self.busy_ms[g] += end.saturating_sub(self.since_ms[g].min(end));
        }
    }

    /// Σ busy time over the GPUs, work still running counted to `until_ms`.
    fn total_ms(&self) -> u64 {
        let open: u64 = (0..self.active.len())
            .filter(|&g| self.active[g] > 0)
            .map(|g| {
                self.until_ms
                    .saturating_sub(self.since_ms[g].min(self.until_ms))
            })
            .sum();
        self.busy_ms.iter().sum::<u64>() + open
    }
}

/// What the run observed; the report is built from it.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub requests: u64,
    /// Requests per (expanded) model.
    pub requests_by_model: Vec<u64>,
    /// Warm grants per (expanded) model.
    pub warm_by_model: Vec<u64>,
    pub granted_warm: u64,
    pub granted_cold: u64,
    /// Admissions refused at once (`admit` returned an error).
    pub refused: u64,
    /// Pending admissions that ended in `Effect::Reject`.
    pub rejected: u64,
    /// Admissions still pending when the run drained (cancelled then).
    pub cancelled: u64,
    /// Queue + load wait of every grant, in grant order.
    pub waits_ms: Vec<u64>,
    /// Model of every grant, in grant order: the bound's trace.
    pub trace: Vec<u32>,
    /// Working memory of the tasks running right after each grant (its own
    /// included), in grant order: what the bound's cache cannot hold then.
    pub working_at: Vec<u64>,
    pub loads: u64,
    pub load_ms: u64,
    pub loaded_mib: u64,
    /// Loads started while another GPU already held a copy of the model.
    pub duplicate_loads: u64,
    /// `load_finished` calls the engine ignored (the GPU failed meanwhile).
    pub late_load_results: u64,
    /// Loads that finished with nobody left waiting on them (every waiter's
    /// deadline passed during the load).
    pub unused_loads: u64,
    pub keep_alives: u64,
    pub expired: u64,
    pub revoked: u64,
    pub faults: u64,
    /// Faults drawn while no GPU was healthy.
    pub faults_skipped: u64,
    /// Things that should not happen (unknown tickets, refused releases…), described.
    pub anomalies: Vec<String>,
    /// Σ over GPUs of the time with a task or load running, within the
    /// arrival period.
    pub busy_ms: u64,
    /// Where the memory went, within the arrival period.
    pub memory: MemoryTally,
    pub engine_calls: u64,
    pub engine_time: Duration,
    /// Simulated time when the last event was handled.
    pub end_ms: u64,
}

/// MiB·ms by use, summed over GPUs (see [`super::MemoryUse`]).
#[derive(Debug, Clone, Default)]
pub(super) struct MemoryTally {
    /// Up to when the state has been counted.
    counted_ms: u64,
    usable: f64,
    tasks: f64,
    copies_in_use: f64,
    loading_weights: f64,
    load_waiters: f64,
    idle_copies: f64,
    held_for_head: f64,
}

impl MemoryTally {
    /// Counts the engine's state as it stands from the last count until
    /// `to_ms` (clipped to the arrival period `end_ms`): between events the
    /// state does not change.
    fn count(
        &mut self,
        to_ms: u64,
        end_ms: u64,
        engine: &Engine,
        waiting: &HashMap<TicketId, Waiting>,
    ) {
        let to_ms = to_ms.min(end_ms);
        if to_ms <= self.counted_ms {
            return;
        }
        let dt = (to_ms - self.counted_ms) as f64;
        self.counted_ms = to_ms;
        let status = engine.status();
        let models = engine.models();
        let mut waiters = 0u64;
        for &t in waiting.keys() {
            if let Some(p) = engine.pending(t)
                && p.loading_on.is_some()
            {
                waiters += models[p.model.0 as usize].working_mib;
            }
        }
        for g in &status.gpus {
            self.usable += dt * g.usable_mib as f64;
            for r in &g.residents {
                let slot = match (r.loading, r.pins) {
                    (true, _) => &mut self.loading_weights,
                    (false, 0) => &mut self.idle_copies,
                    (false, _) => &mut self.copies_in_use,
                };
                *slot += dt * r.weights_mib as f64;
            }
            self.tasks += dt * g.working_mib as f64;
        }
        // The pools count load waiters' memory as working memory.
        self.tasks -= dt * waiters as f64;
        self.load_waiters += dt * waiters as f64;
        if let Some(h) = engine.head() {
            let free = status.gpus[h.gpu.0 as usize].free_mib;
            self.held_for_head += dt * h.reserved_mib.min(free) as f64;
        }
    }

    /// Shares of the usable MiB·s; `None` before any time passed.
    pub(super) fn shares(&self) -> Option<super::MemoryUse> {
        let u = self.usable;
        (u > 0.0).then(|| {
            let used = self.tasks
                + self.copies_in_use
                + self.loading_weights
                + self.load_waiters
                + self.idle_copies;
            super::MemoryUse {
                tasks: self.tasks / u,
                copies_in_use: self.copies_in_use / u,
                loading_weights: self.loading_weights / u,
                load_waiters: self.load_waiters / u,
                idle_copies: self.idle_copies / u,
                free: (1.0 - used / u).max(0.0),
                held_for_head: self.held_for_head / u,
            }
        })
    }
}

impl Tally {
    fn anomaly(&mut self, what: String) {
        self.anomalies.push(what);
    }
}

/// The engine with a stopwatch: the simulator's clock and the measurement
/// live out here, never in the engine.
#[derive(Debug)]
struct Timed {
    engine: Engine,
    /// Effects of the last call, drained with it.
    fx: Vec<Effect>,
    calls: u64,
    time: Duration,
}

impl Timed {
    /// One engine decision (counted), with its effects drained.
    fn call<R>(&mut self, f: impl FnOnce(&mut Engine) -> R) -> R {
        let start = Instant::now();
        let r = f(&mut self.engine);
        self.fx.extend(self.engine.drain_effects());
        self.time += start.elapsed();
        self.calls += 1;
        r
    }

    /// A query: timed (it is engine work) but not counted as a decision.
    fn query<R>(&mut self, f: impl FnOnce(&mut Engine) -> R) -> R {
        let start = Instant::now();
        let r = f(&mut self.engine);
        self.time += start.elapsed();
        r
    }
}

/// The world around one engine: the pods' clients, the model runtime and
/// the GPUs, all played on one virtual clock.
struct Sim {
    timed: Timed,
    /// `pod-<n>` allocation tokens.
    tokens: Vec<String>,
    /// Reused for every admission, so a request allocates nothing.
    request: AdmitRequest,
    heap: BinaryHeap<Scheduled>,
    /// Scheduling order, the tie-break between events at the same time.
    seq: u64,
    now_ms: u64,
    /// Lazily drawn: only the next arrival and the next fault are in the heap.
    arrivals: Arrivals,
    faults: Faults,
    /// Pending admissions, so a later grant knows its task and a wait is exact.
    waiting: HashMap<TicketId, Waiting>,
    /// Live leases; a revoked or expired one leaves, and its task end is a no-op.
    running: HashMap<LeaseId, Running>,
    /// The simulator's view of GPU health (faults pick among the healthy).
    healthy: Vec<bool>,
    /// Per model, a mask of the GPUs holding a copy (from Load/Unload effects;
    /// the engine manages at most 128 GPUs).
    copies: Vec<u128>,
    keep_alive_every_ms: u64,
    fault_ms: u64,
    /// Loads in flight and their GPU (for the busy time).
    loads: HashMap<LoadId, GpuId>,
    /// Σ working memory of the running tasks.
    working_mib: u64,
    busy: Busy,
    /// The arrival period, within which memory use is counted.
    duration_ms: u64,
    tally: Tally,
    /// Samples over simulated time (`--plot`), and the progress they report.
    sampler: Sampler,
}

/// Runs the whole simulation and builds the report.
pub(super) fn simulate(
    config: &Config,
    options: &Options,
    progress: &mut dyn FnMut(f64),
) -> Result<Report, Error> {
    let wall = Instant::now();
    let gpus = workload::gpus(config);
    if gpus.is_empty() {
        return Err(Error::NoSimulatedGpus);
    }
    if config.models.is_empty() {
        return Err(Error::NoModels);
    }
    let models: Vec<ModelSpec> = workload::expand_catalog(&config.models, options.variants);
    let mut settings = Settings::from_config(config);
    if let Some(p) = options.policy {
        settings.policy = p;
    }
    let timeout = options.timeout.unwrap_or(settings.default_timeout);
    let facts = RunFacts {
        options: options.clone(),
        policy: settings.policy,
        timeout,
        lease_ttl: settings.lease_ttl,
        base_models: config.models.len(),
        gpus: gpus.iter().map(|g| (g.name.clone(), g.total_mib)).collect(),
        reserve_mib: settings.reserve_mib,
    };
    let keep_alive_every_ms = (settings.lease_ttl.as_millis() as u64 / 2).max(1);
    let gpu_count = gpus.len();
    let engine = Engine::new(gpus, models.clone(), settings)?;
    let sampler = Sampler::new(options.duration.as_millis() as u64, &engine);
    let (mut catalog_rng, arrival_rng, fault_rng) = workload::streams(options.seed);
    let mut sim = Sim {
        timed: Timed {
            engine,
            fx: Vec::new(),
            calls: 0,
            time: Duration::ZERO,
        },
        tokens: (0..options.pods).map(|p| format!("pod-{p}")).collect(),
        request: AdmitRequest {
            token: String::new(),
            model: String::new(),
            task_type: None,
            priority: 0,
            wait: Wait::For(timeout),
        },
        heap: BinaryHeap::new(),
        seq: 0,
        now_ms: 0,
        arrivals: Arrivals::new(&models, options, &mut catalog_rng, arrival_rng),
        faults: Faults::new(options, fault_rng),
        waiting: HashMap::new(),
        running: HashMap::new(),
        healthy: vec![true; gpu_count],
        copies: vec![0; models.len()],
        keep_alive_every_ms,
        fault_ms: options.fault_duration.as_millis() as u64,
        loads: HashMap::new(),
        working_mib: 0,
        busy: Busy::new(gpu_count, options.duration.as_millis() as u64),
        duration_ms: options.duration.as_millis() as u64,
        tally: Tally {
            requests_by_model: vec![0; models.len()],
            warm_by_model: vec![0; models.len()],
            ..Tally::default()
        },
        sampler,
    };
    for p in 0..sim.tokens.len() {
        let token = &sim.tokens[p];
        sim.timed
            .call(|e| e.allocate_slots(token, options.slots, Time::ZERO))?;
    }
    sim.apply_effects();
    sim.run(progress);
    let counters = sim.timed.engine.counters().clone();
    let mut tally = sim.tally;
    tally.busy_ms = sim.busy.total_ms();
    tally.engine_calls = sim.timed.calls;
    tally.engine_time = sim.timed.time;
    let mut report = Report::build(facts, &models, tally, counters, wall);
    report.timeline = sim.sampler.timeline;
    Ok(report)
}

impl Sim {
    fn schedule(&mut self, at_ms: u64, event: Event) {
        self.heap.push(Scheduled {
            at_ms,
            seq: self.seq,
            event,
        });
        self.seq += 1;
    }

    fn now(&self) -> Time {
        Time::from_millis(self.now_ms)
    }

    /// Counts where the memory was from now until `to_ms`.
    fn count_memory(&mut self, to_ms: u64) {
        let end_ms = self.duration_ms;
        self.tally
            .memory
            .count(to_ms, end_ms, &self.timed.engine, &self.waiting);
    }

    fn run(&mut self, progress: &mut dyn FnMut(f64)) {
        if let Some(a) = self.arrivals.next() {
            self.schedule(a.at_ms, Event::Arrival(a));
        }
        if let Some(f) = self.faults.next() {
            self.schedule(f.at_ms, Event::Fault(f));
        }
        loop {
            let next = self.heap.peek().map(|s| s.at_ms);
            let deadline = self.timed.query(|e| e.next_deadline());
            if let Some(d) = deadline.map(Time::as_millis)
                && next.is_none_or(|n| d < n)
            {
                self.sampler
                    .before(self.now_ms.max(d), &self.timed.engine, progress);
                self.count_memory(d);
                self.now_ms = self.now_ms.max(d);
                let now = self.now();
                self.timed.call(|e| e.tick(now));
                self.apply_effects();
                continue;
            }
            let Some(s) = self.heap.pop() else { break };
            self.sampler.before(s.at_ms, &self.timed.engine, progress);
            self.count_memory(s.at_ms);
            self.now_ms = s.at_ms;
            self.handle(s.event);
        }
        self.tally.end_ms = self.now_ms;
        // Arrivals stopped and everything drained, so nothing should wait;
        // cancel anything that does, so every request still gets an answer.
        let mut left: Vec<TicketId> = self.waiting.keys().copied().collect();
        left.sort_unstable();
        let now = self.now();
        for ticket in left {
            self.waiting.remove(&ticket);
            if self.timed.call(|e| e.cancel(ticket, now)) {
                self.tally.cancelled += 1;
            }
            self.apply_effects();
        }
        if !self.running.is_empty() {
            let n = self.running.len();
            self.tally
                .anomaly(format!("{n} tasks still hold leases after the run drained"));
        }
    }

    fn handle(&mut self, event: Event) {
        let now = self.now();
        match event {
            Event::Arrival(a) => {
                if let Some(next) = self.arrivals.next() {
                    self.schedule(next.at_ms, Event::Arrival(next));
                }
                self.arrive(a);
            }
            Event::LoadDone(load) => {
                if let Some(gpu) = self.loads.remove(&load) {
                    self.busy.stop(gpu, self.now_ms);
                }
                if !self.timed.call(|e| e.load_finished(load, Ok(()), now)) {
                    self.tally.late_load_results += 1;
                } else if !self.timed.fx.iter().any(
                    // Only a finished load's waiters get cold grants in this call.
                    |f| matches!(f, Effect::Grant { lease, .. } if !lease.warm),
                ) {
                    self.tally.unused_loads += 1;
                }
                self.apply_effects();
            }
            Event::KeepAlive(id) => self.keep_alive(id),
            Event::TaskEnd(id) => {
                // A revoked or expired lease has no task left to end.
                let Some(r) = self.running.remove(&id) else {
                    return;
                };
                self.task_ended(r);
                let token = &self.tokens[r.pod as usize];
                if let Err(e) = self.timed.call(|e| e.release(id, Some(token), now)) {
                    self.tally.anomaly(format!("release at {now}: {e}"));
                }
                self.apply_effects();
            }
            Event::Fault(f) => {
                if let Some(next) = self.faults.next() {
                    self.schedule(next.at_ms, Event::Fault(next));
                }
                self.fault(f);
            }
            Event::Recover(gpu) => {
                self.healthy[gpu.0 as usize] = true;
                self.timed.call(|e| e.set_health(gpu, true, now));
                self.apply_effects();
            }
        }
    }

    fn arrive(&mut self, a: Arrival) {
        self.tally.requests += 1;
        self.tally.requests_by_model[a.model as usize] += 1;
        let now = self.now();
        self.request.token.clear();
        self.request.token.push_str(&self.tokens[a.pod as usize]);
        self.request.model.clear();
        let name = &self.timed.engine.model(ModelId(a.model)).name;
        self.request.model.push_str(name);
        let result = self.timed.call(|e| e.admit(&self.request, now));
        match result {
            Ok(Admission::Pending(ticket)) => {
                let w = Waiting {
                    arrival_ms: a.at_ms,
                    pod: a.pod,
                    task_ms: a.task_ms,
                };
                self.waiting.insert(ticket, w);
                self.apply_effects();
            }
            Ok(Admission::Granted(lease)) => {
                // The call's other effects came first (in the engine's order).
                self.apply_effects();
                self.start_task(lease, a.at_ms, a.pod, a.task_ms);
            }
            Err(_) => {
                self.tally.refused += 1;
                self.apply_effects();
            }
        }
    }

    fn keep_alive(&mut self, id: LeaseId) {
        let Some(&Running { end_ms, pod, .. }) = self.running.get(&id) else {
            return;
        };
        let now = self.now();
        let token = &self.tokens[pod as usize];
        match self.timed.call(|e| e.keep_alive(id, Some(token), now)) {
            Ok(_) => {
                self.tally.keep_alives += 1;
                let next = self.now_ms + self.keep_alive_every_ms;
                if next < end_ms {
                    self.schedule(next, Event::KeepAlive(id));
                }
            }
            Err(e) => self.tally.anomaly(format!("keep-alive at {now}: {e}")),
        }
        self.apply_effects();
    }

    fn fault(&mut self, f: Fault) {
        let healthy: Vec<usize> = (0..self.healthy.len())
            .filter(|&g| self.healthy[g])
            .collect();
        if healthy.is_empty() {
            self.tally.faults_skipped += 1;
            return;
        }
        let gpu = GpuId(healthy[(f.pick % healthy.len() as u64) as usize] as u32);
        self.healthy[gpu.0 as usize] = false;
        self.tally.faults += 1;
        let now = self.now();
        self.timed.call(|e| e.set_health(gpu, false, now));
        self.apply_effects();
        self.schedule(self.now_ms + self.fault_ms, Event::Recover(gpu));
    }

    /// A lease was granted: the task runs, keeping its lease alive if long.
    fn start_task(&mut self, lease: Lease, arrival_ms: u64, pod: u32, task_ms: u64) {
        if lease.requested_at.as_millis() != arrival_ms {
            self.tally.anomaly(format!(
                "{} requested at {} but the client asked at t={arrival_ms}ms",
                lease.id, lease.requested_at
            ));
        }
        self.tally.waits_ms.push(lease.waited().as_millis() as u64);
        self.tally.trace.push(lease.model.0);
        let working_mib = self.timed.engine.model(lease.model).working_mib;
        self.working_mib += working_mib;
        self.tally.working_at.push(self.working_mib);
        if lease.warm {
            self.tally.warm_by_model[lease.model.0 as usize] += 1;
            self.tally.granted_warm += 1;
        } else {
            self.tally.granted_cold += 1;
        }
        let end_ms = self.now_ms + task_ms;
        self.busy.start(lease.gpu, self.now_ms);
        self.running.insert(
            lease.id,
            Running {
                end_ms,
                pod,
                gpu: lease.gpu,
                working_mib,
            },
        );
        self.schedule(end_ms, Event::TaskEnd(lease.id));
        let first = self.now_ms + self.keep_alive_every_ms;
        if first < end_ms {
            self.schedule(first, Event::KeepAlive(lease.id));
        }
    }

    /// A task's lease ended (released, expired or revoked).
    fn task_ended(&mut self, r: Running) {
        self.busy.stop(r.gpu, self.now_ms);
        self.working_mib -= r.working_mib;
    }

    /// Carries out the effects of the last engine call, in order.
    fn apply_effects(&mut self) {
        let mut fx = std::mem::take(&mut self.timed.fx);
        for effect in fx.drain(..) {
            self.effect(effect);
        }
        self.timed.fx = fx;
    }

    fn effect(&mut self, effect: Effect) {
        match effect {
            Effect::Load { load, gpu, model } => {
                let copies = &mut self.copies[model.0 as usize];
                if *copies & !(1u128 << gpu.0) != 0 {
                    self.tally.duplicate_loads += 1;
                }
                *copies |= 1u128 << gpu.0;
                let spec = self.timed.engine.model(model);
                let (load_ms, mib) = (spec.load_ms, spec.weights_mib);
                self.tally.loads += 1;
                self.tally.load_ms += load_ms;
                self.tally.loaded_mib += mib;
                self.loads.insert(load, gpu);
                self.busy.start(gpu, self.now_ms);
                self.schedule(self.now_ms + load_ms, Event::LoadDone(load));
            }
            Effect::Grant { ticket, lease } => match self.waiting.remove(&ticket) {
                Some(w) => self.start_task(lease, w.arrival_ms, w.pod, w.task_ms),
                None => self
                    .tally
                    .anomaly(format!("grant for unknown {ticket} at {}", self.now())),
            },
            Effect::Reject { ticket, .. } => {
                if self.waiting.remove(&ticket).is_none() {
                    let now = self.now();
                    self.tally
                        .anomaly(format!("rejection of unknown {ticket} at {now}"));
                }
                self.tally.rejected += 1;
            }
            Effect::Expire { lease } => {
                if let Some(r) = self.running.remove(&lease.id) {
                    self.task_ended(r);
                }
                self.tally.expired += 1;
            }
            Effect::Revoke { lease, .. } => {
                if let Some(r) = self.running.remove(&lease.id) {
                    self.task_ended(r);
                }
                self.tally.revoked += 1;
            }
            // Unloads are instantaneous here; the engine counts evictions.
            Effect::Unload { gpu, model, .. } => {
                self.copies[model.0 as usize] &= !(1u128 << gpu.0);
            }
            _ => {}
        }
    }
}
