//! Property tests: long random sequences of every engine operation, with the
//! ledger invariants checked after every step.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use proptest::prelude::*;
use vision_node_daemon::config::{EvictionPolicy, ModelSpec};
use vision_node_daemon::engine::*;

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
    loads: BTreeSet<LoadId>,
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

/// Applies effects to the model, checking that each answer is the first for
/// its ticket and that evictions only take copies that were idle. `before`
/// holds each copy's pins and loading state before the operation; pins the
/// operation itself removed (`released`, expiries, revocations) are discounted.
fn absorb(
    m: &mut Model,
    fx: &[Effect],
    before: &HashMap<(GpuId, ModelId), (u32, bool)>,
    released: Option<Lease>,
    finished_a_load: bool,
    token_of: &dyn Fn(TicketId) -> Option<String>,
) -> Result<(), TestCaseError> {
    let mut unpinned: HashMap<(GpuId, ModelId), u32> = HashMap::new();
    for l in released.iter().chain(fx.iter().filter_map(|f| match f {
        Effect::Expire { lease } | Effect::Revoke { lease, .. } => Some(lease),
        _ => None,
    })) {
        *unpinned.entry((l.gpu, l.model)).or_default() += 1;
    }
    for f in fx {
        match f {
            Effect::Load { load, .. } => {
                prop_assert!(m.loads.insert(*load), "load {load} issued twice");
            }
            Effect::Unload {
                gpu,
                model,
                reason: UnloadReason::Evicted { .. } | UnloadReason::Admin,
            } => {
                if let Some((pins, loading)) = before.get(&(*gpu, *model)) {
                    let ended = unpinned.get(&(*gpu, *model)).copied().unwrap_or(0);
                    prop_assert_eq!(
                        pins - ended,
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

fn run(
    gpus: Vec<u64>,
    models: Vec<ModelSpec>,
    policy: EvictionPolicy,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
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
        default_timeout: Duration::from_secs(2),
        lease_ttl: Duration::from_secs(3),
        policy,
    };
    let mut e = Engine::new(specs, models.clone(), settings).unwrap();
    let mut m = Model::default();
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
        let mut pressure_op = false;
        let mut released = None;
        match op.clone() {
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
                match e.admit(&req, now) {
                    Ok(Admission::Granted(l)) => {
                        m.leases.insert(l.id, token);
                        m.admissions_ended += 1;
                    }
                    Ok(Admission::Pending(t)) => {
                        m.pending.insert(t);
                        ticket_token.insert(t, token);
                    }
                    Err(_) => m.admissions_ended += 1,
                }
            }
            Op::Release { pick: p, by_owner } => {
                if let Some((id, token)) = pick(m.leases.clone(), p) {
                    prop_assert_eq!(
                        e.release(id, Some("intruder"), now),
                        Err(LeaseError::UnknownLease(id))
                    );
                    let who = if by_owner { Some(token.as_str()) } else { None };
                    released = e.lease(id);
                    // Err only if it expired at this very instant (an Expire effect says so).
                    if e.release(id, who, now).is_ok() {
                        m.leases.remove(&id);
                    }
                }
            }
            Op::KeepAlive { pick: p } => {
                if let Some((id, token)) = pick(m.leases.clone(), p)
                    && let Ok(exp) = e.keep_alive(id, Some(&token), now)
                {
                    prop_assert!(exp > now);
                }
            }
            Op::Tick { ms } => {
                now = now + Duration::from_millis(u64::from(ms));
                e.tick(now);
            }
            Op::LoadDone { pick: p, ok } => {
                if let Some(load) = pick(m.loads.clone(), p) {
                    m.loads.remove(&load);
                    let result = if ok { Ok(()) } else { Err("boom".to_string()) };
                    e.load_finished(load, result, now);
                }
            }
            Op::AllocateVram { gpu, mib } => {
                let token = format!("vram-{}", m.next_token);
                m.next_token += 1;
                e.allocate_vram(&token, GpuId((gpu % ngpu) as u32), mib, now)
                    .unwrap();
                m.tokens.push(token);
                pressure_op = true;
            }
            Op::AllocateSlots { slots } => {
                let token = format!("slots-{}", m.next_token);
                m.next_token += 1;
                e.allocate_slots(&token, slots, now).unwrap();
                m.tokens.push(token.clone());
                m.slot_tokens.push(token);
            }
            Op::Deallocate { pick: p } => {
                if let Some(token) = pick(m.tokens.clone(), p) {
                    e.deallocate(&token, now).unwrap();
                    m.tokens.retain(|t| *t != token);
                    m.slot_tokens.retain(|t| *t != token);
                }
            }
            Op::Health { gpu, healthy } => {
                e.set_health(GpuId((gpu % ngpu) as u32), healthy, now);
            }
            Op::External { gpu, mib } => {
                e.set_external_mib(GpuId((gpu % ngpu) as u32), mib, now);
                pressure_op = true;
            }
            Op::Preload { model, gpu } => {
                let _ = e.preload(
                    &models[model].name,
                    gpu.map(|g| GpuId((g % ngpu) as u32)),
                    now,
                );
            }
            Op::Evict { model } => {
                let _ = e.evict(&models[model].name, None, now);
            }
            Op::Cancel { pick: p } => {
                if let Some(t) = pick(m.pending.clone(), p) {
                    // False only if its deadline fell at this instant (a Reject says so).
                    if e.cancel(t, now) {
                        m.pending.remove(&t);
                        m.admissions_ended += 1;
                    }
                }
            }
        }
        // An operation that found nothing to act on still lets time pass.
        e.tick(now);
        let fx: Vec<Effect> = e.drain_effects().collect();
        if std::env::var_os("PROP_DEBUG").is_some() {
            eprintln!(
                "{now} {op:?}\n    -> {fx:?}\n    leases {:?}",
                m.leases.keys().map(|id| e.lease(*id)).collect::<Vec<_>>()
            );
        }
        let tt = ticket_token.clone();
        let finished_a_load = matches!(op, Op::LoadDone { .. });
        absorb(&mut m, &fx, &before, released, finished_a_load, &|t| {
            tt.get(&t).cloned()
        })?;

        // The ledger agrees with what it holds.
        if let Err(msg) = e.audit() {
            return Err(TestCaseError::fail(format!("after {op:?}: {msg}")));
        }
        let after = e.status();
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
        // No lease outlives its TTL past the last operation's `now`.
        for id in m.leases.keys() {
            let lease = e.lease(*id);
            prop_assert!(lease.is_some(), "{id} vanished without an effect");
            prop_assert!(lease.unwrap().expires_at > now, "{id} survived its TTL");
        }
        prop_assert_eq!(
            e.counters().ended(),
            m.admissions_ended,
            "every admission ends exactly once"
        );
    }

    // Drain: finish every load, release every lease, pass every deadline.
    for _ in 0..4 {
        for load in std::mem::take(&mut m.loads) {
            e.load_finished(load, Ok(()), now);
        }
        let fx: Vec<Effect> = e.drain_effects().collect();
        let tt = ticket_token.clone();
        absorb(&mut m, &fx, &HashMap::new(), None, true, &|t| {
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
        absorb(&mut m, &fx, &HashMap::new(), None, true, &|t| {
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
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn ledger_invariants_hold_under_lru(
        gpus in prop::collection::vec(8_000..24_000u64, 1..4),
        models in catalog(),
        ops in prop::collection::vec(op(), 1..300),
    ) {
        run(gpus, models, EvictionPolicy::Lru, ops)?;
    }

    #[test]
    fn ledger_invariants_hold_under_greedy_dual_size(
        gpus in prop::collection::vec(8_000..24_000u64, 1..4),
        models in catalog(),
        ops in prop::collection::vec(op(), 1..300),
    ) {
        run(gpus, models, EvictionPolicy::GreedyDualSize, ops)?;
    }
}
