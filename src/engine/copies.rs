//! What the model runtime tells about the copies the engine placed: the
//! memory a copy really occupies, and copies the runtime no longer holds.
//!
//! Both change the ledger from outside, the way other processes' memory
//! does, and settle the same way: nothing is refused (the memory is real, or
//! really gone), idle copies are evicted where a pool no longer fits, and
//! what cannot be evicted leaves the pool over-committed until it drains.

use super::admission::LeaseEnd;
use super::pool::ResidentState;
use super::{Engine, types::*};

impl Engine {
    /// The copy of `model` on `gpu` (ready or loading) really occupies
    /// `weights_mib`: the ledger counts that from now on instead of the
    /// catalog's figure. Growth settles as other processes' memory growth
    /// does ([`Engine::set_external_mib`]): idle copies are evicted in
    /// policy order, and a pool that still does not fit is over-committed.
    /// Returns the size the copy had; `None` when there is no such copy.
    pub fn resize_copy(
        &mut self,
        gpu: GpuId,
        model: ModelId,
        weights_mib: u64,
        now: Time,
    ) -> Option<u64> {
        self.tick(now);
        let pool = self.pools.get_mut(gpu.0 as usize)?;
        let resident = pool.residents.peek_mut(&model)?;
        let old = std::mem::replace(&mut resident.weights_mib, weights_mib);
        pool.weights_mib = pool.weights_mib - old + weights_mib;
        let external = pool.external_mib;
        // The same mechanism as external memory: evict, or over-commit.
        self.set_external_mib(gpu, external, now);
        Some(old)
    }

    /// The runtime no longer holds the ready copy of `model` on `gpu` (it
    /// restarted, or someone unloaded it behind the daemon's back). The copy
    /// leaves the ledger without an [`Effect::Unload`] — there is nothing to
    /// unload — and each lease on it is revoked
    /// ([`RevokeReason::RuntimeLost`]): it names a copy that is gone.
    /// Returns how many leases were revoked; `None` when there is no ready
    /// copy (a loading copy ends through [`Engine::load_finished`]).
    pub fn drop_copy(&mut self, gpu: GpuId, model: ModelId, now: Time) -> Option<usize> {
        self.tick(now);
        let resident = self.pools.get(gpu.0 as usize)?.residents.peek(&model)?;
        if resident.state != ResidentState::Ready {
            return None;
        }
        let mut leases: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(_, e)| e.lease.gpu == gpu && e.lease.model == model)
            .map(|(id, _)| *id)
            .collect();
        leases.sort();
        for &id in &leases {
            self.end_lease(id, LeaseEnd::Revoked(RevokeReason::RuntimeLost), now);
        }
        self.pool_mut(gpu).remove_resident(model);
        self.settle(now);
        Some(leases.len())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::super::{GpuSpec, Settings};
    use super::*;
    use crate::config::{Config, ModelSpec};

    fn t(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    fn model(name: &str, weights_mib: u64) -> ModelSpec {
        ModelSpec {
            name: name.into(),
            weights_mib,
            working_mib: 500,
            max_concurrency: 2,
            load_ms: 1000,
            task_ms: 100,
            task_types: vec![],
        }
    }

    /// GPUs of `mib` each; models a, b, c of 3000 MiB weights; a pod "pod" with 8 slots.
    fn engine(gpus: &[u64]) -> Engine {
        let gpus = gpus
            .iter()
            .enumerate()
            .map(|(i, &total_mib)| GpuSpec {
                uuid: format!("GPU-{i}"),
                name: "test".into(),
                total_mib,
            })
            .collect();
        let settings = Settings {
            reserve_mib: 0,
            ..Settings::from_config(&Config::dev())
        };
        let models = vec![model("a", 3000), model("b", 3000), model("c", 3000)];
        let mut e = Engine::new(gpus, models, settings).expect("valid engine");
        e.allocate_slots("pod", 8, t(0)).expect("fresh token");
        e
    }

    fn req(model: &str) -> AdmitRequest {
        AdmitRequest {
            token: "pod".into(),
            model: model.into(),
            task_type: None,
            priority: 0,
            wait: Wait::For(Duration::from_secs(10)),
        }
    }

    /// Admits `model` and finishes its load; the lease.
    fn lease(e: &mut Engine, model: &str, now: Time) -> Lease {
        match e.admit(&req(model), now).expect("admitted") {
            Admission::Granted(l) => l,
            Admission::Pending(ticket) => {
                let load = e
                    .pending_effects()
                    .iter()
                    .find_map(|f| match f {
                        Effect::Load { load, .. } => Some(*load),
                        _ => None,
                    })
                    .expect("a load");
                e.load_finished(load, Ok(()), now);
                e.drain_effects()
                    .find_map(|f| match f {
                        Effect::Grant { ticket: t, lease } if t == ticket => Some(lease),
                        _ => None,
                    })
                    .expect("granted")
            }
        }
    }

    fn weights(e: &Engine, gpu: u32) -> u64 {
        e.gpu_status(GpuId(gpu)).expect("gpu").weights_mib
    }

    #[test]
    fn a_measured_size_replaces_the_catalogs_in_the_ledger() {
        let mut e = engine(&[10_000]);
        let l = lease(&mut e, "a", t(0));
        assert_eq!(weights(&e, 0), 3000);
        assert_eq!(e.resize_copy(l.gpu, l.model, 3600, t(1)), Some(3000));
        assert_eq!(weights(&e, 0), 3600);
        let s = e.gpu_status(l.gpu).expect("gpu");
        assert_eq!(s.residents[0].weights_mib, 3600);
        assert_eq!(s.free_mib, 10_000 - 3600 - 500);
        e.audit().expect("consistent");
        let b = e.model_id("b").expect("b");
        assert_eq!(e.resize_copy(l.gpu, b, 1, t(2)), None, "no copy of b");
    }

    #[test]
    fn growth_evicts_idle_copies_like_external_memory_does() {
        let mut e = engine(&[10_000]);
        let a = lease(&mut e, "a", t(0));
        let b = lease(&mut e, "b", t(0));
        e.release(b.id, None, t(1)).expect("release b");
        e.drain_effects().for_each(drop);
        // a grows: 6600 + 3000 (b, idle) + 500 (a's task) > 10 000.
        e.resize_copy(a.gpu, a.model, 6600, t(2));
        let fx: Vec<Effect> = e.drain_effects().collect();
        assert!(
            fx.contains(&Effect::Unload {
                gpu: a.gpu,
                model: b.model,
                reason: UnloadReason::Evicted { for_model: None },
            }),
            "{fx:?}"
        );
        assert_eq!(weights(&e, 0), 6600);
        e.audit().expect("consistent");
    }

    #[test]
    fn growth_that_pinned_copies_cannot_make_room_for_over_commits_the_pool() {
        let mut e = engine(&[10_000]);
        let a = lease(&mut e, "a", t(0));
        let _b = lease(&mut e, "b", t(0));
        e.drain_effects().for_each(drop);
        e.resize_copy(a.gpu, a.model, 7000, t(1));
        let fx: Vec<Effect> = e.drain_effects().collect();
        assert!(
            fx.iter().any(|f| matches!(
                f,
                Effect::Overcommitted {
                    committed_mib: 11_000,
                    ..
                }
            )),
            "{fx:?}"
        );
        assert!(!fx.iter().any(|f| matches!(f, Effect::Unload { .. })));
        e.audit().expect("consistent");
        // Shrinking back drains it.
        e.resize_copy(a.gpu, a.model, 3000, t(2));
        assert!(
            e.drain_effects()
                .any(|f| f == Effect::Drained { gpu: a.gpu })
        );
        e.audit().expect("consistent");
    }

    #[test]
    fn a_dropped_idle_copy_leaves_the_ledger_without_an_unload() {
        let mut e = engine(&[10_000]);
        let a = lease(&mut e, "a", t(0));
        e.release(a.id, None, t(1)).expect("release");
        e.drain_effects().for_each(drop);
        assert_eq!(e.drop_copy(a.gpu, a.model, t(2)), Some(0));
        assert_eq!(weights(&e, 0), 0);
        assert!(
            !e.drain_effects()
                .any(|f| matches!(f, Effect::Unload { .. })),
            "nothing to unload: the runtime no longer holds it"
        );
        assert_eq!(e.drop_copy(a.gpu, a.model, t(3)), None, "already gone");
        e.audit().expect("consistent");
    }

    #[test]
    fn dropping_a_pinned_copy_revokes_its_leases_and_frees_their_memory() {
        let mut e = engine(&[10_000]);
        let first = lease(&mut e, "a", t(0));
        let second = lease(&mut e, "a", t(0));
        let other = lease(&mut e, "b", t(0));
        e.drain_effects().for_each(drop);
        assert_eq!(e.drop_copy(first.gpu, first.model, t(1)), Some(2));
        let revoked: Vec<LeaseId> = e
            .drain_effects()
            .filter_map(|f| match f {
                Effect::Revoke {
                    lease,
                    reason: RevokeReason::RuntimeLost,
                } => Some(lease.id),
                _ => None,
            })
            .collect();
        assert_eq!(revoked, [first.id, second.id]);
        assert_eq!(e.lease(first.id), None);
        assert_eq!(e.lease(other.id), Some(other), "other copies keep theirs");
        let s = e.gpu_status(first.gpu).expect("gpu");
        assert_eq!((s.weights_mib, s.working_mib), (3000, 500));
        e.audit().expect("consistent");
        // The model can be loaded again.
        assert!(matches!(
            e.admit(&req("a"), t(2)),
            Ok(Admission::Pending(_))
        ));
        e.audit().expect("consistent");
    }

    #[test]
    fn a_loading_copy_is_not_dropped_its_load_result_ends_it() {
        let mut e = engine(&[10_000]);
        let Ok(Admission::Pending(_)) = e.admit(&req("a"), t(0)) else {
            panic!("cold admission waits on a load");
        };
        let a = e.model_id("a").expect("a");
        assert_eq!(e.drop_copy(GpuId(0), a, t(1)), None);
        e.audit().expect("consistent");
    }

    #[test]
    fn freed_memory_places_queued_work() {
        let mut e = engine(&[7000]);
        let a = lease(&mut e, "a", t(0));
        // b needs 3500 MiB; 3500 is free, so b loads; c then queues.
        let _b = lease(&mut e, "b", t(0));
        let Ok(Admission::Pending(_)) = e.admit(&req("c"), t(1)) else {
            panic!("c waits for memory");
        };
        assert_eq!(e.queued(), 1);
        e.drop_copy(a.gpu, a.model, t(2));
        assert_eq!(e.queued(), 0, "c placed on the memory a's copy held");
        let c = e.model_id("c").expect("c");
        assert!(
            e.drain_effects()
                .any(|f| matches!(f, Effect::Load { model, .. } if model == c))
        );
        e.audit().expect("consistent");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Admit { model: usize },
        Release { pick: usize },
        LoadDone { pick: usize, ok: bool },
        Resize { gpu: u32, model: usize, mib: u64 },
        Drop { gpu: u32, model: usize },
        External { gpu: u32, mib: u64 },
        Tick { ms: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..3usize).prop_map(|model| Op::Admit { model }),
            2 => any::<usize>().prop_map(|pick| Op::Release { pick }),
            2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, ok)| Op::LoadDone { pick, ok }),
            2 => (0..2u32, 0..3usize, 0..9000u64).prop_map(|(gpu, model, mib)| Op::Resize { gpu, model, mib }),
            1 => (0..2u32, 0..3usize).prop_map(|(gpu, model)| Op::Drop { gpu, model }),
            1 => (0..2u32, 0..6000u64).prop_map(|(gpu, mib)| Op::External { gpu, mib }),
            1 => (0..20_000u64).prop_map(|ms| Op::Tick { ms }),
        ]
    }

    /// 256 cases from a fixed seed (deterministic in CI), unless
    /// `PROPTEST_RNG_SEED` says otherwise; `ENGINE_PROPTEST_LONG=1` runs 100×.
    fn config() -> ProptestConfig {
        let long = std::env::var_os("ENGINE_PROPTEST_LONG").is_some_and(|v| v != "0");
        let mut c = ProptestConfig::with_cases(if long { 25_600 } else { 256 });
        if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
            c.rng_seed = proptest::test_runner::RngSeed::Fixed(0x5EED_0012);
        }
        c.failure_persistence = None;
        c
    }

    proptest! {
        #![proptest_config(config())]

        /// Resizes and drops, among the other operations, keep every
        /// ledger consistent and never leave a lease on a copy that is gone
        /// (or loading again): a pinned copy is never evicted.
        #[test]
        fn resizes_and_drops_keep_the_ledger_consistent(ops in prop::collection::vec(op(), 1..60)) {
            let mut e = engine(&[10_000, 8000]);
            let mut now = 0u64;
            let mut leases: Vec<LeaseId> = Vec::new();
            let mut loads: Vec<LoadId> = Vec::new();
            for op in ops {
                now += 10;
                let at = t(now);
                match op {
                    Op::Admit { model } => {
                        if let Ok(Admission::Granted(l)) = e.admit(&req(["a", "b", "c"][model]), at) {
                            leases.push(l.id);
                        }
                    }
                    Op::Release { pick } if !leases.is_empty() => {
                        let id = leases.remove(pick % leases.len());
                        let _ = e.release(id, None, at);
                    }
                    Op::LoadDone { pick, ok } if !loads.is_empty() => {
                        let load = loads.remove(pick % loads.len());
                        let result = if ok { Ok(()) } else { Err("failed".to_owned()) };
                        e.load_finished(load, result, at);
                    }
                    Op::Release { .. } | Op::LoadDone { .. } => {}
                    Op::Resize { gpu, model, mib } => {
                        e.resize_copy(GpuId(gpu), ModelId(model as u32), mib, at);
                    }
                    Op::Drop { gpu, model } => {
                        e.drop_copy(GpuId(gpu), ModelId(model as u32), at);
                    }
                    Op::External { gpu, mib } => e.set_external_mib(GpuId(gpu), mib, at),
                    Op::Tick { ms } => {
                        now += ms;
                        e.tick(t(now));
                    }
                }
                for f in e.drain_effects() {
                    match f {
                        Effect::Load { load, .. } => loads.push(load),
                        Effect::Grant { lease, .. } => leases.push(lease.id),
                        _ => {}
                    }
                }
                leases.retain(|id| e.lease(*id).is_some());
                prop_assert_eq!(e.audit(), Ok(()));
                for id in &leases {
                    let l = e.lease(*id).expect("live");
                    let s = e.gpu_status(l.gpu).expect("gpu");
                    prop_assert!(
                        s.residents.iter().any(|r| r.model == l.model && !r.loading),
                        "lease {} on a copy that is gone", id
                    );
                }
            }
        }
    }
}
