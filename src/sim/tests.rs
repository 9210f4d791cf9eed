//! Whole-run tests: the simulator against the real engine.

use std::time::Duration;

use super::*;
use crate::config::SimulatedGpu;
use crate::engine::Outcome;

fn short(seed: u64) -> Options {
    Options {
        seed,
        duration: Duration::from_secs(120),
        ..Options::default()
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
    assert_eq!(
        r.granted() + r.refused + r.rejected + r.cancelled,
        r.requests,
        "granted {} + refused {} + rejected {} + cancelled {} != requests",
        r.granted(),
        r.refused,
        r.rejected,
        r.cancelled
    );
    let c = &r.counters;
    assert_eq!(
        c.ended(),
        r.requests,
        "the engine ended every admission once"
    );
    assert_eq!(c.outcome(Outcome::GrantedWarm), r.granted_warm);
    assert_eq!(c.outcome(Outcome::GrantedCold), r.granted_cold);
    assert_eq!(c.outcome(Outcome::Cancelled), r.cancelled);
    let rejected: u64 = r.rejections().iter().map(|(_, n)| n).sum();
    assert_eq!(rejected, r.refused + r.rejected);
    assert_eq!(c.loads_started, r.cold_loads);
    assert_eq!(c.loaded_mib, r.loaded_mib);
    assert_eq!(
        c.released + c.expired + c.revoked,
        r.granted(),
        "every lease ended"
    );
}

fn assert_bound_holds(r: &Report) {
    for c in &r.comparisons {
        assert!(
            c.bound.compulsory <= c.bound.value && c.bound.value <= c.policy,
            "{:?}: compulsory {} ≤ bound {} ≤ policy {} fails (seed {}, {:?})",
            c.cost,
            c.bound.compulsory,
            c.bound.value,
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
    assert_eq!(r.refused + r.rejected, 0);
    assert_eq!(r.counters.evictions, 0);
    for c in &r.comparisons {
        assert_eq!(c.bound.value, c.bound.compulsory);
        assert_eq!(c.policy, c.bound.value, "{:?}", c.cost);
        assert_eq!(c.ratio(), Some(1.0));
    }
    assert_eq!(
        r.cold_loads, r.comparisons[2].bound.compulsory,
        "one load per model"
    );
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
    assert!(r.faults >= 5, "{} faults in 30 minutes at 30/h", r.faults);
    assert!(r.revoked > 0, "a failed GPU revokes the leases on it");
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
    assert!(r.keep_alives > 0);
    assert_eq!(
        r.expired, 0,
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
    assert_eq!(r.timeout, Duration::from_secs(2));
    let max = r.wait_ms.expect("grants").max;
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
    assert_eq!(sum(|m| m.warm), r.granted_warm);
}

#[test]
fn the_json_report_holds_every_section_once() {
    let json = run(&Config::dev(), &short(10)).expect("runs").json();
    for key in [
        "\"seed\": 10",
        "\"requests\"",
        "\"grants\"",
        "\"hit_rate\"",
        "\"loads\"",
        "\"queue_wait_ms\"",
        "\"rejections\"",
        "\"bound\"",
        "\"ratio\"",
        "\"engine\"",
    ] {
        assert!(json.contains(key), "missing {key} in\n{json}");
    }
    assert_eq!(json.lines().filter(|l| l.contains("\"engine\"")).count(), 1);
    assert!(json.starts_with('{') && json.ends_with("}\n"));
}
