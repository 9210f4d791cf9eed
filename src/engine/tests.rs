//! Unit tests of the engine's semantics, one behaviour each.

use std::time::Duration;

use super::*;
use crate::config::{EvictionPolicy, ModelSpec};

fn model(
    name: &str,
    weights_mib: u64,
    working_mib: u64,
    max_concurrency: u32,
    load_ms: u64,
) -> ModelSpec {
    ModelSpec {
        name: name.into(),
        weights_mib,
        working_mib,
        max_concurrency,
        load_ms,
        task_ms: 100,
        task_types: vec![],
    }
}

fn settings(policy: EvictionPolicy) -> Settings {
    Settings {
        reserve_mib: 0,
        queue_limit: 4,
        default_timeout: Duration::from_secs(10),
        lease_ttl: Duration::from_secs(60),
        policy,
        ..Settings::default()
    }
}

fn engine_with(gpus: &[u64], models: Vec<ModelSpec>, policy: EvictionPolicy) -> Engine {
    let gpus = gpus
        .iter()
        .enumerate()
        .map(|(i, &total_mib)| GpuSpec {
            uuid: format!("GPU-{i}"),
            name: "test".into(),
            total_mib,
        })
        .collect();
    let mut e = Engine::new(gpus, models, settings(policy)).expect("valid engine");
    e.allocate_slots("pod", 8, t(0)).expect("fresh token");
    e
}

/// One GPU of 10 000 MiB; models a, b, c of 4000 MiB weights and 500 MiB working.
fn engine(gpus: &[u64]) -> Engine {
    engine_with(
        gpus,
        vec![
            model("a", 4000, 500, 2, 1000),
            model("b", 4000, 500, 2, 1000),
            model("c", 4000, 500, 2, 1000),
        ],
        EvictionPolicy::Lru,
    )
}

fn t(ms: u64) -> Time {
    Time::from_millis(ms)
}

fn req(model: &str) -> AdmitRequest {
    AdmitRequest {
        token: "pod".into(),
        model: model.into(),
        task_type: None,
        priority: 0,
        wait: Wait::Default,
    }
}

fn effects(e: &mut Engine) -> Vec<Effect> {
    e.drain_effects().collect()
}

fn audit(e: &Engine) {
    if let Err(msg) = e.audit() {
        panic!("ledger audit failed: {msg}");
    }
}

/// Admits `name`, completes its load if one starts, and returns the lease.
fn lease_for(e: &mut Engine, name: &str, now: Time) -> Lease {
    match e.admit(&req(name), now).expect("admitted") {
        Admission::Granted(l) => l,
        Admission::Pending(ticket) => {
            let load = effects(e)
                .into_iter()
                .find_map(|f| match f {
                    Effect::Load { load, .. } => Some(load),
                    _ => None,
                })
                .expect("a pending admission on an idle engine starts a load");
            assert!(e.load_finished(load, Ok(()), now));
            match effects(e).as_slice() {
                [Effect::Grant { ticket: got, lease }] if *got == ticket => *lease,
                other => panic!("expected the grant of {ticket}, got {other:?}"),
            }
        }
    }
}

fn unloads(fx: &[Effect]) -> Vec<(GpuId, String)> {
    fx.iter()
        .filter_map(|f| match f {
            Effect::Unload { gpu, model, .. } => Some((*gpu, format!("{model}"))),
            _ => None,
        })
        .collect()
}

#[test]
fn a_cold_admission_loads_the_model_and_the_next_one_is_warm() {
    let mut e = engine(&[10_000]);
    let Admission::Pending(ticket) = e.admit(&req("a"), t(0)).unwrap() else {
        panic!("a cold model cannot be granted at once");
    };
    let fx = effects(&mut e);
    let [Effect::Load { load, gpu, model }] = fx.as_slice() else {
        panic!("expected one Load, got {fx:?}");
    };
    assert_eq!((*gpu, *model), (GpuId(0), e.model_id("a").unwrap()));
    assert_eq!(
        e.status().gpus[0].working_mib,
        500,
        "working memory is reserved during the load"
    );
    assert!(e.load_finished(*load, Ok(()), t(1000)));
    let fx = effects(&mut e);
    let [Effect::Grant { ticket: got, lease }] = fx.as_slice() else {
        panic!("expected one Grant, got {fx:?}");
    };
    assert_eq!(*got, ticket);
    assert!(!lease.warm);
    assert_eq!(lease.waited(), Duration::from_secs(1));
    e.release(lease.id, Some("pod"), t(1500)).unwrap();

    let Admission::Granted(second) = e.admit(&req("a"), t(2000)).unwrap() else {
        panic!("a resident model with free memory is granted at once");
    };
    assert!(second.warm);
    assert!(effects(&mut e).is_empty(), "a warm grant loads nothing");
    assert_eq!(e.counters().outcome(Outcome::GrantedWarm), 1);
    assert_eq!(e.counters().outcome(Outcome::GrantedCold), 1);
    audit(&e);
}

#[test]
fn admissions_for_a_loading_model_join_the_load() {
    let mut e = engine(&[10_000]);
    let Admission::Pending(first) = e.admit(&req("a"), t(0)).unwrap() else {
        panic!()
    };
    let Admission::Pending(second) = e.admit(&req("a"), t(10)).unwrap() else {
        panic!()
    };
    let fx = effects(&mut e);
    let loads: Vec<_> = fx
        .iter()
        .filter(|f| matches!(f, Effect::Load { .. }))
        .collect();
    assert_eq!(loads.len(), 1, "one load serves both: {fx:?}");
    let Effect::Load { load, .. } = loads[0] else {
        unreachable!()
    };
    e.load_finished(*load, Ok(()), t(500));
    let granted: Vec<TicketId> = effects(&mut e)
        .into_iter()
        .filter_map(|f| match f {
            Effect::Grant { ticket, .. } => Some(ticket),
            _ => None,
        })
        .collect();
    assert_eq!(granted, vec![first, second]);
    assert_eq!(e.status().gpus[0].working_mib, 1000);
    audit(&e);
}

#[test]
fn a_loads_first_waiter_is_the_admission_that_started_it() {
    let mut e = engine(&[10_000]);
    let (gpu, load) = e.preload("a", None, t(0)).unwrap();
    assert_eq!(gpu, GpuId(0));
    assert!(e.load_waiters(load).is_empty(), "a preload has no waiter");
    let Admission::Pending(joined) = e.admit(&req("a"), t(1)).unwrap() else {
        panic!()
    };
    assert_eq!(e.load_waiters(load), [joined]);

    let Admission::Pending(first) = e.admit(&req("b"), t(2)).unwrap() else {
        panic!()
    };
    let Admission::Pending(second) = e.admit(&req("b"), t(3)).unwrap() else {
        panic!()
    };
    let b_load = effects(&mut e)
        .into_iter()
        .find_map(|f| match f {
            Effect::Load { load, model, .. } if model == e.model_id("b").unwrap() => Some(load),
            _ => None,
        })
        .expect("b is loading");
    assert_eq!(e.load_waiters(b_load), [first, second]);
    e.load_finished(b_load, Ok(()), t(500));
    assert!(e.load_waiters(b_load).is_empty(), "finished");
    audit(&e);
}

#[test]
fn eviction_takes_the_least_recently_used_idle_model() {
    let mut e = engine(&[10_000]);
    let a = lease_for(&mut e, "a", t(0));
    let b = lease_for(&mut e, "b", t(1));
    e.release(b.id, None, t(2)).unwrap();
    e.release(a.id, None, t(3)).unwrap(); // a is now the most recently used
    effects(&mut e);
    let Admission::Pending(_) = e.admit(&req("c"), t(4)).unwrap() else {
        panic!()
    };
    let fx = effects(&mut e);
    assert_eq!(
        unloads(&fx),
        vec![(GpuId(0), "model1".to_string())],
        "b (model1) is the LRU: {fx:?}"
    );
    assert!(matches!(
        fx[0],
        Effect::Unload {
            reason: UnloadReason::Evicted {
                for_model: Some(ModelId(2))
            },
            ..
        }
    ));
    audit(&e);
}

#[test]
fn a_pinned_model_is_never_evicted_and_the_request_waits_for_it() {
    let mut e = engine(&[9_000]);
    let a = lease_for(&mut e, "a", t(0));
    let b = lease_for(&mut e, "b", t(1));
    effects(&mut e);
    let Admission::Pending(ticket) = e.admit(&req("c"), t(2)).unwrap() else {
        panic!()
    };
    assert!(
        effects(&mut e).is_empty(),
        "nothing idle to evict, so nothing happens"
    );
    assert_eq!(e.status().queued, 1);
    e.release(b.id, Some("pod"), t(3)).unwrap();
    let fx = effects(&mut e);
    assert_eq!(unloads(&fx), vec![(GpuId(0), "model1".to_string())]);
    assert!(fx.iter().any(|f| matches!(
        f,
        Effect::Load {
            model: ModelId(2),
            ..
        }
    )));
    assert!(
        e.status().gpus[0]
            .residents
            .iter()
            .any(|r| r.name == "a" && r.pins == 1)
    );
    let _ = (a, ticket);
    audit(&e);
}

#[test]
fn placement_prefers_the_gpu_that_needs_the_fewest_evictions() {
    let mut e = engine(&[9_000, 9_000]);
    // gpu0 holds a and b idle; gpu1 holds c idle; a new copy of ... use max_concurrency
    let a = lease_for(&mut e, "a", t(0));
    let b = lease_for(&mut e, "b", t(0));
    e.release(a.id, None, t(1)).unwrap();
    e.release(b.id, None, t(1)).unwrap();
    let status = e.status();
    let per_gpu: Vec<usize> = status.gpus.iter().map(|g| g.residents.len()).collect();
    assert_eq!(
        per_gpu,
        vec![1, 1],
        "cold loads spread to the GPU with the most free memory"
    );
    effects(&mut e);
    let Admission::Pending(_) = e.admit(&req("c"), t(2)).unwrap() else {
        panic!()
    };
    let fx = effects(&mut e);
    assert!(
        unloads(&fx).is_empty(),
        "c fits beside one idle model without evicting: {fx:?}"
    );
    audit(&e);
}

#[test]
fn a_warm_copy_wins_over_an_empty_gpu() {
    let mut e = engine(&[10_000, 10_000]);
    let a = lease_for(&mut e, "a", t(0));
    e.release(a.id, None, t(1)).unwrap();
    let Admission::Granted(l) = e.admit(&req("a"), t(2)).unwrap() else {
        panic!()
    };
    assert_eq!(l.gpu, a.gpu);
    assert!(l.warm);
}

#[test]
fn a_model_at_max_concurrency_gets_a_second_copy_on_another_gpu() {
    let mut e = engine(&[10_000, 10_000]);
    let l1 = lease_for(&mut e, "a", t(0));
    let l2 = e.admit(&req("a"), t(1)).unwrap();
    let Admission::Granted(l2) = l2 else {
        panic!("second task fits the warm copy")
    };
    assert_eq!(l2.gpu, l1.gpu);
    effects(&mut e);
    let Admission::Pending(_) = e.admit(&req("a"), t(2)).unwrap() else {
        panic!()
    };
    let fx = effects(&mut e);
    let other = GpuId(1 - l1.gpu.0);
    assert!(
        fx.iter()
            .any(|f| matches!(f, Effect::Load { gpu, .. } if *gpu == other)),
        "max_concurrency 2 reached: a second copy loads elsewhere: {fx:?}"
    );
    audit(&e);
}

#[test]
fn the_queue_serves_higher_priority_first_then_arrival_order() {
    let mut e = engine(&[4_500]);
    let a = lease_for(&mut e, "a", t(0)); // fills the GPU
    let mut low = req("b");
    low.priority = 0;
    let mut high = req("c");
    high.priority = 5;
    let Admission::Pending(t_low) = e.admit(&low, t(1)).unwrap() else {
        panic!()
    };
    let Admission::Pending(t_high) = e.admit(&high, t(2)).unwrap() else {
        panic!()
    };
    effects(&mut e);
    e.release(a.id, None, t(3)).unwrap();
    let fx = effects(&mut e);
    assert!(
        fx.iter().any(|f| matches!(
            f,
            Effect::Load {
                model: ModelId(2),
                ..
            }
        )),
        "c (priority 5) goes first: {fx:?}"
    );
    assert!(!fx.iter().any(|f| matches!(
        f,
        Effect::Load {
            model: ModelId(1),
            ..
        }
    )));
    let _ = (t_low, t_high);
    audit(&e);
}

#[test]
fn a_full_queue_refuses_with_its_limit() {
    let mut e = engine(&[4_500]);
    lease_for(&mut e, "a", t(0));
    for i in 0..4 {
        assert!(matches!(
            e.admit(&req("b"), t(i)).unwrap(),
            Admission::Pending(_)
        ));
    }
    assert_eq!(
        e.admit(&req("b"), t(5)),
        Err(AdmitError::QueueFull { limit: 4 })
    );
    assert_eq!(e.counters().outcome(Outcome::QueueFull), 1);
}

#[test]
fn a_queued_admission_past_its_deadline_is_rejected_once() {
    let mut e = engine(&[4_500]);
    lease_for(&mut e, "a", t(0));
    let mut r = req("b");
    r.wait = Wait::For(Duration::from_millis(300));
    let Admission::Pending(ticket) = e.admit(&r, t(100)).unwrap() else {
        panic!()
    };
    effects(&mut e);
    // Fresh, its load (1 s) was worth starting, so it holds the head; a
    // millisecond later it is not, and the engine asks to decide again then.
    assert_eq!(e.head().map(|h| h.ticket), Some(ticket));
    assert_eq!(e.next_deadline(), Some(t(101)));
    e.tick(t(101));
    assert!(effects(&mut e).is_empty());
    assert_eq!(
        e.head(),
        None,
        "a load that cannot beat the deadline holds nothing"
    );
    assert_eq!(e.next_deadline(), Some(t(400)));
    e.tick(t(399));
    assert!(effects(&mut e).is_empty());
    e.tick(t(400));
    assert_eq!(
        effects(&mut e),
        vec![Effect::Reject {
            ticket,
            reason: Rejection::DeadlineExceeded {
                waited: Duration::from_millis(300)
            }
        }]
    );
    e.tick(t(10_000));
    assert!(
        !effects(&mut e)
            .iter()
            .any(|f| matches!(f, Effect::Reject { .. }))
    );
    assert_eq!(e.status().queued, 0);
    audit(&e);
}

#[test]
fn a_lease_expires_after_its_ttl_unless_kept_alive() {
    let mut e = engine(&[10_000]);
    let l = lease_for(&mut e, "a", t(0));
    assert_eq!(l.expires_at, t(60_000));
    assert_eq!(e.keep_alive(l.id, Some("pod"), t(50_000)), Ok(t(110_000)));
    e.tick(t(60_000));
    assert!(e.lease(l.id).is_some(), "kept alive past the first expiry");
    assert_eq!(e.next_deadline(), Some(t(110_000)));
    e.tick(t(110_000));
    let fx = effects(&mut e);
    assert!(
        matches!(fx.as_slice(), [Effect::Expire { lease }] if lease.id == l.id),
        "{fx:?}"
    );
    assert_eq!(
        e.release(l.id, Some("pod"), t(110_001)),
        Err(LeaseError::UnknownLease(l.id))
    );
    assert_eq!(e.status().gpus[0].working_mib, 0);
    assert_eq!(e.counters().expired, 1);
    audit(&e);
}

#[test]
fn another_pods_token_cannot_release_or_keep_alive_a_lease() {
    let mut e = engine(&[10_000]);
    e.allocate_slots("other", 1, t(0)).unwrap();
    let l = lease_for(&mut e, "a", t(0));
    assert_eq!(
        e.release(l.id, Some("other"), t(1)),
        Err(LeaseError::UnknownLease(l.id))
    );
    assert_eq!(
        e.keep_alive(l.id, Some("other"), t(1)),
        Err(LeaseError::UnknownLease(l.id))
    );
    assert!(e.lease(l.id).is_some());
}

#[test]
fn a_pod_waits_for_one_of_its_own_slots_or_fails_at_once_without_timeout() {
    let mut e = engine(&[10_000]);
    e.allocate_slots("one-slot", 1, t(0)).unwrap();
    let mut r = req("a");
    r.token = "one-slot".into();
    let first = lease_for_token(&mut e, &r, t(0));
    r.wait = Wait::NoQueue;
    assert_eq!(e.admit(&r, t(1)), Err(AdmitError::NoFreeSlot { slots: 1 }));
    r.wait = Wait::Default;
    let Admission::Pending(ticket) = e.admit(&r, t(2)).unwrap() else {
        panic!()
    };
    // Another pod is not held back by this pod's slot limit.
    let Admission::Granted(_) = e.admit(&req("a"), t(3)).unwrap() else {
        panic!()
    };
    e.release(first.id, None, t(4)).unwrap();
    let fx = effects(&mut e);
    assert!(
        fx.iter()
            .any(|f| matches!(f, Effect::Grant { ticket: got, .. } if *got == ticket)),
        "{fx:?}"
    );
    audit(&e);
}

fn lease_for_token(e: &mut Engine, r: &AdmitRequest, now: Time) -> Lease {
    match e.admit(r, now).unwrap() {
        Admission::Granted(l) => l,
        Admission::Pending(_) => {
            let load = effects(e)
                .into_iter()
                .find_map(|f| match f {
                    Effect::Load { load, .. } => Some(load),
                    _ => None,
                })
                .unwrap();
            e.load_finished(load, Ok(()), now);
            match effects(e).pop() {
                Some(Effect::Grant { lease, .. }) => lease,
                other => panic!("{other:?}"),
            }
        }
    }
}

#[test]
fn bad_requests_are_refused_with_what_to_do() {
    let mut e = engine_with(
        &[10_000],
        vec![
            ModelSpec {
                task_types: vec!["detect".into()],
                ..model("yolo", 12, 512, 8, 150)
            },
            model("huge", 9_000, 2_000, 1, 1),
        ],
        EvictionPolicy::Lru,
    );
    let mut r = req("nope");
    assert_eq!(
        e.admit(&r, t(0)),
        Err(AdmitError::UnknownModel {
            name: "nope".into(),
            known: vec!["yolo".into(), "huge".into()]
        })
    );
    r.model = "huge".into();
    assert_eq!(
        e.admit(&r, t(0)),
        Err(AdmitError::NeverFits {
            model: "huge".into(),
            need_mib: 11_000,
            largest_usable_mib: 10_000
        })
    );
    r.model = "yolo".into();
    r.task_type = Some("caption".into());
    assert!(matches!(
        e.admit(&r, t(0)),
        Err(AdmitError::TaskTypeNotServed { .. })
    ));
    r.task_type = Some("detect".into());
    r.token = "stolen".into();
    assert_eq!(e.admit(&r, t(0)), Err(AdmitError::UnknownToken));
    e.allocate_vram("vram-pod", GpuId(0), 1024, t(0)).unwrap();
    r.token = "vram-pod".into();
    assert_eq!(e.admit(&r, t(0)), Err(AdmitError::NotSlotAllocation));
}

#[test]
fn an_unhealthy_gpu_drops_residents_revokes_leases_and_moves_waiters() {
    let mut e = engine(&[10_000, 10_000]);
    let a = lease_for(&mut e, "a", t(0));
    let Admission::Pending(waiting) = e.admit(&req("b"), t(1)).unwrap() else {
        panic!()
    };
    let fx = effects(&mut e);
    let Some(Effect::Load {
        gpu: b_gpu,
        load: first_load,
        ..
    }) = fx
        .iter()
        .find(|f| matches!(f, Effect::Load { .. }))
        .cloned()
    else {
        panic!()
    };
    assert_ne!(b_gpu, a.gpu, "b goes to the emptier GPU");
    assert!(e.set_health(b_gpu, false, t(2)));
    let fx = effects(&mut e);
    assert!(fx.contains(&Effect::Unload {
        gpu: b_gpu,
        model: ModelId(1),
        reason: UnloadReason::GpuUnhealthy
    }));
    assert!(
        fx.iter()
            .any(|f| matches!(f, Effect::Load { gpu, model: ModelId(1), .. } if *gpu == a.gpu)),
        "the waiter moves to the healthy GPU: {fx:?}"
    );
    assert!(
        !e.load_finished(first_load, Ok(()), t(3)),
        "the dead GPU's late load result is ignored"
    );
    assert!(e.set_health(a.gpu, false, t(4)));
    let fx = effects(&mut e);
    assert!(fx.contains(&Effect::Revoke {
        lease: e.lease(a.id).unwrap_or(a),
        reason: RevokeReason::GpuUnhealthy
    }));
    assert!(
        fx.contains(&Effect::Reject {
            ticket: waiting,
            reason: Rejection::NoHealthyGpu
        }),
        "{fx:?}"
    );
    assert_eq!(e.admit(&req("a"), t(5)), Err(AdmitError::NoHealthyGpu));
    assert!(e.set_health(b_gpu, true, t(6)));
    assert!(
        matches!(e.admit(&req("a"), t(7)), Ok(Admission::Pending(_))),
        "a recovered GPU takes work"
    );
    audit(&e);
}

#[test]
fn a_failed_load_rejects_its_waiters_and_rolls_the_ledger_back() {
    let mut e = engine(&[10_000]);
    let Admission::Pending(ticket) = e.admit(&req("a"), t(0)).unwrap() else {
        panic!()
    };
    let Some(Effect::Load { load, .. }) = effects(&mut e).pop() else {
        panic!()
    };
    assert!(e.load_finished(load, Err("CUDA out of memory".into()), t(10)));
    assert_eq!(
        effects(&mut e),
        vec![Effect::Reject {
            ticket,
            reason: Rejection::LoadFailed {
                gpu: GpuId(0),
                message: "CUDA out of memory".into()
            }
        }]
    );
    let g = &e.status().gpus[0];
    assert_eq!((g.weights_mib, g.working_mib, g.residents.len()), (0, 0, 0));
    assert_eq!(e.counters().loads_failed, 1);
    audit(&e);
}

#[test]
fn a_vram_carve_out_evicts_idle_models_and_overcommits_when_they_are_pinned() {
    let mut e = engine(&[10_000]);
    let a = lease_for(&mut e, "a", t(0));
    let b = lease_for(&mut e, "b", t(0));
    e.release(b.id, None, t(1)).unwrap();
    effects(&mut e);
    e.allocate_vram("vram-pod", GpuId(0), 3_000, t(2)).unwrap();
    let fx = effects(&mut e);
    assert_eq!(
        unloads(&fx),
        vec![(GpuId(0), "model1".into())],
        "idle b makes room: {fx:?}"
    );
    assert!(e.status().gpus[0].overcommitted_since.is_none());
    e.allocate_vram("vram-pod-2", GpuId(0), 3_000, t(3))
        .unwrap();
    let fx = effects(&mut e);
    assert_eq!(
        fx,
        vec![Effect::Overcommitted {
            gpu: GpuId(0),
            committed_mib: 10_500,
            usable_mib: 10_000
        }],
        "a is pinned, so the pool over-commits"
    );
    let Admission::Pending(_) = e.admit(&req("b"), t(4)).unwrap() else {
        panic!()
    };
    assert!(
        effects(&mut e).is_empty(),
        "nothing new goes on an over-committed GPU"
    );
    e.release(a.id, None, t(5)).unwrap();
    let fx = effects(&mut e);
    assert!(fx.contains(&Effect::Drained { gpu: GpuId(0) }), "{fx:?}");
    audit(&e);
    e.deallocate("vram-pod", t(6)).unwrap();
    e.deallocate("vram-pod-2", t(6)).unwrap();
    assert_eq!(e.status().gpus[0].carved_mib, 0);
    audit(&e);
}

#[test]
fn external_memory_growth_evicts_idle_copies_first() {
    let mut e = engine(&[10_000]);
    let a = lease_for(&mut e, "a", t(0));
    e.release(a.id, None, t(1)).unwrap();
    effects(&mut e);
    e.set_external_mib(GpuId(0), 7_000, t(2));
    assert_eq!(unloads(&effects(&mut e)), vec![(GpuId(0), "model0".into())]);
    assert_eq!(e.status().gpus[0].usable_mib, 3_000);
    assert_eq!(
        e.admit(&req("a"), t(3)),
        Err(AdmitError::NeverFits {
            model: "a".into(),
            need_mib: 4_500,
            largest_usable_mib: 3_000
        })
    );
    audit(&e);
}

#[test]
fn a_released_allocation_takes_its_leases_and_waiters_with_it() {
    let mut e = engine(&[4_500]);
    let l = lease_for(&mut e, "a", t(0));
    let Admission::Pending(ticket) = e.admit(&req("b"), t(1)).unwrap() else {
        panic!()
    };
    effects(&mut e);
    assert_eq!(e.deallocate("pod", t(2)), Ok(AllocKind::Slots(8)));
    let fx = effects(&mut e);
    assert!(fx.iter().any(|f| matches!(f, Effect::Revoke { lease, reason: RevokeReason::AllocationReleased } if lease.id == l.id)));
    assert!(fx.contains(&Effect::Reject {
        ticket,
        reason: Rejection::AllocationReleased
    }));
    assert_eq!(e.admit(&req("a"), t(3)), Err(AdmitError::UnknownToken));
    audit(&e);
}

#[test]
fn greedy_dual_size_keeps_the_model_that_is_expensive_to_reload() {
    let models = vec![
        model("slow", 4000, 500, 2, 8_000),
        model("fast", 4000, 500, 2, 100),
        model("new", 4000, 500, 2, 1_000),
    ];
    for (policy, victim) in [
        (EvictionPolicy::Lru, "model0"),
        (EvictionPolicy::GreedyDualSize, "model1"),
    ] {
        let mut e = engine_with(&[10_000], models.clone(), policy);
        let slow = lease_for(&mut e, "slow", t(0));
        e.release(slow.id, None, t(1)).unwrap();
        let fast = lease_for(&mut e, "fast", t(2));
        e.release(fast.id, None, t(3)).unwrap();
        effects(&mut e);
        e.admit(&req("new"), t(4)).unwrap();
        assert_eq!(
            unloads(&effects(&mut e)),
            vec![(GpuId(0), victim.to_string())],
            "{policy:?}"
        );
    }
}

#[test]
fn a_blocked_head_reserves_its_gpu_while_later_work_uses_the_others() {
    let models = vec![
        model("filler", 4_000, 500, 1, 10),
        model("big", 6_000, 1_000, 1, 1_000),
        model("small", 100, 100, 64, 10),
    ];
    let mut e = engine_with(&[10_000, 10_000], models, EvictionPolicy::Lru);
    let f0 = lease_for(&mut e, "filler", t(0));
    let f1 = lease_for(&mut e, "filler", t(0));
    assert_eq!(
        (f0.gpu, f1.gpu),
        (GpuId(0), GpuId(1)),
        "max_concurrency 1: one copy per GPU"
    );
    let s = lease_for(&mut e, "small", t(1));
    assert_eq!(s.gpu, GpuId(0));
    e.release(s.id, None, t(2)).unwrap();
    effects(&mut e);

    let Admission::Pending(big) = e.admit(&req("big"), t(3)).unwrap() else {
        panic!()
    };
    assert!(
        effects(&mut e).is_empty(),
        "big fits nowhere while both fillers are pinned"
    );
    let Admission::Pending(_) = e.admit(&req("small"), t(4)).unwrap() else {
        panic!("small queues behind big, even though it is warm on gpu0")
    };
    let fx = effects(&mut e);
    assert!(
        matches!(
            fx.as_slice(),
            [Effect::Load {
                gpu: GpuId(1),
                model: ModelId(2),
                ..
            }]
        ),
        "big reserves gpu0, so small loads on gpu1 instead: {fx:?}"
    );
    e.release(f0.id, None, t(5)).unwrap();
    let fx = effects(&mut e);
    assert_eq!(
        unloads(&fx),
        vec![(GpuId(0), "model2".into()), (GpuId(0), "model0".into())],
        "idle copies make room, least recently used first (the release made filler the MRU): {fx:?}"
    );
    assert!(fx.iter().any(|f| matches!(
        f,
        Effect::Load {
            gpu: GpuId(0),
            model: ModelId(1),
            ..
        }
    )));
    let _ = big;
    audit(&e);
}

#[test]
fn the_operator_preloads_and_evicts_idle_copies_only() {
    let mut e = engine(&[10_000, 10_000]);
    let (gpu, load) = e.preload("a", Some(GpuId(1)), t(0)).unwrap();
    assert_eq!(gpu, GpuId(1));
    assert_eq!(
        e.preload("a", None, t(0)),
        Err(AdminError::AlreadyResident {
            model: "a".into(),
            gpu: GpuId(1)
        })
    );
    assert_eq!(
        e.evict("a", None, t(1)),
        Err(AdminError::Loading {
            model: "a".into(),
            gpu: GpuId(1)
        })
    );
    e.load_finished(load, Ok(()), t(2));
    let l = lease_for(&mut e, "a", t(3));
    assert!(
        l.warm && l.gpu == GpuId(1),
        "the preloaded copy serves warm"
    );
    assert_eq!(
        e.evict("a", None, t(4)),
        Err(AdminError::Pinned {
            model: "a".into(),
            gpu: GpuId(1),
            pins: 1
        })
    );
    e.release(l.id, None, t(5)).unwrap();
    effects(&mut e);
    assert_eq!(e.evict("a", None, t(6)), Ok(vec![GpuId(1)]));
    assert_eq!(
        effects(&mut e),
        vec![Effect::Unload {
            gpu: GpuId(1),
            model: ModelId(0),
            reason: UnloadReason::Admin
        }]
    );
    assert_eq!(
        e.evict("a", None, t(7)),
        Err(AdminError::NotResident {
            model: "a".into(),
            gpu: None
        })
    );
    audit(&e);
}

#[test]
fn shutdown_answers_every_pending_admission_and_unloads_everything() {
    let mut e = engine(&[4_500]);
    lease_for(&mut e, "a", t(0));
    let Admission::Pending(queued) = e.admit(&req("b"), t(1)).unwrap() else {
        panic!()
    };
    effects(&mut e);
    e.shutdown(t(2));
    let fx = effects(&mut e);
    assert!(fx.contains(&Effect::Reject {
        ticket: queued,
        reason: Rejection::ShuttingDown
    }));
    assert!(fx.contains(&Effect::Unload {
        gpu: GpuId(0),
        model: ModelId(0),
        reason: UnloadReason::Shutdown
    }));
    assert_eq!(e.admit(&req("a"), t(3)), Err(AdmitError::ShuttingDown));
}

#[test]
fn restored_residents_serve_warm_at_once() {
    let mut e = engine(&[10_000]);
    e.restore_resident(GpuId(0), ModelId(2), t(0)).unwrap();
    let Admission::Granted(l) = e.admit(&req("c"), t(1)).unwrap() else {
        panic!()
    };
    assert!(l.warm);
    audit(&e);
}

#[test]
fn cancelling_a_waiting_admission_frees_what_it_held() {
    let mut e = engine(&[10_000]);
    let Admission::Pending(ticket) = e.admit(&req("a"), t(0)).unwrap() else {
        panic!()
    };
    assert!(e.cancel(ticket, t(1)));
    assert!(!e.cancel(ticket, t(1)));
    let g = &e.status().gpus[0];
    assert_eq!(g.working_mib, 0);
    assert_eq!(g.residents[0].pins, 0, "the load goes on, unpinned");
    audit(&e);
}

#[test]
fn a_head_waiting_for_a_copy_at_max_concurrency_does_not_hold_back_other_models() {
    let models = vec![model("a", 100, 100, 1, 10), model("b", 100, 100, 1, 10)];
    let mut e = engine_with(&[100_000], models, EvictionPolicy::Lru);
    let held = lease_for(&mut e, "a", t(0));
    let Admission::Pending(_) = e.admit(&req("a"), t(20)).unwrap() else {
        panic!()
    };
    assert!(
        effects(&mut e).is_empty(),
        "a's only copy is at max_concurrency 1"
    );
    let Admission::Pending(_) = e.admit(&req("b"), t(30)).unwrap() else {
        panic!()
    };
    let fx = effects(&mut e);
    assert!(
        matches!(
            fx.as_slice(),
            [Effect::Load {
                model: ModelId(1),
                ..
            }]
        ),
        "b loads at once; a reserves only its working memory: {fx:?}"
    );
    e.release(held.id, None, t(40)).unwrap();
    assert!(
        effects(&mut e)
            .iter()
            .any(|f| matches!(f, Effect::Grant { .. })),
        "a gets its copy as soon as the pin ends"
    );
    audit(&e);
}

#[test]
fn a_queued_admission_does_not_start_a_load_it_cannot_wait_for() {
    let models = vec![
        model("a", 4_000, 4_000, 1, 10),
        model("sd", 5_000, 500, 1, 8_000),
    ];
    let mut e = engine_with(&[10_000], models, EvictionPolicy::Lru);
    let a = lease_for(&mut e, "a", t(0));
    let Admission::Pending(sd) = e.admit(&req("sd"), t(100)).unwrap() else {
        panic!()
    };
    effects(&mut e);
    // 9.4 s into its 10 s wait the memory frees, but an 8 s load would end too late.
    e.release(a.id, None, t(9_500)).unwrap();
    let fx = effects(&mut e);
    assert!(
        fx.is_empty(),
        "no load and no eviction for an admission that cannot wait: {fx:?}"
    );
    e.tick(t(10_100));
    assert_eq!(
        effects(&mut e),
        vec![Effect::Reject {
            ticket: sd,
            reason: Rejection::DeadlineExceeded {
                waited: Duration::from_millis(10_000)
            }
        }]
    );
    // A fresh admission still warms the model, whatever its timeout.
    let mut quick = req("sd");
    quick.wait = Wait::For(Duration::from_secs(1));
    let Admission::Pending(_) = e.admit(&quick, t(11_000)).unwrap() else {
        panic!()
    };
    assert!(effects(&mut e).iter().any(|f| matches!(
        f,
        Effect::Load {
            model: ModelId(1),
            ..
        }
    )));
    audit(&e);
}

#[test]
fn a_load_that_finishes_at_its_waiters_deadline_grants_it() {
    // The load window counts a load that ends at the deadline as in time, so
    // the load result wins over a deadline that falls at the same instant.
    let mut e = engine(&[10_000]);
    let mut r = req("a");
    r.wait = Wait::For(Duration::from_millis(1000));
    let Admission::Pending(ticket) = e.admit(&r, t(0)).unwrap() else {
        panic!("a cold model is loaded first");
    };
    let load = effects(&mut e)
        .into_iter()
        .find_map(|f| match f {
            Effect::Load { load, .. } => Some(load),
            _ => None,
        })
        .expect("a load");
    assert_eq!(e.next_deadline(), Some(t(1000)));
    assert!(e.load_finished(load, Ok(()), t(1000)));
    let fx = effects(&mut e);
    assert!(
        matches!(fx.as_slice(), [Effect::Grant { ticket: got, .. }] if *got == ticket),
        "{fx:?}"
    );
    audit(&e);
}

#[test]
fn a_keep_alive_at_the_expiry_instant_extends_the_lease() {
    let mut e = engine(&[10_000]);
    let l = lease_for(&mut e, "a", t(0));
    assert_eq!(
        e.keep_alive(l.id, Some("pod"), l.expires_at),
        Ok(t(120_000))
    );
    assert!(effects(&mut e).is_empty(), "no Expire");
    assert_eq!(e.counters().expired, 0);
}

#[test]
fn a_release_at_the_expiry_instant_counts_as_a_release() {
    let mut e = engine(&[10_000]);
    let l = lease_for(&mut e, "a", t(0));
    assert_eq!(e.release(l.id, Some("pod"), l.expires_at), Ok(()));
    assert!(effects(&mut e).is_empty(), "no Expire");
    assert_eq!((e.counters().released, e.counters().expired), (1, 0));
}

#[test]
fn a_deadline_still_ends_a_wait_when_time_passes_it() {
    // The same-instant rule is for events at the deadline: a tick there, or
    // any call after it, still rejects.
    let mut e = engine(&[4_500]);
    lease_for(&mut e, "a", t(0));
    let mut r = req("b");
    r.wait = Wait::For(Duration::from_millis(300));
    let Admission::Pending(ticket) = e.admit(&r, t(0)).unwrap() else {
        panic!()
    };
    effects(&mut e);
    assert!(e.allocate_slots("late", 1, t(301)).is_ok());
    assert!(matches!(
        effects(&mut e).as_slice(),
        [Effect::Reject { ticket: got, .. }] if *got == ticket
    ));
}

fn engine_with_pod_limits(pod_queue_limit: usize, pod_loads: u32) -> Engine {
    let gpus = vec![GpuSpec {
        uuid: "GPU-0".into(),
        name: "test".into(),
        total_mib: 10_000,
    }];
    let models = vec![
        model("a", 4000, 500, 1, 1000),
        model("b", 4000, 500, 2, 1000),
        model("c", 1000, 500, 2, 1000),
        model("d", 1000, 500, 2, 1000),
    ];
    let s = Settings {
        queue_limit: 8,
        pod_queue_limit,
        pod_loads,
        ..settings(EvictionPolicy::Lru)
    };
    let mut e = Engine::new(gpus, models, s).expect("valid engine");
    e.allocate_slots("flood", 1, t(0)).expect("fresh token");
    e.allocate_slots("other", 2, t(0)).expect("fresh token");
    e
}

fn req_by(token: &str, model: &str, wait: Wait) -> AdmitRequest {
    AdmitRequest {
        token: token.into(),
        wait,
        ..req(model)
    }
}

#[test]
fn a_pod_over_its_queue_limit_is_refused_with_its_limit_and_others_still_queue() {
    let mut e = engine_with_pod_limits(2, 4);
    let flood = |m: &str| req_by("flood", m, Wait::For(Duration::from_secs(5)));
    // Its only slot is held; two more wait; the third is over its bound.
    lease_for_token(&mut e, &flood("a"), t(0));
    assert!(matches!(
        e.admit(&flood("a"), t(1)),
        Ok(Admission::Pending(_))
    ));
    assert!(matches!(
        e.admit(&flood("b"), t(2)),
        Ok(Admission::Pending(_))
    ));
    for i in 0..10 {
        assert_eq!(
            e.admit(&flood("b"), t(3 + i)),
            Err(AdmitError::PodQueueFull { limit: 2 })
        );
    }
    assert_eq!(e.counters().outcome(Outcome::PodQueueFull), 10);
    // Another pod is not affected: it queues behind the busy copy of `a`...
    let other = req_by("other", "a", Wait::For(Duration::from_secs(5)));
    assert!(matches!(e.admit(&other, t(20)), Ok(Admission::Pending(_))));
    // ...and is granted at once where memory allows.
    let warm = req_by("other", "c", Wait::NoQueue);
    assert!(matches!(
        e.admit(&warm, t(21)),
        Ok(Admission::Pending(_)) | Ok(Admission::Granted(_))
    ));
    audit(&e);
}

fn loads(fx: &[Effect]) -> Vec<(LoadId, ModelId)> {
    fx.iter()
        .filter_map(|f| match f {
            Effect::Load { load, model, .. } => Some((*load, *model)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_pod_at_its_load_limit_waits_for_its_own_loads_and_a_cancelled_admission_still_counts() {
    let mut e = engine_with_pod_limits(8, 1);
    let other = |m: &str, wait| req_by("other", m, wait);
    let Admission::Pending(first) = e.admit(&other("c", Wait::Default), t(0)).unwrap() else {
        panic!("c is cold");
    };
    let [(load_c, _)] = loads(&effects(&mut e))[..] else {
        panic!("one load");
    };
    // The caller leaves; its load goes on and still counts for the pod.
    assert!(e.cancel(first, t(1)));
    assert_eq!(
        e.admit(&other("d", Wait::NoQueue), t(2)),
        Err(AdmitError::PodLoadLimit { limit: 1 })
    );
    // With a timeout it waits, and starts nothing yet.
    let Admission::Pending(second) = e.admit(&other("d", Wait::Default), t(3)).unwrap() else {
        panic!("waits");
    };
    assert!(loads(&effects(&mut e)).is_empty());
    // Another pod is not bound by this pod's loads.
    e.allocate_slots("third", 1, t(4)).unwrap();
    let third = req_by("third", "a", Wait::NoQueue);
    assert!(matches!(e.admit(&third, t(5)), Ok(Admission::Pending(_))));
    assert_eq!(loads(&effects(&mut e)).len(), 1);
    // The first load ends: the waiting admission may now load `d`.
    assert!(e.load_finished(load_c, Ok(()), t(1000)));
    let d = e.model_id("d").unwrap();
    assert!(loads(&effects(&mut e)).iter().any(|(_, m)| *m == d));
    assert_eq!(e.pending(second).and_then(|p| p.loading_on), Some(GpuId(0)));
    audit(&e);
}

#[test]
fn the_head_goes_to_the_least_served_model_even_behind_older_work() {
    let models = vec![
        model("a", 4000, 500, 2, 1000),
        model("b", 4000, 500, 2, 1000),
        model("c", 4000, 500, 2, 1000),
        model("d", 4000, 500, 2, 1000),
    ];
    let mut e = engine_with(&[10_000], models, EvictionPolicy::Lru);
    // c is well served: five leases, then the operator evicts it.
    for i in 0..5 {
        let l = lease_for(&mut e, "c", t(i));
        e.release(l.id, None, t(i)).unwrap();
    }
    e.evict("c", None, t(10)).unwrap();
    let _a = lease_for(&mut e, "a", t(11));
    let _b = lease_for(&mut e, "b", t(12)); // 9 000 of 10 000 MiB held
    effects(&mut e);
    let wait = |m: &str, ms| AdmitRequest {
        wait: Wait::For(Duration::from_millis(ms)),
        ..req(m)
    };
    // The first waiter of c becomes the head; it will give up soon.
    let Admission::Pending(c1) = e.admit(&wait("c", 1_500), t(20)).unwrap() else {
        panic!("c waits")
    };
    let Admission::Pending(c2) = e.admit(&wait("c", 5_000), t(21)).unwrap() else {
        panic!("c waits")
    };
    let Admission::Pending(d) = e.admit(&wait("d", 5_000), t(22)).unwrap() else {
        panic!("d waits")
    };
    assert_eq!(e.head().map(|h| h.ticket), Some(c1));
    e.tick(t(1_520)); // c1 gives up: a new head is chosen
    assert!(matches!(
        effects(&mut e).as_slice(),
        [Effect::Reject { ticket, .. }] if *ticket == c1
    ));
    assert_eq!(e.head().map(|h| h.ticket), Some(d), "d was never served");
    // Memory for one new copy frees up: it goes to d, not to the older c2.
    e.release(_a.id, None, t(1_530)).unwrap();
    let fx = effects(&mut e);
    let d_id = e.model_id("d").unwrap();
    assert!(
        fx.iter()
            .any(|f| matches!(f, Effect::Load { model, .. } if *model == d_id)),
        "{fx:?}"
    );
    assert_eq!(
        e.pending(c2).and_then(|p| p.loading_on),
        None,
        "c2 still queued"
    );
    audit(&e);
}

/// A node full of warm tasks with 256 admissions waiting (the engine
/// bench's saturated queue): every release places exactly one waiting
/// admission, in queue order among those that fit, and the queue stays full.
#[test]
fn a_saturated_queue_places_one_admission_per_release() {
    let models: Vec<ModelSpec> = (0..8)
        .map(|i| model(&format!("m{i}"), 1024, 1024, 64, 1000))
        .collect();
    let settings = Settings {
        reserve_mib: 0,
        queue_limit: 256,
        pod_queue_limit: 256,
        ..Settings::default()
    };
    let gpu = GpuSpec {
        uuid: "GPU-0".into(),
        name: "test".into(),
        total_mib: 40 * 1024,
    };
    let mut e = Engine::new(vec![gpu], models, settings).expect("valid engine");
    let now = t(0);
    // One task per model holds its copy all along, so no copy ever idles.
    e.allocate_slots("pinner", 8, now).expect("fresh token");
    for i in 0..8 {
        let (_, load) = e.preload(&format!("m{i}"), None, now).expect("room");
        assert!(e.load_finished(load, Ok(()), now));
        let req = req_by("pinner", &format!("m{i}"), Wait::Default);
        assert!(matches!(e.admit(&req, now), Ok(Admission::Granted(_))));
    }
    let pods: Vec<String> = (0..64).map(|p| format!("pod-{p}")).collect();
    for p in &pods {
        e.allocate_slots(p, 4, now).expect("fresh token");
    }
    let mut n = 0usize;
    let mut admit = |e: &mut Engine| {
        n += 1;
        let req = req_by(
            &pods[(n * 7) % pods.len()],
            &format!("m{}", (n * 5) % 8),
            Wait::Default,
        );
        e.admit(&req, now).expect("room in the queue")
    };
    let mut running = std::collections::VecDeque::new();
    while e.queued() < 256 {
        if let Admission::Granted(l) = admit(&mut e) {
            running.push_back(l);
        }
    }
    e.drain_effects().for_each(drop);
    assert_eq!(running.len(), 24);
    for _ in 0..300 {
        let l = running.pop_front().expect("a running task");
        e.release(l.id, None, now).expect("live");
        let granted: Vec<Lease> = e
            .drain_effects()
            .filter_map(|f| match f {
                Effect::Grant { lease, .. } => Some(lease),
                _ => None,
            })
            .collect();
        assert_eq!(granted.len(), 1, "one release, one placement");
        running.extend(granted);
        assert!(matches!(admit(&mut e), Admission::Pending(_)));
        assert_eq!(e.queued(), 256);
        e.audit().expect("ledgers agree");
    }
}

/// A head that needs a new copy holds only what it needs itself: its load
/// starts as soon as that is free, and a second admission of its model joins
/// the copy when its own working memory frees up, not before the load.
#[test]
fn a_cold_head_starts_its_load_once_its_own_need_is_free() {
    let models = vec![
        model("filler", 2_000, 3_000, 3, 10),
        model("big", 4_000, 2_000, 2, 1_000),
    ];
    let mut e = engine_with(&[12_000], models, EvictionPolicy::Lru);
    // Three filler tasks: 11 000 of 12 000 MiB.
    let f: Vec<Lease> = (0..3).map(|i| lease_for(&mut e, "filler", t(i))).collect();
    effects(&mut e);
    // A short waiter becomes the head; when it gives up, b1 follows it with
    // b2 already waiting beside it.
    let brief = AdmitRequest {
        wait: Wait::For(Duration::from_millis(5)),
        ..req("big")
    };
    let Admission::Pending(_) = e.admit(&brief, t(10)).unwrap() else {
        panic!("big waits")
    };
    let Admission::Pending(b1) = e.admit(&req("big"), t(11)).unwrap() else {
        panic!("big waits")
    };
    let Admission::Pending(b2) = e.admit(&req("big"), t(12)).unwrap() else {
        panic!("big waits")
    };
    e.tick(t(16));
    effects(&mut e);
    assert_eq!(
        e.head().map(|h| (h.ticket, h.reserved_mib)),
        Some((b1, 6_000)),
        "weights and its own working memory, nothing for b2"
    );
    e.release(f[0].id, None, t(20)).unwrap(); // 4 000 free: not yet
    assert!(effects(&mut e).is_empty());
    e.release(f[1].id, None, t(21)).unwrap(); // 7 000 free: the head's 6 000
    let big = e.model_id("big").unwrap();
    let fx = effects(&mut e);
    assert!(
        fx.iter()
            .any(|x| matches!(x, Effect::Load { model, .. } if *model == big)),
        "the head's load starts without waiting for b2's working memory: {fx:?}"
    );
    assert!(e.pending(b1).and_then(|p| p.loading_on).is_some());
    assert_eq!(
        e.pending(b2).and_then(|p| p.loading_on),
        None,
        "1 000 MiB left: b2 waits for its 2 000"
    );
    e.release(f[2].id, None, t(22)).unwrap();
    effects(&mut e);
    assert!(
        e.pending(b2).and_then(|p| p.loading_on).is_some(),
        "b2 joins the loading copy once its working memory is free"
    );
    audit(&e);
}
