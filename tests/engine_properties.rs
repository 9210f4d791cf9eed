//! Property tests: long random sequences of every engine operation, with the
//! ledger invariants checked after every step.
//!
//! # Determinism, replay and the long mode
//! - Every run draws its cases from the fixed seed [`SEED`], so CI tests the
//!   same cases each time; `PROPTEST_RNG_SEED=<n>` explores others.
//! - `ENGINE_PROPTEST_LONG=1` runs 100× the cases (about 25 600 per property).
//! - A failure is written to `tests/engine_properties.proptest-regressions`
//!   as a `cc <seed>` line, and every later run replays those lines before any
//!   new case (`a_persisted_failure_replays_before_any_new_case` proves it).
//!   Commit the line with the fix; a shrunk case worth keeping for good
//!   becomes a plain test, like `replay_pinned_eviction_counterexample`.
//!
//! # What is checked, after every operation
//! - The engine's own audit: every ledger recomputed from leases, tickets
//!   and residents.
//! - Every admission ends exactly once; a lease ends only by an effect.
//! - Evictions (by admission, carve-out, external growth, the operator) only
//!   take copies that are idle: no lease and no admission waiting on its load
//!   (the waiters' pins are counted from [`Engine::pending`]).
//! - A pool over its budget says so, and only memory pressure puts it there.
//! - Nothing is placed, granted or loaded on an unhealthy GPU.
//! - A load that finishes successfully grants every admission waiting on it
//!   whose deadline has not passed, the deadline instant included.
//! - A load result the engine no longer tracks changes nothing: the engine
//!   then decides exactly as a plain `tick` would.
//! - A queue pass that skips a blocked model's later tickets decides as a
//!   walk of the whole queue does (the same answers and effects).
//! - The same operations give the same answers and effects (no decision
//!   depends on hash-map order).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngSeed, TestError, TestRunner};
use vision_node_daemon::config::{EvictionPolicy, ModelSpec};
use vision_node_daemon::engine::*;

/// The seed every CI run draws its cases from.
const SEED: u64 = 0x5EED_0009;

/// Cases per property; `ENGINE_PROPTEST_LONG=1` multiplies them by 100.
fn config(cases: u32) -> Config {
    let long = std::env::var_os("ENGINE_PROPTEST_LONG").is_some_and(|v| v != "0");
    let mut c = Config::with_cases(if long { cases * 100 } else { cases });
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = RngSeed::Fixed(SEED);
    }
    // Next to this file, whatever directory the test runs from.
    c.failure_persistence = Some(Box::new(FileFailurePersistence::WithSource(
        "proptest-regressions",
    )));
    c
}

#[derive(Debug, Clone)]
enum Op {
    Admit {
        pod: usize,
        model: usize,
        priority: i32,
        wait: Option<u16>,
    },
    Release {
        pick: usize,
        by_owner: bool,
    },
    KeepAlive {
        pick: usize,
    },
    Tick {
        ms: u32,
    },
    LoadDone {
        pick: usize,
        ok: bool,
    },
    AllocateVram {
        gpu: usize,
        mib: u64,
    },
    AllocateSlots {
        slots: u32,
    },
    Deallocate {
        pick: usize,
    },
    Health {
        gpu: usize,
        healthy: bool,
    },
    External {
        gpu: usize,
        mib: u64,
    },
    Preload {
        model: usize,
        gpu: Option<usize>,
    },
    Evict {
        model: usize,
    },
    Cancel {
        pick: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..4usize, 0..6usize, -2..3i32, prop::option::weighted(0.8, 0..3000u16))
            .prop_map(|(pod, model, priority, wait)| Op::Admit { pod, model, priority, wait }),
        5 => (any::<usize>(), prop::bool::weighted(0.9)).prop_map(|(pick, by_owner)| Op::Release { pick, by_owner }),
        1 => any::<usize>().prop_map(|pick| Op::KeepAlive { pick }),
        4 => (0..5000u32).prop_map(|ms| Op::Tick { ms }),
        5 => (any::<usize>(), prop::bool::weighted(0.85)).prop_map(|(pick, ok)| Op::LoadDone { pick, ok }),
        1 => (0..3usize, 1..6000u64).prop_map(|(gpu, mib)| Op::AllocateVram { gpu, mib }),
        1 => (1..4u32).prop_map(|slots| Op::AllocateSlots { slots }),
        1 => any::<usize>().prop_map(|pick| Op::Deallocate { pick }),
        1 => (0..3usize, prop::bool::weighted(0.6)).prop_map(|(gpu, healthy)| Op::Health { gpu, healthy }),
        1 => (0..3usize, 0..8000u64).prop_map(|(gpu, mib)| Op::External { gpu, mib }),
        1 => (0..6usize, prop::option::of(0..3usize)).prop_map(|(model, gpu)| Op::Preload { model, gpu }),
        1 => (0..6usize).prop_map(|model| Op::Evict { model }),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
    ]
}

fn catalog() -> impl Strategy<Value = Vec<ModelSpec>> {
    prop::collection::vec((50..7000u64, 50..3000u64, 1..4u32, 0..5000u64), 6).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(
                |(i, (weights_mib, working_mib, max_concurrency, load_ms))| ModelSpec {
                    name: format!("m{i}"),
                    weights_mib,
                    working_mib,
                    max_concurrency,
                    load_ms,
                    task_ms: 100,
                    task_types: vec![],
                },
            )
            .collect()
    })
}

/// What the test knows from the engine's answers alone.
#[derive(Default)]
struct Model {
    tokens: Vec<String>,
    slot_tokens: Vec<String>,
    pending: BTreeSet<TicketId>,
    leases: BTreeMap<LeaseId, String>,
    /// Loads the engine asked for and nobody reported yet, with their copy.
    loads: BTreeMap<LoadId, (GpuId, ModelId)>,
    next_token: usize,
    admissions_ended: u64,
}

fn pick<T: Clone>(items: impl IntoIterator<Item = T>, i: usize) -> Option<T> {
    let v: Vec<T> = items.into_iter().collect();
    if v.is_empty() {
        None
    } else {
        Some(v[i % v.len()].clone())
    }
}

/// What an operation may legitimately have unpinned: leases it ended (the
/// one released, expiries, revocations) and admissions waiting on a load
/// that it answered without a lease or cancelled.
fn unpinned_by(
    fx: &[Effect],
    released: Option<Lease>,
    waiting: &HashMap<TicketId, (GpuId, ModelId)>,
    cancelled: Option<TicketId>,
) -> HashMap<(GpuId, ModelId), u32> {
    let mut unpinned: HashMap<(GpuId, ModelId), u32> = HashMap::new();
    for l in released.iter().chain(fx.iter().filter_map(|f| match f {
        Effect::Expire { lease } | Effect::Revoke { lease, .. } => Some(lease),
        _ => None,
    })) {
        *unpinned.entry((l.gpu, l.model)).or_default() += 1;
    }
    let ended = fx
        .iter()
        .filter_map(|f| match f {
            Effect::Reject { ticket, .. } => Some(*ticket),
            _ => None,
        })
        .chain(cancelled);
    for t in ended {
        if let Some(copy) = waiting.get(&t) {
            *unpinned.entry(*copy).or_default() += 1;
        }
    }
    unpinned
}

/// Applies effects to the model, checking that each answer is the first for
/// its ticket and that evictions only take copies that were idle. `before`
/// holds each copy's pins and loading state before the operation; pins the
/// operation itself removed (`unpinned`) are discounted.
fn absorb(
    m: &mut Model,
    fx: &[Effect],
    before: &HashMap<(GpuId, ModelId), (u32, bool)>,
    unpinned: &HashMap<(GpuId, ModelId), u32>,
    finished_a_load: bool,
    token_of: &dyn Fn(TicketId) -> Option<String>,
) -> Result<(), TestCaseError> {
    for f in fx {
        match f {
            Effect::Load { load, gpu, model } => {
                prop_assert!(
                    m.loads.insert(*load, (*gpu, *model)).is_none(),
                    "load {load} issued twice"
                );
            }
            Effect::Unload {
                gpu,
                model,
                reason: UnloadReason::Evicted { .. } | UnloadReason::Admin,
            } => {
                if let Some((pins, loading)) = before.get(&(*gpu, *model)) {
                    let ended = unpinned.get(&(*gpu, *model)).copied().unwrap_or(0);
                    prop_assert_eq!(
                        pins.saturating_sub(ended),
                        0,
                        "evicted a pinned copy of {} on {}",
                        model,
                        gpu
                    );
                    prop_assert!(
                        !loading || finished_a_load,
                        "evicted a loading copy of {} on {}",
                        model,
                        gpu
                    );
                }
            }
            Effect::Unload { .. } => {}
            Effect::Grant { ticket, lease } => {
                prop_assert!(
                    m.pending.remove(ticket),
                    "{ticket} answered twice or never asked"
                );
                let owner = token_of(*ticket).unwrap_or_default();
                m.leases.insert(lease.id, owner);
                m.admissions_ended += 1;
            }
            Effect::Reject { ticket, .. } => {
                prop_assert!(
                    m.pending.remove(ticket),
                    "{ticket} answered twice or never asked"
                );
                m.admissions_ended += 1;
            }
            Effect::Expire { lease } | Effect::Revoke { lease, .. } => {
                prop_assert!(
                    m.leases.remove(&lease.id).is_some(),
                    "ended {} that was not live",
                    lease.id
                );
            }
            Effect::Overcommitted { .. } | Effect::Drained { .. } => {}
        }
    }
    Ok(())
}

/// Memory on a GPU that is free or held only by idle copies.
fn headroom(g: &GpuStatus) -> u64 {
    let idle: u64 = g
        .residents
        .iter()
        .filter(|r| !r.loading && r.pins == 0)
        .map(|r| r.weights_mib)
        .sum();
    (g.usable_mib + idle).saturating_sub(g.carved_mib + g.weights_mib + g.working_mib)
}

fn residents(e: &Engine) -> HashMap<(GpuId, ModelId), (u32, bool)> {
    e.status()
        .gpus
        .iter()
        .flat_map(|g| {
            g.residents
                .iter()
                .map(move |r| ((g.id, r.model), (r.pins, r.loading)))
        })
        .collect()
}

/// A load result the test reported.
struct LoadResult {
    /// The copy it was for.
    copy: (GpuId, ModelId),
    /// The engine as it was just before.
    shadow: Box<Engine>,
    /// Whether the engine still tracked the load.
    tracked: bool,
    ok: bool,
}

fn engine(gpus: &[u64], models: &[ModelSpec], policy: EvictionPolicy) -> Engine {
    let specs = gpus
        .iter()
        .enumerate()
        .map(|(i, &total_mib)| GpuSpec {
            uuid: format!("GPU-{i}"),
            name: "prop".into(),
            total_mib,
        })
        .collect();
    let settings = Settings {
        reserve_mib: 256,
        queue_limit: 8,
        pod_queue_limit: 3,
        pod_loads: 2,
        default_timeout: Duration::from_secs(2),
        lease_ttl: Duration::from_secs(3),
        policy,
    };
    Engine::new(specs, models.to_vec(), settings).unwrap()
}

/// Plays `ops` against a fresh engine, checking every property in the module
/// docs after each one. Returns the log of answers and effects, one line per
/// operation, so two runs can be compared.
fn run(
    gpus: Vec<u64>,
    models: Vec<ModelSpec>,
    policy: EvictionPolicy,
    ops: Vec<Op>,
) -> Result<Vec<String>, TestCaseError> {
    run_as(gpus, models, policy, ops, false)
}

/// [`run`], with queue passes that walk the whole queue when `walk` is set
/// (the reference for the passes that skip blocked models' tickets).
fn run_as(
    gpus: Vec<u64>,
    models: Vec<ModelSpec>,
    policy: EvictionPolicy,
    ops: Vec<Op>,
    walk: bool,
) -> Result<Vec<String>, TestCaseError> {
    let mut e = engine(&gpus, &models, policy);
    e.walk_whole_queue(walk);
    let mut m = Model::default();
    let mut log = Vec::with_capacity(ops.len());
    let mut now = Time::ZERO;
    // Which token each pending ticket belongs to (for the lease map).
    let mut ticket_token: HashMap<TicketId, String> = HashMap::new();
    for i in 0..4 {
        let token = format!("pod-{i}");
        e.allocate_slots(&token, 1 + i as u32 % 3, now).unwrap();
        m.tokens.push(token.clone());
        m.slot_tokens.push(token);
    }
    let ngpu = gpus.len();
    for op in ops {
        now = now + Duration::from_millis(1);
        let before = residents(&e);
        let before_status = e.status();
        // Admissions waiting on a load, and the copy each one pins.
        let waiting: HashMap<TicketId, (GpuId, ModelId)> = m
            .pending
            .iter()
            .filter_map(|t| {
                let p = e.pending(*t)?;
                Some((*t, (p.loading_on?, p.model)))
            })
            .collect();
        let head_before = e
            .head()
            .map(|h| (h, headroom(&before_status.gpus[h.gpu.0 as usize])));
        // Work of a higher priority than the head's may use its memory.
        let outranked = |h: &HeadStatus| {
            m.pending
                .iter()
                .filter_map(|t| e.pending(*t))
                .any(|p| p.priority > h.priority)
                || matches!(op, Op::Admit { priority, .. } if priority > h.priority)
        };
        let head_before = head_before.filter(|(h, _)| !outranked(h));
        let mut pressure_op = false;
        let mut released = None;
        let mut cancelled = None;
        let mut load_result: Option<LoadResult> = None;
        let answer: String = match op.clone() {
            Op::Admit {
                pod,
                model,
                priority,
                wait,
            } => {
                let Some(token) = pick(m.slot_tokens.iter().cloned(), pod) else {
                    continue;
                };
                let req = AdmitRequest {
                    token: token.clone(),
                    model: models[model].name.clone(),
                    task_type: None,
                    priority,
                    wait: match wait {
                        None => Wait::NoQueue,
                        Some(ms) => Wait::For(Duration::from_millis(u64::from(ms))),
                    },
                };
                let r = e.admit(&req, now);
                match &r {
                    Ok(Admission::Granted(l)) => {
                        m.leases.insert(l.id, token);
                        m.admissions_ended += 1;
                    }
                    Ok(Admission::Pending(t)) => {
                        m.pending.insert(*t);
                        ticket_token.insert(*t, token);
                    }
                    Err(_) => m.admissions_ended += 1,
                }
                format!("{r:?}")
            }
            Op::Release { pick: p, by_owner } => match pick(m.leases.clone(), p) {
                Some((id, token)) => {
                    prop_assert_eq!(
                        e.release(id, Some("intruder"), now),
                        Err(LeaseError::UnknownLease(id))
                    );
                    let who = if by_owner { Some(token.as_str()) } else { None };
                    released = e.lease(id);
                    // Err only if it expired at this very instant (an Expire effect says so).
                    let r = e.release(id, who, now);
                    if r.is_ok() {
                        m.leases.remove(&id);
                    }
                    format!("{r:?}")
                }
                None => String::new(),
            },
            Op::KeepAlive { pick: p } => match pick(m.leases.clone(), p) {
                Some((id, token)) => {
                    let r = e.keep_alive(id, Some(&token), now);
                    if let Ok(exp) = r {
                        prop_assert!(exp > now);
                    }
                    format!("{r:?}")
                }
                None => String::new(),
            },
            Op::Tick { ms } => {
                now = now + Duration::from_millis(u64::from(ms));
                e.tick(now);
                String::new()
            }
            Op::LoadDone { pick: p, ok } => match pick(m.loads.clone(), p) {
                Some((load, copy)) => {
                    m.loads.remove(&load);
                    let shadow = Box::new(e.clone());
                    let result = if ok { Ok(()) } else { Err("boom".to_string()) };
                    let tracked = e.load_finished(load, result, now);
                    load_result = Some(LoadResult {
                        copy,
                        shadow,
                        tracked,
                        ok,
                    });
                    format!("{tracked}")
                }
                None => String::new(),
            },
            Op::AllocateVram { gpu, mib } => {
                let token = format!("vram-{}", m.next_token);
                m.next_token += 1;
                e.allocate_vram(&token, GpuId((gpu % ngpu) as u32), mib, now)
                    .unwrap();
                m.tokens.push(token);
                pressure_op = true;
                String::new()
            }
            Op::AllocateSlots { slots } => {
                let token = format!("slots-{}", m.next_token);
                m.next_token += 1;
                e.allocate_slots(&token, slots, now).unwrap();
                m.tokens.push(token.clone());
                m.slot_tokens.push(token);
                String::new()
            }
            Op::Deallocate { pick: p } => match pick(m.tokens.clone(), p) {
                Some(token) => {
                    let r = e.deallocate(&token, now).unwrap();
                    m.tokens.retain(|t| *t != token);
                    m.slot_tokens.retain(|t| *t != token);
                    format!("{r:?}")
                }
                None => String::new(),
            },
            Op::Health { gpu, healthy } => {
                format!("{}", e.set_health(GpuId((gpu % ngpu) as u32), healthy, now))
            }
            Op::External { gpu, mib } => {
                e.set_external_mib(GpuId((gpu % ngpu) as u32), mib, now);
                pressure_op = true;
                String::new()
            }
            Op::Preload { model, gpu } => {
                let r = e.preload(
                    &models[model].name,
                    gpu.map(|g| GpuId((g % ngpu) as u32)),
                    now,
                );
                format!("{r:?}")
            }
            Op::Evict { model } => format!("{:?}", e.evict(&models[model].name, None, now)),
            Op::Cancel { pick: p } => match pick(m.pending.clone(), p) {
                Some(t) => {
                    // False only if its deadline fell at this instant (a Reject says so).
                    let known = e.cancel(t, now);
                    if known {
                        m.pending.remove(&t);
                        m.admissions_ended += 1;
                        cancelled = Some(t);
                    }
                    format!("{known}")
                }
                None => String::new(),
            },
        };
        // An operation that found nothing to act on still lets time pass.
        e.tick(now);
        let fx: Vec<Effect> = e.drain_effects().collect();
        log.push(format!("{now} {op:?} -> {answer} {fx:?}"));
        if std::env::var_os("PROP_DEBUG").is_some() {
            eprintln!(
                "{now} {op:?} -> {answer}\n    fx {fx:?}\n    copies before {before:?}\n    leases {:?}",
                m.leases.keys().map(|id| e.lease(*id)).collect::<Vec<_>>()
            );
        }

        if let Some(LoadResult {
            copy: (gpu, model),
            mut shadow,
            tracked,
            ok,
        }) = load_result
        {
            if !tracked {
                // A stale result: exactly what a plain tick would have done.
                shadow.tick(now);
                let shadow_fx: Vec<Effect> = shadow.drain_effects().collect();
                prop_assert_eq!(&shadow_fx, &fx, "a stale load result changed the decisions");
                prop_assert_eq!(
                    shadow.status(),
                    e.status(),
                    "a stale load result changed the ledger"
                );
            } else if ok {
                // Every waiter still in time is granted, the deadline instant included.
                for (t, copy) in &waiting {
                    let deadline = shadow.pending(*t).and_then(|p| p.deadline);
                    if *copy == (gpu, model) && deadline.is_none_or(|d| d >= now) {
                        prop_assert!(
                            fx.iter()
                                .any(|f| matches!(f, Effect::Grant { ticket, .. } if ticket == t)),
                            "{} waited on the load of {} on {} that finished in time, but got no lease",
                            t,
                            model,
                            gpu
                        );
                    }
                }
            }
        }

        let unpinned = unpinned_by(&fx, released, &waiting, cancelled);
        let tt = ticket_token.clone();
        let finished_a_load = matches!(op, Op::LoadDone { .. });
        absorb(&mut m, &fx, &before, &unpinned, finished_a_load, &|t| {
            tt.get(&t).cloned()
        })?;

        // The ledger agrees with what it holds.
        if let Err(msg) = e.audit() {
            return Err(TestCaseError::fail(format!("after {op:?}: {msg}")));
        }
        let healthy = e.gpu_healthy();
        for f in &fx {
            match f {
                Effect::Load { gpu, model, .. } => prop_assert!(
                    healthy[gpu.0 as usize],
                    "loaded {} on unhealthy {}",
                    model,
                    gpu
                ),
                Effect::Grant { lease, .. } => prop_assert!(
                    healthy[lease.gpu.0 as usize],
                    "granted {} on unhealthy {}",
                    lease.id,
                    lease.gpu
                ),
                _ => {}
            }
        }
        let after = e.status();
        // Nothing placed after the head may eat into its reservation: unless
        // memory pressure or the operator took it, its GPU keeps at least the
        // reservation free or reclaimable (or what it had, if less).
        if let Some((h, had)) = head_before
            && e.head() == Some(h)
            && !pressure_op
            && !matches!(op, Op::Preload { .. })
        {
            let now_has = headroom(&after.gpus[h.gpu.0 as usize]);
            prop_assert!(
                now_has >= had.min(h.reserved_mib),
                "{op:?} left {now_has} MiB on {} for the head's {} (it had {had})",
                h.gpu,
                h.reserved_mib
            );
        }
        for (g, b) in after.gpus.iter().zip(&before_status.gpus) {
            let committed = g.carved_mib + g.weights_mib + g.working_mib;
            let was = b.carved_mib + b.weights_mib + b.working_mib;
            if g.overcommitted_since.is_none() {
                prop_assert!(
                    committed <= g.usable_mib,
                    "gpu {} over its pool undeclared",
                    g.id
                );
            } else if b.overcommitted_since.is_none() {
                prop_assert!(pressure_op, "{} over-committed by {op:?}", g.id);
            } else if !pressure_op {
                prop_assert!(
                    committed <= was,
                    "{} grew while over-committed, by {op:?}",
                    g.id
                );
            }
        }
        // No lease outlives its TTL past the last operation's `now`, and none
        // sits on an unhealthy GPU.
        for id in m.leases.keys() {
            let lease = e.lease(*id);
            prop_assert!(lease.is_some(), "{id} vanished without an effect");
            let lease = lease.unwrap();
            prop_assert!(lease.expires_at > now, "{id} survived its TTL");
            prop_assert!(
                healthy[lease.gpu.0 as usize],
                "{id} lives on unhealthy {}",
                lease.gpu
            );
        }
        prop_assert_eq!(
            e.counters().ended(),
            m.admissions_ended,
            "every admission ends exactly once"
        );
    }

    // Drain: finish every load, release every lease, pass every deadline.
    for _ in 0..4 {
        for load in std::mem::take(&mut m.loads).into_keys() {
            e.load_finished(load, Ok(()), now);
        }
        let fx: Vec<Effect> = e.drain_effects().collect();
        let tt = ticket_token.clone();
        let (no_copies, no_pins) = (HashMap::new(), HashMap::new());
        absorb(&mut m, &fx, &no_copies, &no_pins, true, &|t| {
            tt.get(&t).cloned()
        })?;
        for id in m.leases.clone().into_keys() {
            if e.release(id, None, now).is_ok() {
                m.leases.remove(&id);
            }
        }
        now = now + Duration::from_secs(60);
        e.tick(now);
        let fx: Vec<Effect> = e.drain_effects().collect();
        absorb(&mut m, &fx, &no_copies, &no_pins, true, &|t| {
            tt.get(&t).cloned()
        })?;
    }
    prop_assert!(
        m.pending.is_empty(),
        "unanswered admissions: {:?}",
        m.pending
    );
    for token in m.tokens.clone() {
        e.deallocate(&token, now).unwrap();
    }
    for spec in &models {
        let _ = e.evict(&spec.name, None, now);
    }
    let fx: Vec<Effect> = e.drain_effects().collect();
    let started = fx
        .iter()
        .any(|f| matches!(f, Effect::Load { .. } | Effect::Grant { .. }));
    prop_assert!(!started, "tearing down started work: {:?}", fx);
    for g in e.status().gpus {
        prop_assert_eq!(
            (g.carved_mib, g.weights_mib, g.working_mib),
            (0, 0, 0),
            "{} not back to zero",
            g.id
        );
        prop_assert!(g.residents.is_empty());
    }
    e.audit().map_err(TestCaseError::fail)?;
    Ok(log)
}

fn gpus() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(8_000..24_000u64, 1..4)
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..300)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn ledger_invariants_hold_under_lru(gpus in gpus(), models in catalog(), ops in ops()) {
        run(gpus, models, EvictionPolicy::Lru, ops)?;
    }

    #[test]
    fn ledger_invariants_hold_under_greedy_dual_size(gpus in gpus(), models in catalog(), ops in ops()) {
        run(gpus, models, EvictionPolicy::GreedyDualSize, ops)?;
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// Two engines fed the same operations answer alike and emit the same
    /// effects: decisions never depend on hash-map order (each engine's maps
    /// are seeded differently).
    #[test]
    fn the_same_operations_give_the_same_decisions(gpus in gpus(), models in catalog(), ops in ops()) {
        let first = run(gpus.clone(), models.clone(), EvictionPolicy::Lru, ops.clone())?;
        let second = run(gpus, models, EvictionPolicy::Lru, ops)?;
        prop_assert_eq!(first, second);
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// A queue pass that skips the rest of a model's tickets once one is
    /// blocked for memory decides exactly as a walk of the whole queue:
    /// the same answers and effects, in the same order, after every
    /// operation (the queue order and the head reservation are unchanged).
    #[test]
    fn skipping_blocked_models_decides_as_walking_the_whole_queue(
        gpus in gpus(), models in catalog(), ops in ops(), gds in any::<bool>(),
    ) {
        let policy = if gds { EvictionPolicy::GreedyDualSize } else { EvictionPolicy::Lru };
        let walked = run_as(gpus.clone(), models.clone(), policy, ops.clone(), true)?;
        let skipped = run_as(gpus, models, policy, ops, false)?;
        prop_assert_eq!(walked, skipped);
    }
}

/// What the pods other than the flooder do.
#[derive(Debug, Clone)]
enum PeerOp {
    Admit {
        pod: usize,
        model: usize,
        priority: i32,
        wait: Option<u16>,
    },
    Release {
        pick: usize,
    },
    Tick {
        ms: u32,
    },
    LoadDone {
        pick: usize,
        ok: bool,
    },
    Cancel {
        pick: usize,
    },
}

/// What the flooding pod does, its only slot held all along.
#[derive(Debug, Clone)]
enum FloodOp {
    Admit {
        model: usize,
        priority: i32,
        wait: Option<u16>,
    },
    Cancel {
        pick: usize,
    },
}

fn peer_op() -> impl Strategy<Value = PeerOp> {
    prop_oneof![
        6 => (0..3usize, 0..6usize, -2..3i32, prop::option::weighted(0.8, 0..3000u16))
            .prop_map(|(pod, model, priority, wait)| PeerOp::Admit { pod, model, priority, wait }),
        4 => any::<usize>().prop_map(|pick| PeerOp::Release { pick }),
        3 => (0..3000u32).prop_map(|ms| PeerOp::Tick { ms }),
        4 => (any::<usize>(), prop::bool::weighted(0.85)).prop_map(|(pick, ok)| PeerOp::LoadDone { pick, ok }),
        1 => any::<usize>().prop_map(|pick| PeerOp::Cancel { pick }),
    ]
}

fn flood_op() -> impl Strategy<Value = FloodOp> {
    prop_oneof![
        8 => (0..6usize, -2..5i32, prop::option::weighted(0.85, 0..3000u16))
            .prop_map(|(model, priority, wait)| FloodOp::Admit { model, priority, wait }),
        1 => any::<usize>().prop_map(|pick| FloodOp::Cancel { pick }),
    ]
}

fn wait_of(w: Option<u16>) -> Wait {
    match w {
        None => Wait::NoQueue,
        Some(ms) => Wait::For(Duration::from_millis(u64::from(ms))),
    }
}

/// Plays the peers' operations, with the flooder's interleaved or not (then
/// time passes just the same), and returns what the peers saw: every answer
/// and effect, tickets named by the peer request that made them.
fn peers_transcript(
    gpus: &[u64],
    models: &[ModelSpec],
    ops: &[(PeerOp, Vec<FloodOp>)],
    flood: bool,
) -> Result<Vec<String>, TestCaseError> {
    let specs = gpus
        .iter()
        .enumerate()
        .map(|(i, &total_mib)| GpuSpec {
            uuid: format!("GPU-{i}"),
            name: "prop".into(),
            total_mib,
        })
        .collect();
    // Three peers with at most 4 waiting each: never more than queue_limit −
    // pod_queue_limit, the condition under which one pod cannot touch them.
    let settings = Settings {
        reserve_mib: 256,
        queue_limit: 16,
        pod_queue_limit: 4,
        pod_loads: 2,
        default_timeout: Duration::from_secs(2),
        lease_ttl: Duration::from_secs(3600),
        ..Settings::default()
    };
    let mut e = Engine::new(specs, models.to_vec(), settings).unwrap();
    let mut now = Time::ZERO;
    let peers = ["peer-0", "peer-1", "peer-2"];
    for (i, p) in peers.iter().enumerate() {
        e.allocate_slots(p, 1 + i as u32, now).unwrap();
    }
    // The flooder holds its only slot with a lease on the smallest model.
    e.allocate_slots("flood", 1, now).unwrap();
    let smallest = models
        .iter()
        .min_by_key(|m| m.weights_mib + m.working_mib)
        .unwrap();
    let req = |token: &str, model: &str, priority, wait| AdmitRequest {
        token: token.into(),
        model: model.into(),
        task_type: None,
        priority,
        wait,
    };
    match e.admit(&req("flood", &smallest.name, 0, Wait::Default), now) {
        Ok(Admission::Granted(_)) => {}
        Ok(Admission::Pending(_)) => {
            let fx: Vec<Effect> = e.drain_effects().collect();
            let Some(Effect::Load { load, .. }) = fx.first() else {
                return Err(TestCaseError::fail(format!("expected a load, got {fx:?}")));
            };
            e.load_finished(*load, Ok(()), now);
        }
        Err(err) => return Err(TestCaseError::fail(format!("flooder's lease: {err}"))),
    }
    e.drain_effects().for_each(drop);

    // Each peer ticket: the request that made it, and its pod.
    let mut names: HashMap<TicketId, (String, &str)> = HashMap::new();
    let mut peer_pending: BTreeSet<TicketId> = BTreeSet::new();
    let mut flood_pending: BTreeSet<TicketId> = BTreeSet::new();
    // Every ticket the flooder ever had: its answers may come after a cancel.
    let mut flood_tickets: BTreeSet<TicketId> = BTreeSet::new();
    let mut leases: BTreeMap<LeaseId, &str> = BTreeMap::new();
    let mut loads: BTreeSet<LoadId> = BTreeSet::new();
    let mut out = Vec::new();
    let mut asked = 0usize;
    for (op, floods) in ops {
        for f in floods {
            now = now + Duration::from_millis(1);
            if !flood {
                e.tick(now);
                continue;
            }
            match f {
                FloodOp::Admit {
                    model,
                    priority,
                    wait,
                } => {
                    let r = req("flood", &models[*model].name, *priority, wait_of(*wait));
                    match e.admit(&r, now) {
                        Ok(Admission::Pending(t)) => {
                            flood_pending.insert(t);
                            flood_tickets.insert(t);
                        }
                        Ok(Admission::Granted(l)) => {
                            return Err(TestCaseError::fail(format!(
                                "the flooder got {} with its only slot held",
                                l.id
                            )));
                        }
                        Err(_) => {}
                    }
                }
                FloodOp::Cancel { pick: p } => {
                    if let Some(t) = pick(flood_pending.iter().copied(), *p) {
                        e.cancel(t, now);
                        flood_pending.remove(&t);
                    } else {
                        // Nothing to cancel: the engine still hears of this
                        // instant, as in the run without the flooder, so
                        // both end a deadline at the same call.
                        e.tick(now);
                    }
                }
            }
        }
        now = now + Duration::from_millis(1);
        let answer = match op {
            PeerOp::Admit {
                pod,
                model,
                priority,
                wait,
            } => {
                asked += 1;
                let r = req(peers[*pod], &models[*model].name, *priority, wait_of(*wait));
                match e.admit(&r, now) {
                    Ok(Admission::Pending(t)) => {
                        names.insert(t, (format!("req{asked}"), peers[*pod]));
                        peer_pending.insert(t);
                        format!("req{asked} waits")
                    }
                    Ok(Admission::Granted(l)) => {
                        leases.insert(l.id, peers[*pod]);
                        format!("req{asked} granted {} on {} warm {}", l.id, l.gpu, l.warm)
                    }
                    Err(err) => format!("req{asked} refused: {err}"),
                }
            }
            PeerOp::Release { pick: p } => match pick(leases.clone(), *p) {
                Some((id, token)) => {
                    leases.remove(&id);
                    format!("release {id}: {:?}", e.release(id, Some(token), now))
                }
                None => String::new(),
            },
            PeerOp::Tick { ms } => {
                now = now + Duration::from_millis(u64::from(*ms));
                e.tick(now);
                String::new()
            }
            PeerOp::LoadDone { pick: p, ok } => match pick(loads.iter().copied(), *p) {
                Some(load) => {
                    loads.remove(&load);
                    let result = if *ok { Ok(()) } else { Err("boom".to_string()) };
                    format!("{load} done: {}", e.load_finished(load, result, now))
                }
                None => String::new(),
            },
            PeerOp::Cancel { pick: p } => match pick(peer_pending.iter().copied(), *p) {
                Some(t) => {
                    peer_pending.remove(&t);
                    format!("cancel {}: {}", names[&t].0, e.cancel(t, now))
                }
                None => String::new(),
            },
        };
        e.tick(now);
        let mut seen = Vec::new();
        let fx: Vec<Effect> = e.drain_effects().collect();
        for f in fx {
            let ticket = match &f {
                Effect::Grant { ticket, .. } | Effect::Reject { ticket, .. } => Some(*ticket),
                _ => None,
            };
            if let Some(t) = ticket
                && flood_tickets.contains(&t)
            {
                flood_pending.remove(&t);
                if let Effect::Grant { lease, .. } = f {
                    return Err(TestCaseError::fail(format!(
                        "the flooder got {} with its only slot held",
                        lease.id
                    )));
                }
                continue;
            }
            match f {
                Effect::Load { load, .. } => {
                    loads.insert(load);
                    seen.push(format!("{f:?}"));
                }
                Effect::Grant { ticket, lease } => {
                    peer_pending.remove(&ticket);
                    let (name, pod) = &names[&ticket];
                    leases.insert(lease.id, pod);
                    seen.push(format!(
                        "{name} granted {} on {} warm {} at {}",
                        lease.id, lease.gpu, lease.warm, lease.granted_at
                    ));
                }
                Effect::Reject { ticket, reason } => {
                    peer_pending.remove(&ticket);
                    seen.push(format!("{} rejected: {reason:?}", names[&ticket].0));
                }
                other => seen.push(format!("{other:?}")),
            }
        }
        out.push(format!("{now} {answer} {}", seen.join("; ")));
    }
    Ok(out)
}

proptest! {
    #![proptest_config(config(128))]

    /// One pod whose slot is held floods the node with admissions (any model,
    /// any priority, with or without a timeout, some cancelled): the other
    /// pods see exactly the answers, leases and effects they see without it.
    #[test]
    fn one_pod_flooding_never_changes_another_pods_outcome(
        gpus in prop::collection::vec(12_000..24_000u64, 1..4),
        models in catalog(),
        ops in prop::collection::vec(
            (peer_op(), prop::collection::vec(flood_op(), 0..12)),
            1..150,
        ),
    ) {
        let alone = peers_transcript(&gpus, &models, &ops, false)?;
        let flooded = peers_transcript(&gpus, &models, &ops, true)?;
        prop_assert_eq!(alone, flooded);
    }
}

/// The claim of the module docs: a persisted `cc` line is replayed, first,
/// by a later run whose own seed and case count would never reach it.
#[test]
fn a_persisted_failure_replays_before_any_new_case() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("replay.proptest-regressions");
    // `Direct` wants a `&'static str`; one short leak per test run.
    let path: &'static str = Box::leak(path.to_string_lossy().into_owned().into_boxed_str());
    let strategy = (gpus(), catalog(), ops());
    // A claim that the engine breaks often: "nothing is ever evicted".
    let never_evicts = |(gpus, models, ops): (Vec<u64>, Vec<ModelSpec>, Vec<Op>)| {
        let log = run(gpus, models, EvictionPolicy::Lru, ops)?;
        prop_assert!(
            !log.iter().any(|l| l.contains("Evicted")),
            "an eviction happened"
        );
        Ok(())
    };
    let runner = |seed: u64, cases: u32| {
        let mut c = Config::with_cases(cases);
        c.rng_seed = RngSeed::Fixed(seed);
        // The automatic limit is 4 × cases: none at all for the replay run.
        c.max_shrink_iters = 1024;
        c.failure_persistence = Some(Box::new(FileFailurePersistence::Direct(path)));
        c.source_file = Some(file!());
        TestRunner::new(c)
    };

    let first = runner(1, 256).run(&strategy, never_evicts);
    let Err(TestError::Fail(_, minimal)) = first else {
        panic!("the planted claim should fail, got {first:?}");
    };
    let persisted = std::fs::read_to_string(path).expect("the failure was persisted");
    assert_eq!(
        persisted.lines().filter(|l| l.starts_with("cc ")).count(),
        1,
        "{persisted}"
    );

    // Another seed and no new case at all: only the persisted line can fail.
    let replay = runner(2, 0).run(&strategy, never_evicts);
    let Err(TestError::Fail(_, replayed)) = replay else {
        panic!("the persisted failure was not replayed: {replay:?}");
    };
    assert_eq!(format!("{replayed:?}"), format!("{minimal:?}"));

    // The same run without the file passes: the failure came from the file.
    std::fs::remove_file(path).expect("remove the file");
    assert!(runner(2, 0).run(&strategy, never_evicts).is_ok());
}

#[rustfmt::skip]
#[test]
fn replay_pinned_eviction_counterexample() {
    let m = |name: &str, weights_mib, working_mib, load_ms| ModelSpec { name: name.into(), weights_mib, working_mib, max_concurrency: 1, load_ms, task_ms: 100, task_types: vec![] };
    let models = vec![m("m0", 1858, 574, 0), m("m1", 4153, 570, 0), m("m2", 50, 50, 1933), m("m3", 4237, 1507, 0), m("m4", 3828, 2700, 0), m("m5", 837, 2080, 0)];
    let ops = vec![Op::Deallocate { pick: 748007940524565060 }, Op::External { gpu: 2, mib: 5373 }, Op::AllocateVram { gpu: 2, mib: 2703 }, Op::Admit { pod: 2, model: 1, priority: 0, wait: None }, Op::Admit { pod: 0, model: 1, priority: 0, wait: None }, Op::Admit { pod: 0, model: 1, priority: 0, wait: None }, Op::AllocateVram { gpu: 0, mib: 1512 }, Op::Release { pick: 0, by_owner: false }, Op::Admit { pod: 0, model: 0, priority: 0, wait: Some(1) }, Op::Release { pick: 42813756151263647, by_owner: true }, Op::LoadDone { pick: 16975810830679060896, ok: true }, Op::Tick { ms: 4886 }, Op::Admit { pod: 1, model: 5, priority: 2, wait: None }, Op::Admit { pod: 2, model: 1, priority: -1, wait: Some(524) }, Op::AllocateVram { gpu: 1, mib: 1040 }, Op::LoadDone { pick: 5295085791910989303, ok: true }, Op::Tick { ms: 4554 }, Op::Admit { pod: 2, model: 0, priority: -2, wait: Some(5) }, Op::Admit { pod: 1, model: 1, priority: 0, wait: Some(1533) }, Op::External { gpu: 0, mib: 611 }, Op::Admit { pod: 0, model: 2, priority: 1, wait: Some(1759) }, Op::Release { pick: 17404618266840601868, by_owner: true }, Op::LoadDone { pick: 4276318620476038811, ok: true }, Op::Admit { pod: 0, model: 3, priority: 1, wait: Some(542) }, Op::Admit { pod: 0, model: 0, priority: 2, wait: Some(189) }, Op::LoadDone { pick: 4948197509948244662, ok: true }, Op::Deallocate { pick: 1977161983117106371 }, Op::Admit { pod: 2, model: 5, priority: 0, wait: Some(2269) }, Op::Release { pick: 12013739602621578388, by_owner: true }, Op::Release { pick: 1697735901569950019, by_owner: true }, Op::LoadDone { pick: 18202279761859415982, ok: true }, Op::Deallocate { pick: 17351798542168995424 }, Op::Admit { pod: 0, model: 2, priority: 1, wait: Some(2856) }, Op::LoadDone { pick: 10695167612849492705, ok: true }, Op::Release { pick: 8702682133672017174, by_owner: true }, Op::Tick { ms: 2847 }, Op::Deallocate { pick: 9875760184883719686 }, Op::Tick { ms: 1535 }, Op::AllocateVram { gpu: 0, mib: 4197 }, Op::Admit { pod: 0, model: 0, priority: -1, wait: Some(455) }, Op::Admit { pod: 1, model: 4, priority: -2, wait: Some(2662) }, Op::LoadDone { pick: 5518080363051014707, ok: true }, Op::Tick { ms: 4747 }, Op::Admit { pod: 1, model: 5, priority: 0, wait: Some(1940) }, Op::Admit { pod: 0, model: 3, priority: 2, wait: Some(1765) }, Op::Preload { model: 0, gpu: Some(0) }, Op::Admit { pod: 0, model: 1, priority: 1, wait: Some(2906) }, Op::Admit { pod: 1, model: 5, priority: -1, wait: None }, Op::AllocateSlots { slots: 2 }, Op::Release { pick: 1277070825788319289, by_owner: true }, Op::Release { pick: 17537855315900256547, by_owner: true }, Op::Tick { ms: 2385 }, Op::AllocateSlots { slots: 1 }, Op::Admit { pod: 1, model: 3, priority: -2, wait: Some(2955) }, Op::External { gpu: 2, mib: 6371 }, Op::External { gpu: 1, mib: 7352 }, Op::Admit { pod: 0, model: 3, priority: -2, wait: Some(1239) }, Op::Admit { pod: 1, model: 2, priority: 0, wait: Some(2438) }, Op::AllocateSlots { slots: 3 }, Op::AllocateSlots { slots: 3 }, Op::Admit { pod: 2, model: 0, priority: -2, wait: Some(2533) }, Op::Tick { ms: 501 }, Op::LoadDone { pick: 2313192214023571210, ok: false }, Op::Admit { pod: 2, model: 4, priority: -1, wait: Some(1453) }, Op::External { gpu: 2, mib: 6353 }, Op::LoadDone { pick: 4698023816998058814, ok: true }, Op::LoadDone { pick: 12765255675707832231, ok: true }];
    run(vec![17390, 9215], models, EvictionPolicy::Lru, ops).unwrap();
}

/// A flood replay: the peers see the same with and without the flooder.
fn assert_flood_changes_nothing(
    gpus: &[u64],
    models: &[ModelSpec],
    ops: &[(PeerOp, Vec<FloodOp>)],
) {
    let alone = peers_transcript(gpus, models, ops, false).unwrap();
    let flooded = peers_transcript(gpus, models, ops, true).unwrap();
    assert_eq!(alone, flooded);
}

/// Case C of the flood property's long mode (shrunk): a no-wait admission
/// of a higher priority, blocked, took the head from a waiting one and was
/// then dropped (it may not wait); the stale head lived on until the next
/// queue pass, so whether a later admission could use the waiting one's
/// memory depended on whether another pod's call ran a pass in between.
#[test]
#[rustfmt::skip]
fn replay_flood_no_wait_head_counterexample() {
    let m = |name: &str, weights_mib, working_mib, max_concurrency| ModelSpec { name: name.into(), weights_mib, working_mib, max_concurrency, load_ms: 0, task_ms: 100, task_types: vec![] };
    let models = vec![m("m0", 989, 2680, 1), m("m1", 3752, 882, 2), m("m2", 1038, 2630, 1), m("m3", 3529, 139, 1), m("m4", 5873, 2229, 1), m("m5", 4749, 1734, 1)];
    let admit = |pod, model, priority, wait| PeerOp::Admit { pod, model, priority, wait };
    let ops = vec![(admit(0, 2, 0, None), vec![]), (admit(0, 2, 0, None), vec![]), (admit(2, 5, 0, None), vec![]), (admit(1, 1, 0, None), vec![]), (PeerOp::Release { pick: 0 }, vec![]), (PeerOp::Release { pick: 0 }, vec![]), (admit(0, 2, 0, Some(34)), vec![]), (PeerOp::LoadDone { pick: 1321288717194760811, ok: false }, vec![]), (admit(0, 1, -1, None), vec![]), (admit(0, 2, 1, None), vec![]), (admit(0, 1, 0, None), vec![FloodOp::Admit { model: 0, priority: 0, wait: Some(1) }])];
    assert_flood_changes_nothing(&[16774], &models, &ops);
}

/// Case D of the flood property's long mode (shrunk): an arrival blocked
/// for memory became the head while it was fresh (a load started at its
/// arrival is always worth it); a millisecond later its load could no longer
/// beat its deadline, which frees the head's memory for a waiting admission
/// of another pod. Nothing timed that moment, so the waiting admission was
/// placed at whichever call came next: the flooder's, or a millisecond later
/// without it. The engine now times a pass for such moments.
#[test]
#[rustfmt::skip]
fn replay_flood_time_alone_changes_a_decision_counterexample() {
    let m = |name: &str, weights_mib, working_mib, max_concurrency, load_ms| ModelSpec { name: name.into(), weights_mib, working_mib, max_concurrency, load_ms, task_ms: 100, task_types: vec![] };
    let models = vec![m("m0", 3963, 174, 1, 830), m("m1", 50, 1300, 2, 0), m("m2", 978, 189, 2, 0), m("m3", 2366, 1771, 1, 0), m("m4", 3318, 1773, 1, 0), m("m5", 1517, 50, 1, 0)];
    let admit = |pod, model, priority, wait| PeerOp::Admit { pod, model, priority, wait };
    let no_wait = |n| vec![FloodOp::Admit { model: 0, priority: 0, wait: None }; n];
    let ops = vec![(admit(0, 0, 0, None), vec![]), (admit(0, 1, 0, Some(26)), vec![]), (PeerOp::Release { pick: 0 }, vec![]), (admit(2, 4, 0, None), vec![]), (admit(0, 5, 0, Some(16)), no_wait(8)), (PeerOp::Release { pick: 0 }, vec![]), (PeerOp::LoadDone { pick: 6000080658095587364, ok: false }, vec![]), (admit(0, 0, 0, None), vec![]), (admit(1, 3, -2, Some(22)), vec![]), (admit(0, 2, -2, Some(12)), no_wait(11)), (admit(1, 0, 0, Some(2)), no_wait(9)), (admit(0, 0, 0, None), vec![FloodOp::Admit { model: 0, priority: 0, wait: Some(1) }])];
    assert_flood_changes_nothing(&[12000], &models, &ops);
}

/// Case E of the flood property's long mode (shrunk): a pass tried a
/// waiting admission against the head's reservation on GPU 1, then placed
/// the head on GPU 0; the reservation was gone, but the admission it had
/// blocked waited for the next pass, run by whichever call came next (the
/// flooder's, or a peer's later). A pass now runs again whenever it ends
/// the head's reservation after blocking a ticket, placed or not.
#[test]
#[rustfmt::skip]
fn replay_flood_head_placed_elsewhere_counterexample() {
    let m = |name: &str, weights_mib, working_mib, max_concurrency, load_ms| ModelSpec { name: name.into(), weights_mib, working_mib, max_concurrency, load_ms, task_ms: 100, task_types: vec![] };
    let models = vec![m("m0", 171, 1754, 1, 1631), m("m1", 544, 1380, 2, 0), m("m2", 2946, 646, 1, 0), m("m3", 5483, 208, 1, 0), m("m4", 524, 2805, 2, 1414), m("m5", 2607, 975, 2, 45)];
    let admit = |pod, model, priority, wait| (PeerOp::Admit { pod, model, priority, wait }, vec![]);
    let release = |pick| (PeerOp::Release { pick }, vec![]);
    let done = |pick, ok| (PeerOp::LoadDone { pick, ok }, vec![]);
    let ops = vec![admit(0, 2, 0, None), done(0, true), admit(0, 5, 0, Some(46)), release(0), admit(2, 2, 0, None), admit(1, 4, 0, Some(1)), done(13942951558691388048, true), (PeerOp::Tick { ms: 0 }, vec![]), admit(1, 5, 0, None), release(16519005920899006726), done(0, true), admit(1, 4, 0, None), admit(2, 5, 0, None), admit(2, 4, 0, None), admit(0, 1, 0, None), admit(2, 4, 2, Some(63)), admit(0, 0, 0, None), done(0, false), done(0, false), admit(2, 0, 0, None), admit(0, 0, 0, None), release(10015020676692266804), admit(1, 3, 2, Some(29)), admit(0, 0, 0, None), release(5706335239289530407), (PeerOp::Admit { pod: 0, model: 0, priority: 0, wait: None }, vec![FloodOp::Admit { model: 0, priority: 0, wait: Some(1) }])];
    assert_flood_changes_nothing(&[13805, 12867], &models, &ops);
}
