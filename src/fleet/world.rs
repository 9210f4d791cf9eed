//! The discrete-event loop: pods, kube-scheduler, the nodes' engines, their
//! model runtimes and their annotation publishers, on one virtual clock.
//!
//! Events live in a min-heap ordered by (time, scheduling order), so equal
//! times replay in a fixed order and a seed gives one history. After every
//! engine call its effects are drained and carried out (a `Load` finishes
//! `load_ms` later, a `Grant` starts a task, a `Reject` moves the pod on),
//! the node's next engine deadline is scheduled, and its publisher hears of
//! the change, as the daemon's shell would.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use crate::cluster::residency::{self, node_annotations};
use crate::config::{Config, ModelSpec};
use crate::engine::{
    Admission, AdmitRequest, Effect, Engine, GpuId, GpuSpec, Lease, LeaseId, LoadId, ModelId,
    Settings, TicketId, Time, Wait,
};
use crate::extender::score::{self, Catalog, PodModels, Tier};
use crate::extender::view::{Keys, NodeView};
use crate::extender::{DEFAULT_MAX_AGE, unix_seconds};
use crate::sim::rng::{Rng, SplitMix64, Zipf};
use crate::sim::workload::expand_catalog;

use super::place::{self, Fleet};
use super::publish::{Next, Publisher};
use super::report::{Percentiles, Report, Summary};
use super::{Error, Options, Routing};

/// The simulated wall clock's origin: 2026-01-01T00:00:00Z. Annotation
/// stamps and the extender's "now" are this plus the simulated time.
const EPOCH_S: u64 = 1_767_225_600;

#[derive(Debug, Clone, Copy)]
enum Event {
    /// The next pod arrives (the one after it is drawn then).
    Arrival,
    LoadDone {
        node: u32,
        load: LoadId,
        gpu: GpuId,
    },
    TaskEnd {
        node: u32,
        lease: LeaseId,
    },
    KeepAlive {
        node: u32,
        lease: LeaseId,
    },
    /// An engine deadline (lease expiry, admission timeout) may be due.
    Tick {
        node: u32,
    },
    /// A node's annotation window opens.
    Publish {
        node: u32,
    },
    /// A node's heartbeat may be due.
    Refresh {
        node: u32,
    },
}

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

/// One node: its engine and what the daemon around it would track.
struct Node {
    engine: Engine,
    publisher: Publisher,
    /// The extender's view of the annotations last written.
    view: NodeView,
    pods: u32,
    /// The earliest Tick scheduled and not yet fired.
    tick_at: Option<u64>,
    /// Pending admissions → pod.
    tickets: HashMap<TicketId, u32>,
    /// Live leases → (pod, GPU).
    leases: HashMap<LeaseId, (u32, GpuId)>,
    /// Per GPU: leases and loads in flight (for the busy share).
    gpu_leases: Vec<u32>,
    gpu_loads: Vec<u32>,
}

struct Pod {
    model: ModelId,
    tasks_left: u32,
    /// Draws this pod's task times: its own stream, so the times do not
    /// depend on where or when the pod runs.
    rng: Rng,
    token: String,
    node: u32,
    created_ms: u64,
    started_ms: u64,
    granted_once: bool,
    done: bool,
    /// Created after the warm-up, while pods still arrive: counted in the
    /// measured window.
    measured: bool,
}

/// What a stretch of the run observed.
#[derive(Debug, Default)]
struct Tally {
    pods: u64,
    pods_without_grant: u64,
    pods_on_warm_nodes: u64,
    schedule_waits: Vec<u64>,
    first_task_waits: Vec<u64>,
    first_tasks_warm: u64,
    cold_loads: u64,
    loaded_mib: u64,
    grants: u64,
    grants_warm: u64,
    rejections: u64,
    tasks: u64,
    annotation_writes: u64,
    busy_gpu_ms: u128,
    slot_ms: u128,
    span_ms: u64,
}

struct World<'a> {
    options: &'a Options,
    models: Vec<ModelSpec>,
    catalog: Catalog,
    /// Per model, the pod annotation's parse (one model each).
    pod_models: Vec<PodModels>,
    keys: Keys,
    domain: String,
    reserve_mib: u64,
    capacity: u32,
    timeout: Duration,
    keep_alive_ms: u64,
    max_age_s: i64,
    nodes: Vec<Node>,
    /// Kept in step with `nodes` for the placement (no per-pod allocation).
    pods_per_node: Vec<u32>,
    views: Vec<NodeView>,
    pods: Vec<Pod>,
    pending: VecDeque<u32>,
    heap: BinaryHeap<Scheduled>,
    seq: u64,
    now_ms: u64,
    end_arrivals_ms: u64,
    arrivals: Rng,
    zipf: Zipf,
    by_rank: Vec<u32>,
    ties: Rng,
    mean_gap_ms: f64,
    next_arrival_ms: f64,
    active_pods: u64,
    // Measurements: the whole run, and the window after the warm-up while
    // pods arrive.
    busy_gpus: u64,
    last_ms: u64,
    warmup_ms: u64,
    all: Tally,
    window: Tally,
    last_departure_ms: u64,
    anomalies: Vec<String>,
}

pub(super) fn simulate(config: &Config, options: &Options) -> Result<Report, Error> {
    let mut world = build(config, options)?;
    world.start();
    world.run();
    Ok(world.report(config))
}

fn build<'a>(config: &Config, options: &'a Options) -> Result<World<'a>, Error> {
    let gpu = config
        .gpus
        .simulated
        .first()
        .ok_or(Error::NoSimulatedGpus)?;
    if config.models.is_empty() {
        return Err(Error::NoModels);
    }
    let models = expand_catalog(&config.models, options.variants);
    let mut settings = Settings::from_config(config);
    if let Some(p) = options.policy {
        settings.policy = p;
    }
    let catalog = Catalog::new(&models);
    let pod_models = models
        .iter()
        .map(|m| PodModels::parse(Some(&m.name), &catalog))
        .collect();
    let interval_ms = config.cluster.annotation_interval.as_millis() as u64;
    let refresh_ms = residency::REFRESH.as_millis() as u64;
    let mut nodes = Vec::with_capacity(options.nodes as usize);
    for n in 0..options.nodes {
        let gpus = (0..options.gpus_per_node)
            .map(|g| GpuSpec {
                uuid: format!("GPU-{n:05}-{g:02}"),
                name: gpu.name.clone(),
                total_mib: gpu.memory_mib,
            })
            .collect();
        nodes.push(Node {
            engine: Engine::new(gpus, models.clone(), settings.clone())?,
            publisher: Publisher::new(interval_ms, refresh_ms),
            view: NodeView::unknown(),
            pods: 0,
            tick_at: None,
            tickets: HashMap::new(),
            leases: HashMap::new(),
            gpu_leases: vec![0; options.gpus_per_node as usize],
            gpu_loads: vec![0; options.gpus_per_node as usize],
        });
    }
    let mut seeder = SplitMix64::new(options.seed);
    let mut catalog_rng = Rng::from_seeder(&mut seeder);
    let arrivals = Rng::from_seeder(&mut seeder);
    let ties = Rng::from_seeder(&mut seeder);
    let by_rank = catalog_rng
        .permutation(models.len())
        .into_iter()
        .map(|m| m as u32)
        .collect();
    Ok(World {
        options,
        zipf: Zipf::new(models.len(), options.zipf),
        models,
        catalog,
        pod_models,
        keys: Keys::new(&config.domain),
        domain: config.domain.clone(),
        reserve_mib: config.gpus.reserve_mib,
        capacity: config.devices.slots_per_gpu * options.gpus_per_node,
        timeout: options.timeout.unwrap_or(settings.default_timeout),
        keep_alive_ms: (settings.lease_ttl.as_millis() as u64 / 2).max(1),
        max_age_s: DEFAULT_MAX_AGE.as_secs() as i64,
        pods_per_node: vec![0; nodes.len()],
        views: vec![NodeView::unknown(); nodes.len()],
        nodes,
        pods: Vec::new(),
        pending: VecDeque::new(),
        heap: BinaryHeap::new(),
        seq: 0,
        now_ms: 0,
        end_arrivals_ms: options.duration.as_millis() as u64,
        arrivals,
        by_rank,
        ties,
        mean_gap_ms: 1000.0 / options.rate_per_s,
        next_arrival_ms: 0.0,
        active_pods: 0,
        busy_gpus: 0,
        last_ms: 0,
        warmup_ms: options.warmup.as_millis() as u64,
        all: Tally::default(),
        window: Tally::default(),
        last_departure_ms: 0,
        anomalies: Vec::new(),
    })
}

/// The fleet at one moment, for tests: each node's written annotations,
/// the extender scores the placement would use for each model, and the
/// simulated wall clock.
#[cfg(test)]
pub(super) struct Snapshot {
    pub models: Vec<ModelSpec>,
    pub annotations: Vec<residency::Annotations>,
    pub scores: Vec<Vec<i64>>,
    pub wall: SystemTime,
}

/// Runs until `at` (simulated) and takes a [`Snapshot`].
#[cfg(test)]
pub(super) fn snapshot(config: &Config, options: &Options, at: Duration) -> Snapshot {
    let mut world = build(config, options).expect("a valid fleet");
    world.start();
    while let Some(s) = world.heap.peek() {
        if s.at_ms > at.as_millis() as u64 {
            break;
        }
        let s = world.heap.pop().expect("peeked");
        world.advance_clock(s.at_ms);
        world.handle(s.event);
    }
    let now_s = unix_seconds(world.wall());
    let fleet = Fleet {
        pods: &world.pods_per_node,
        capacity: world.capacity,
        views: &world.views,
        catalog: &world.catalog,
        reserve_mib: world.reserve_mib,
        now_s,
        max_age_s: world.max_age_s,
        weight: world.options.extender_weight,
    };
    let scores = world
        .pod_models
        .iter()
        .map(|pod| place::extender_scores(&fleet, pod))
        .collect();
    Snapshot {
        annotations: world
            .nodes
            .iter()
            .map(|n| n.publisher.written().cloned().unwrap_or_default())
            .collect(),
        scores,
        wall: world.wall(),
        models: world.models,
    }
}

impl World<'_> {
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

    fn wall(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH_S) + Duration::from_millis(self.now_ms)
    }

    /// Every node publishes; the first pod is drawn.
    fn start(&mut self) {
        for n in 0..self.nodes.len() as u32 {
            self.maybe_publish(n);
        }
        self.next_arrival_ms = self.arrivals.exponential(self.mean_gap_ms);
        if (self.next_arrival_ms as u64) < self.end_arrivals_ms {
            self.schedule(self.next_arrival_ms as u64, Event::Arrival);
        }
    }

    fn run(&mut self) {
        while let Some(s) = self.heap.pop() {
            let drained = self.active_pods == 0
                && self.pending.is_empty()
                && self.next_arrival_ms as u64 >= self.end_arrivals_ms;
            if drained {
                // The last pod has left: what is still scheduled (loads it
                // no longer waits for, publishers' timers) changes nothing.
                break;
            }
            self.advance_clock(s.at_ms);
            self.handle(s.event);
        }
        for (n, node) in self.nodes.iter().enumerate() {
            if !node.leases.is_empty() || !node.tickets.is_empty() {
                self.anomalies.push(format!(
                    "node {n}: {} leases and {} admissions left after the run drained",
                    node.leases.len(),
                    node.tickets.len()
                ));
            }
        }
    }

    /// Moves the clock to `at_ms`, integrating the busy GPUs and used slots
    /// (for the window, only the part of the step inside it).
    fn advance_clock(&mut self, at_ms: u64) {
        let from = self.last_ms;
        let inside = at_ms
            .min(self.end_arrivals_ms)
            .saturating_sub(from.max(self.warmup_ms));
        for (t, dt) in [(&mut self.all, at_ms - from), (&mut self.window, inside)] {
            t.busy_gpu_ms += u128::from(self.busy_gpus) * u128::from(dt);
            t.slot_ms += u128::from(self.active_pods) * u128::from(dt);
            t.span_ms += dt;
        }
        self.last_ms = at_ms;
        self.now_ms = at_ms;
    }

    /// Whether an event now falls in the measured window.
    fn in_window(&self) -> bool {
        (self.warmup_ms..self.end_arrivals_ms).contains(&self.now_ms)
    }

    /// Applies `f` to the whole run's tally and, when `measured`, the window's.
    fn count(&mut self, measured: bool, f: impl Fn(&mut Tally)) {
        f(&mut self.all);
        if measured {
            f(&mut self.window);
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Arrival => self.arrive(),
            Event::LoadDone { node, load, gpu } => {
                self.gpu_change(node, gpu, |n, g| n.gpu_loads[g] -= 1);
                let now = self.now();
                self.nodes[node as usize]
                    .engine
                    .load_finished(load, Ok(()), now);
                self.after_engine_call(node);
            }
            Event::TaskEnd { node, lease } => self.task_end(node, lease),
            Event::KeepAlive { node, lease } => {
                let now = self.now();
                let n = &mut self.nodes[node as usize];
                let Some(&(pod, _)) = n.leases.get(&lease) else {
                    return;
                };
                let token = &self.pods[pod as usize].token;
                if let Err(e) = n.engine.keep_alive(lease, Some(token), now) {
                    self.anomalies.push(format!("keep-alive at {now}: {e}"));
                }
                self.schedule(
                    self.now_ms + self.keep_alive_ms,
                    Event::KeepAlive { node, lease },
                );
                self.after_engine_call(node);
            }
            Event::Tick { node } => {
                let now = self.now();
                let n = &mut self.nodes[node as usize];
                n.tick_at = None;
                if n.engine.next_deadline().is_some_and(|d| d <= now) {
                    n.engine.tick(now);
                    self.after_engine_call(node);
                } else {
                    self.schedule_tick(node);
                }
            }
            Event::Publish { node } => {
                self.nodes[node as usize].publisher.check_scheduled = false;
                self.maybe_publish(node);
            }
            Event::Refresh { node } => self.maybe_publish(node),
        }
    }

    /// Draws the next pod (always the same four draws, so the stream stays
    /// aligned whatever the routing does) and tries to place the queue.
    fn arrive(&mut self) {
        let model = self.by_rank[self.zipf.sample(&mut self.arrivals)];
        let tasks = (self
            .arrivals
            .exponential(self.options.tasks_per_pod)
            .round() as u32)
            .max(1);
        let pod_seed = self.arrivals.next_u64();
        self.next_arrival_ms += self.arrivals.exponential(self.mean_gap_ms);
        if (self.next_arrival_ms as u64) < self.end_arrivals_ms {
            self.schedule(self.next_arrival_ms as u64, Event::Arrival);
        }
        let id = self.pods.len() as u32;
        self.pods.push(Pod {
            model: ModelId(model),
            tasks_left: tasks,
            rng: Rng::from_seeder(&mut SplitMix64::new(pod_seed)),
            token: format!("pod-{id}"),
            node: u32::MAX,
            created_ms: self.now_ms,
            started_ms: 0,
            granted_once: false,
            done: false,
            measured: self.in_window(),
        });
        self.count(self.in_window(), |t| t.pods += 1);
        self.pending.push_back(id);
        self.place_pending();
    }

    /// Places waiting pods in arrival order while a node can take them.
    fn place_pending(&mut self) {
        while let Some(&pod) = self.pending.front() {
            let models = &self.pod_models[self.pods[pod as usize].model.0 as usize];
            let fleet = Fleet {
                pods: &self.pods_per_node,
                capacity: self.capacity,
                views: &self.views,
                catalog: &self.catalog,
                reserve_mib: self.reserve_mib,
                now_s: unix_seconds(self.wall()),
                max_age_s: self.max_age_s,
                weight: self.options.extender_weight,
            };
            let Some(node) = place::choose(&fleet, models, self.options.routing, &mut self.ties)
            else {
                return;
            };
            let warm = models.known.first().is_some_and(|&m| {
                fleet.views[node as usize]
                    .fresh(fleet.now_s, fleet.max_age_s)
                    .is_some_and(|r| score::tier(m, &self.catalog, &r.gpus) >= Tier::Ready)
            });
            self.pending.pop_front();
            let measured = self.pods[pod as usize].measured;
            self.count(measured, |t| t.pods_on_warm_nodes += u64::from(warm));
            self.start_pod(pod, node);
        }
    }

    fn start_pod(&mut self, pod: u32, node: u32) {
        let now = self.now();
        let p = &mut self.pods[pod as usize];
        p.node = node;
        p.started_ms = self.now_ms;
        let (wait, measured) = (self.now_ms - p.created_ms, p.measured);
        self.count(measured, |t| t.schedule_waits.push(wait));
        let p = &mut self.pods[pod as usize];
        self.active_pods += 1;
        self.pods_per_node[node as usize] += 1;
        let n = &mut self.nodes[node as usize];
        n.pods += 1;
        if let Err(e) = n.engine.allocate_slots(&p.token, 1, now) {
            self.anomalies
                .push(format!("allocate {} at {now}: {e}", p.token));
        }
        self.after_engine_call(node);
        self.next_task(pod);
    }

    /// The pod's next task, or its departure when none are left. Refused
    /// admissions move on to the next task.
    fn next_task(&mut self, pod: u32) {
        loop {
            let now = self.now();
            let p = &mut self.pods[pod as usize];
            let node = p.node;
            if p.tasks_left == 0 {
                p.done = true;
                let (none, measured) = (!p.granted_once, p.measured);
                self.count(measured, |t| t.pods_without_grant += u64::from(none));
                let p = &mut self.pods[pod as usize];
                let n = &mut self.nodes[node as usize];
                if let Err(e) = n.engine.deallocate(&p.token, now) {
                    self.anomalies
                        .push(format!("deallocate {} at {now}: {e}", p.token));
                }
                n.pods -= 1;
                self.pods_per_node[node as usize] -= 1;
                self.active_pods -= 1;
                self.last_departure_ms = self.now_ms;
                self.after_engine_call(node);
                self.place_pending();
                return;
            }
            p.tasks_left -= 1;
            let measured = self.in_window();
            self.count(measured, |t| t.tasks += 1);
            let p = &mut self.pods[pod as usize];
            let req = AdmitRequest {
                token: p.token.clone(),
                model: self.models[p.model.0 as usize].name.clone(),
                task_type: None,
                priority: 0,
                wait: Wait::For(self.timeout),
            };
            let n = &mut self.nodes[node as usize];
            let result = n.engine.admit(&req, now);
            match result {
                Ok(Admission::Granted(lease)) => {
                    self.after_engine_call(node);
                    self.start_task(node, pod, lease);
                    return;
                }
                Ok(Admission::Pending(ticket)) => {
                    n.tickets.insert(ticket, pod);
                    self.after_engine_call(node);
                    return;
                }
                Err(_) => {
                    let measured = self.in_window();
                    self.count(measured, |t| t.rejections += 1);
                    self.after_engine_call(node);
                }
            }
        }
    }

    fn start_task(&mut self, node: u32, pod: u32, lease: Lease) {
        let warm = u64::from(lease.warm);
        self.count(self.in_window(), |t| {
            t.grants += 1;
            t.grants_warm += warm;
        });
        let p = &mut self.pods[pod as usize];
        if !p.granted_once {
            p.granted_once = true;
            let (wait, measured) = (self.now_ms - p.started_ms, p.measured);
            self.count(measured, |t| {
                t.first_task_waits.push(wait);
                t.first_tasks_warm += warm;
            });
        }
        let p = &mut self.pods[pod as usize];
        let mean = self.models[p.model.0 as usize].task_ms as f64;
        let task_ms = (p.rng.exponential(mean).round() as u64).max(1);
        self.nodes[node as usize]
            .leases
            .insert(lease.id, (pod, lease.gpu));
        self.gpu_change(node, lease.gpu, |n, g| n.gpu_leases[g] += 1);
        self.schedule(
            self.now_ms + task_ms,
            Event::TaskEnd {
                node,
                lease: lease.id,
            },
        );
        if self.keep_alive_ms < task_ms {
            self.schedule(
                self.now_ms + self.keep_alive_ms,
                Event::KeepAlive {
                    node,
                    lease: lease.id,
                },
            );
        }
    }

    fn task_end(&mut self, node: u32, lease: LeaseId) {
        let Some((pod, gpu)) = self.nodes[node as usize].leases.remove(&lease) else {
            return;
        };
        self.gpu_change(node, gpu, |n, g| n.gpu_leases[g] -= 1);
        let now = self.now();
        let token = &self.pods[pod as usize].token;
        if let Err(e) = self.nodes[node as usize]
            .engine
            .release(lease, Some(token), now)
        {
            self.anomalies.push(format!("release at {now}: {e}"));
        }
        self.after_engine_call(node);
        self.next_task(pod);
    }

    /// Applies `f` to a GPU's counters and keeps the fleet's busy count.
    fn gpu_change(&mut self, node: u32, gpu: GpuId, f: impl FnOnce(&mut Node, usize)) {
        let n = &mut self.nodes[node as usize];
        let g = gpu.0 as usize;
        let was = n.gpu_leases[g] > 0 || n.gpu_loads[g] > 0;
        f(n, g);
        let is = n.gpu_leases[g] > 0 || n.gpu_loads[g] > 0;
        match (was, is) {
            (false, true) => self.busy_gpus += 1,
            (true, false) => self.busy_gpus -= 1,
            _ => {}
        }
    }

    /// After any engine call on `node`: carry out its effects, schedule its
    /// next deadline, tell its publisher.
    fn after_engine_call(&mut self, node: u32) {
        let effects: Vec<Effect> = self.nodes[node as usize].engine.drain_effects().collect();
        for effect in effects {
            self.effect(node, effect);
        }
        self.schedule_tick(node);
        self.nodes[node as usize].publisher.event();
        self.maybe_publish(node);
    }

    fn effect(&mut self, node: u32, effect: Effect) {
        match effect {
            Effect::Load { load, gpu, model } => {
                let spec = &self.models[model.0 as usize];
                let (load_ms, mib) = (spec.load_ms, spec.weights_mib);
                self.count(self.in_window(), |t| {
                    t.cold_loads += 1;
                    t.loaded_mib += mib;
                });
                self.gpu_change(node, gpu, |n, g| n.gpu_loads[g] += 1);
                self.schedule(self.now_ms + load_ms, Event::LoadDone { node, load, gpu });
            }
            Effect::Grant { ticket, lease } => {
                match self.nodes[node as usize].tickets.remove(&ticket) {
                    Some(pod) => self.start_task(node, pod, lease),
                    None => self
                        .anomalies
                        .push(format!("grant for unknown {ticket} on node {node}")),
                }
            }
            Effect::Reject { ticket, .. } => {
                self.count(self.in_window(), |t| t.rejections += 1);
                match self.nodes[node as usize].tickets.remove(&ticket) {
                    Some(pod) => self.next_task(pod),
                    None => self
                        .anomalies
                        .push(format!("rejection of unknown {ticket} on node {node}")),
                }
            }
            Effect::Expire { lease } | Effect::Revoke { lease, .. } => {
                if let Some((_, gpu)) = self.nodes[node as usize].leases.remove(&lease.id) {
                    self.gpu_change(node, gpu, |n, g| n.gpu_leases[g] -= 1);
                }
                self.anomalies.push(format!(
                    "{} on node {node} ended without a release",
                    lease.id
                ));
            }
            Effect::Unload { .. } | Effect::Overcommitted { .. } | Effect::Drained { .. } => {}
        }
    }

    fn schedule_tick(&mut self, node: u32) {
        let n = &mut self.nodes[node as usize];
        let Some(d) = n.engine.next_deadline().map(Time::as_millis) else {
            return;
        };
        if n.tick_at.is_none_or(|t| d < t) {
            n.tick_at = Some(d);
            let at = d.max(self.now_ms);
            self.schedule(at, Event::Tick { node });
        }
    }

    /// The node's publisher, by the daemon's rules: read and write now,
    /// check when the window opens, or nothing.
    fn maybe_publish(&mut self, node: u32) {
        let wall = self.wall();
        let now_ms = self.now_ms;
        let n = &mut self.nodes[node as usize];
        match n.publisher.next(now_ms) {
            Next::Idle => {}
            Next::CheckAt(at) => {
                if !n.publisher.check_scheduled {
                    n.publisher.check_scheduled = true;
                    self.schedule(at, Event::Publish { node });
                }
            }
            Next::ReadNow => {
                let read = node_annotations(&n.engine.status(), &self.domain, wall);
                if n.publisher.offer(read, now_ms, &self.domain) {
                    let measured = (self.warmup_ms..self.end_arrivals_ms).contains(&now_ms);
                    self.all.annotation_writes += 1;
                    self.window.annotation_writes += u64::from(measured);
                    let written = n.publisher.written();
                    n.view = NodeView::parse(
                        |k| written.and_then(|a| a.get(k)).map(String::as_str),
                        &self.keys,
                        &self.catalog,
                    );
                    self.views[node as usize] = n.view.clone();
                    if let Some(at) = n.publisher.refresh_at() {
                        self.schedule(at, Event::Refresh { node });
                    }
                }
            }
        }
    }

    fn report(self, config: &Config) -> Report {
        let o = self.options;
        let gpus = u128::from(o.nodes) * u128::from(o.gpus_per_node);
        let slots = u128::from(o.nodes) * u128::from(self.capacity);
        let evictions: u64 = self
            .nodes
            .iter()
            .map(|n| n.engine.counters().evictions)
            .sum();
        let undone = self.pods.iter().filter(|p| !p.done).count();
        let mut anomalies = self.anomalies;
        if undone > 0 {
            anomalies.push(format!("{undone} pods never finished"));
        }
        let summary = |t: Tally| {
            let span = t.span_ms.max(1);
            Summary {
                measured_s: span as f64 / 1000.0,
                pods: t.pods,
                pods_without_grant: t.pods_without_grant,
                pods_on_warm_nodes: t.pods_on_warm_nodes,
                schedule_wait_ms: Percentiles::of(t.schedule_waits),
                first_task_wait_ms: Percentiles::of(t.first_task_waits),
                first_tasks_warm: t.first_tasks_warm,
                cold_loads: t.cold_loads,
                loaded_mib: t.loaded_mib,
                grants: t.grants,
                grants_warm: t.grants_warm,
                rejections: t.rejections,
                tasks: t.tasks,
                annotation_writes: t.annotation_writes,
                annotation_writes_per_node_per_s: round3(
                    t.annotation_writes as f64 / f64::from(o.nodes) / (span as f64 / 1000.0),
                ),
                gpu_busy_fraction: round3(t.busy_gpu_ms as f64 / (gpus * u128::from(span)) as f64),
                slot_occupancy: round3(t.slot_ms as f64 / (slots * u128::from(span)) as f64),
            }
        };
        Report {
            routing: o.routing.name(),
            seed: o.seed,
            nodes: o.nodes,
            gpus_per_node: o.gpus_per_node,
            gpu_mib: config.gpus.simulated.first().map_or(0, |g| g.memory_mib),
            models: self.models.len(),
            zipf: o.zipf,
            rate_per_s: o.rate_per_s,
            tasks_per_pod: o.tasks_per_pod,
            extender_weight: if o.routing == Routing::Warm {
                o.extender_weight
            } else {
                0
            },
            annotation_interval_s: config.cluster.annotation_interval.as_secs_f64(),
            duration_s: o.duration.as_secs_f64(),
            warmup_s: o.warmup.as_secs_f64(),
            simulated_s: self.last_departure_ms as f64 / 1000.0,
            evictions,
            measured: summary(self.window),
            including_warmup: summary(self.all),
            anomalies,
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
