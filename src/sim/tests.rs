//! Whole-run tests: the simulator against the real engine.

use std::time::Duration;

use super::*;
use crate::config::SimulatedGpu;
use crate::engine::Outcome;

/// Two minutes of the overload scenario: every code path busy.
fn short(seed: u64) -> Options {
    Options {
        seed,
        duration: Duration::from_secs(120),
        ..Scenario::Overload.options()
    }
}

fn without_timing(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with(TIMING_PREFIX))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The dev catalog on `gpus` (MiB each) with `reserve_mib` kept back.
fn config_with_gpus(gpus: &[u64], reserve_mib: u64) -> Config {
    let mut c = Config::dev();
    c.gpus.reserve_mib = reserve_mib;
    c.gpus.simulated = gpus
        .iter()
        .map(|&memory_mib| SimulatedGpu {
            name: format!("test-{memory_mib}"),
            memory_mib,
            count: 1,
        })
        .collect();
    c
}

fn assert_accounted(r: &Report) {
    assert!(r.anomalies.is_empty(), "anomalies: {:?}", r.anomalies);
    let (refused, rejected, cancelled) = (
        r.rejections.at_once,
        r.rejections.later,
        r.clients.cancelled,
    );
    assert_eq!(
        r.granted() + refused + rejected + cancelled,
        r.requests,
        "granted {} + refused {refused} + rejected {rejected} + cancelled {cancelled} != requests",
        r.granted(),
    );
    let c = &r.counters;
    assert_eq!(
        c.ended(),
        r.requests,
        "the engine ended every admission once"
    );
    assert_eq!(c.outcome(Outcome::GrantedWarm), r.grants.warm);
    assert_eq!(c.outcome(Outcome::GrantedCold), r.grants.cold);
    assert_eq!(c.outcome(Outcome::Cancelled), cancelled);
    let by_reason: u64 = r.rejections().iter().map(|(_, n)| n).sum();
    assert_eq!(by_reason, refused + rejected);
    assert_eq!(
        r.rejections.by_reason.values().sum::<u64>(),
        r.rejections.total
    );
    assert_eq!(c.loads_started, r.loads.cold_loads);
    assert_eq!(c.loaded_mib, r.loads.loaded_mib);
    assert_eq!(
        c.released + c.expired + c.revoked,
        r.granted(),
        "every lease ended"
    );
}

fn assert_bound_holds(r: &Report) {
    for c in r.bound.comparisons() {
        assert!(
            c.compulsory <= c.lower && c.lower <= c.upper && c.lower <= c.policy,
            "{:?}: compulsory {} ≤ lower {} ≤ upper {}, lower ≤ policy {} fails (seed {}, {:?})",
            c.cost,
            c.compulsory,
            c.lower,
            c.upper,
            c.policy,
            r.options.seed,
            r.policy
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_report_apart_from_the_timing_line() {
    let config = Config::dev();
    let a = run(&config, &short(7)).expect("runs");
    let b = run(&config, &short(7)).expect("runs");
    assert_eq!(without_timing(&a.text()), without_timing(&b.text()));
    let timing = a
        .text()
        .lines()
        .filter(|l| l.starts_with(TIMING_PREFIX))
        .count();
    assert_eq!(timing, 1, "one timing line");
    assert!(
        a.requests > 1000,
        "{} requests in 2 minutes at 20/s",
        a.requests
    );
}

#[test]
fn different_seeds_give_different_reports() {
    let config = Config::dev();
    let a = run(&config, &short(1)).expect("runs");
    let b = run(&config, &short(2)).expect("runs");
    assert_ne!(without_timing(&a.text()), without_timing(&b.text()));
}

#[test]
fn every_admission_is_accounted_for() {
    for policy in [EvictionPolicy::Lru, EvictionPolicy::GreedyDualSize] {
        for rate in [1.0, 20.0] {
            let options = Options {
                rate_per_s: rate,
                policy: Some(policy),
                ..short(3)
            };
            let r = run(&Config::dev(), &options).expect("runs");
            assert_accounted(&r);
            assert_eq!(r.policy, policy);
        }
    }
}

#[test]
fn the_bound_never_exceeds_what_either_policy_paid() {
    let configs = [
        Config::dev(),
        config_with_gpus(&[24576, 16384, 81920], 1024),
        config_with_gpus(&[12288], 0),
    ];
    for (i, config) in configs.iter().enumerate() {
        for seed in 1..=3 {
            for policy in [EvictionPolicy::Lru, EvictionPolicy::GreedyDualSize] {
                let options = Options {
                    rate_per_s: [2.0, 5.0, 20.0][i],
                    zipf: [1.0, 0.6, 1.2][seed as usize - 1],
                    variants: 4,
                    policy: Some(policy),
                    ..short(seed)
                };
                let r = run(config, &options).expect("runs");
                assert!(r.granted() > 0, "config {i} seed {seed}: nothing granted");
                assert_bound_holds(&r);
            }
        }
    }
}

#[test]
fn when_every_model_fits_at_once_the_policy_pays_exactly_the_bound() {
    // One 1 TiB GPU holds the whole expanded catalog plus every task; a
    // light load keeps copies' concurrency caps from queueing anyone out.
    let config = config_with_gpus(&[1 << 20], 0);
    let options = Options {
        duration: Duration::from_secs(600),
        rate_per_s: 0.5,
        ..short(4)
    };
    let r = run(&config, &options).expect("runs");
    assert_accounted(&r);
    assert_eq!(r.rejections.total, 0);
    assert_eq!(r.counters.evictions, 0);
    for c in r.bound.comparisons() {
        assert_eq!((c.lower, c.upper), (c.compulsory, c.compulsory));
        assert_eq!(c.policy, c.lower, "{:?}", c.cost);
        assert_eq!(c.ratio, Some(1.0));
    }
    assert_eq!(
        r.loads.cold_loads, r.bound.loads.compulsory,
        "one load per model"
    );
    assert_eq!(r.fairness.min_over_overall, Some(1.0));
}

#[test]
fn a_run_with_faults_injects_them_and_still_accounts_for_every_request() {
    let options = Options {
        duration: Duration::from_secs(1800),
        rate_per_s: 5.0,
        faults_per_hour: 30.0,
        fault_duration: Duration::from_secs(20),
        ..short(5)
    };
    let r = run(&Config::dev(), &options).expect("runs");
    assert!(
        r.faults.injected >= 5,
        "{} faults in 30 minutes at 30/h",
        r.faults.injected
    );
    assert!(
        r.faults.revoked > 0,
        "a failed GPU revokes the leases on it"
    );
    assert_accounted(&r);
    assert_bound_holds(&r);
}

#[test]
fn tasks_longer_than_half_the_ttl_keep_their_leases_alive() {
    let mut config = Config::dev();
    config.admission.lease_ttl = Duration::from_secs(2);
    let r = run(
        &config,
        &Options {
            rate_per_s: 2.0,
            ..short(6)
        },
    )
    .expect("runs");
    // sd3b tasks average 4 s: most outlive 1 s.
    assert!(r.clients.keep_alives > 0);
    assert_eq!(
        r.clients.expired, 0,
        "a client that keeps alive never loses its lease"
    );
    assert_accounted(&r);
}

#[test]
fn a_timeout_option_overrides_the_configs_default() {
    let options = Options {
        timeout: Some(Duration::from_secs(2)),
        ..short(8)
    };
    let r = run(&Config::dev(), &options).expect("runs");
    assert_eq!(r.workload.timeout_ms, 2000);
    let max = r.queue_wait_ms.expect("grants").max;
    assert!(max <= 2000, "a grant waited {max} ms with a 2 s timeout");
    assert_accounted(&r);
}

#[test]
fn out_of_range_options_are_refused_with_the_flag_named() {
    let config = Config::dev();
    for (options, flag) in [
        (
            Options {
                rate_per_s: 0.0,
                ..short(1)
            },
            "rate",
        ),
        (
            Options {
                zipf: f64::NAN,
                ..short(1)
            },
            "zipf",
        ),
        (
            Options {
                variants: 0,
                ..short(1)
            },
            "variants",
        ),
        (
            Options {
                pods: 0,
                ..short(1)
            },
            "pods",
        ),
        (
            Options {
                slots: 0,
                ..short(1)
            },
            "slots",
        ),
        (
            Options {
                faults_per_hour: -1.0,
                ..short(1)
            },
            "faults-per-hour",
        ),
    ] {
        match run(&config, &options) {
            Err(Error::BadOption { option, .. }) => assert_eq!(option, flag),
            other => panic!("{flag}: expected BadOption, got {other:?}"),
        }
    }
}

#[test]
fn a_config_without_simulated_gpus_is_refused() {
    let config = config_with_gpus(&[], 0);
    assert_eq!(run(&config, &short(1)).err(), Some(Error::NoSimulatedGpus));
}

#[test]
fn policy_names_round_trip() {
    for p in [EvictionPolicy::Lru, EvictionPolicy::GreedyDualSize] {
        assert_eq!(parse_policy(policy_name(p)), Ok(p));
    }
    assert!(parse_policy("fifo").is_err());
}

#[test]
fn the_per_model_table_adds_up_to_the_totals() {
    let r = run(&Config::dev(), &short(9)).expect("runs");
    assert_eq!(r.by_model.len(), Config::dev().models.len());
    assert_eq!(r.by_model[0].name, Config::dev().models[0].name);
    let sum = |f: fn(&ModelStats) -> u64| r.by_model.iter().map(f).sum::<u64>();
    assert_eq!(sum(|m| m.requests), r.requests);
    assert_eq!(sum(|m| m.granted), r.granted());
    assert_eq!(sum(|m| m.warm), r.grants.warm);
}

#[test]
fn the_json_report_is_the_report_serialized() {
    let r = run(&Config::dev(), &short(10)).expect("runs");
    let json: serde_json::Value = serde_json::from_str(&r.json()).expect("valid JSON");
    assert_eq!(json["scenario"], "overload");
    assert_eq!(json["seed"], 10);
    assert_eq!(json["requests"], r.requests);
    assert_eq!(json["grants"]["total"], r.granted());
    assert_eq!(json["rejections"]["total"], r.rejections.total);
    assert_eq!(json["by_model"].as_array().map(Vec::len), Some(4));
    assert_eq!(json["bound"]["load_ms"]["lower"], r.bound.load_ms.lower);
    for key in [
        "grant_ratio",
        "queue_wait_ms",
        "hit_rate",
        "gpu_busy",
        "fairness",
        "engine",
    ] {
        assert!(!json[key].is_null(), "missing {key}");
    }
}

#[test]
fn scenarios_name_their_workloads_and_flags_override_them() {
    assert_eq!(Scenario::parse("overload"), Ok(Scenario::Overload));
    assert!(Scenario::parse("busy").is_err());
    assert_eq!(Options::default().scenario, Scenario::Default);
    let (d, o) = (Scenario::Default.options(), Scenario::Overload.options());
    assert_eq!(o.rate_per_s, 20.0, "the first design's default workload");
    assert!(d.rate_per_s < o.rate_per_s);
    assert_eq!((d.pods, d.slots), (o.pods, o.slots));
    assert!(d.variants < o.variants);
}

#[test]
fn the_default_scenario_keeps_a_node_about_seventy_percent_busy() {
    let r = run(&Config::dev(), &Options::default()).expect("runs");
    let busy = r.gpu_busy.expect("busy");
    assert!((0.6..0.8).contains(&busy), "busy {busy}");
    assert!(
        r.grant_ratio.is_some_and(|g| g > 0.9),
        "{:?}",
        r.grant_ratio
    );
    assert_accounted(&r);
    assert_bound_holds(&r);
}

#[test]
fn memory_use_adds_up_and_shows_what_loads_cost() {
    let r = run(&Config::dev(), &short(3)).expect("runs");
    let m = r.memory_use.expect("time passed");
    let parts = [
        m.tasks,
        m.copies_in_use,
        m.loading_weights,
        m.load_waiters,
        m.idle_copies,
        m.free,
        m.held_for_head,
    ];
    assert!(parts.iter().all(|x| (0.0..=1.0).contains(x)), "{m:?}");
    let used = m.tasks + m.copies_in_use + m.loading_weights + m.load_waiters + m.idle_copies;
    assert!(used <= 1.0 + 1e-9, "more than the GPUs hold: {m:?}");
    assert!((used + m.free - 1.0).abs() < 1e-9, "{m:?}");
    assert!(m.held_for_head <= m.free + 1e-9, "{m:?}");
    // Overloaded: tasks run, copies load with admissions waiting on them.
    assert!(r.loads.cold_loads > 0);
    assert!(m.tasks > 0.0 && m.copies_in_use > 0.0, "{m:?}");
    assert!(m.loading_weights > 0.0 && m.load_waiters > 0.0, "{m:?}");
    let json: serde_json::Value = serde_json::from_str(&r.json()).expect("valid JSON");
    let tasks = json["memory_use"]["tasks"].as_f64().expect("a number");
    assert!((tasks - m.tasks).abs() < 1e-12, "{tasks} in JSON");
    assert!(r.text().contains("memory-time: running tasks"));
}
