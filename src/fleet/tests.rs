//! The fleet simulator: deterministic, sound, and scoring with the
//! extender's own code.

use std::time::Duration;

use serde_json::{Value, json};

use super::world::snapshot;
use super::*;
use crate::extender::{self, Extender, NodeCacheMode, Settings};

/// A small fleet that runs in a blink: 12 nodes × 2 GPUs, 40 model
/// variants, four simulated minutes after one of warm-up.
fn small(routing: Routing, seed: u64) -> Options {
    Options {
        seed,
        duration: Duration::from_secs(300),
        warmup: Duration::from_secs(60),
        rate_per_s: 1.5,
        variants: 10,
        nodes: 12,
        gpus_per_node: 2,
        routing,
        ..Options::default()
    }
}

fn run_small(routing: Routing, seed: u64) -> Report {
    run(&Config::dev(), &small(routing, seed)).expect("runs")
}

#[test]
fn the_same_seed_gives_the_same_report_and_another_seed_another() {
    let a = run_small(Routing::Warm, 7);
    assert_eq!(a, run_small(Routing::Warm, 7));
    assert_eq!(a.json(), run_small(Routing::Warm, 7).json());
    assert_ne!(a.measured, run_small(Routing::Warm, 8).measured);
}

#[test]
fn both_routings_see_the_same_pods_and_every_pod_finishes() {
    let spread = run_small(Routing::Spread, 3);
    let warm = run_small(Routing::Warm, 3);
    assert_eq!(spread.measured.pods, warm.measured.pods);
    assert_eq!(spread.including_warmup.pods, warm.including_warmup.pods);
    assert!(
        spread.including_warmup.pods > 300,
        "{}",
        spread.including_warmup.pods
    );
    for r in [&spread, &warm] {
        assert_eq!(r.anomalies, Vec::<String>::new());
        let all = &r.including_warmup;
        assert_eq!(
            all.grants + all.rejections,
            all.tasks,
            "every task ends once"
        );
        assert_eq!(
            all.first_tasks_warm + (all.pods - all.first_tasks_warm),
            all.pods
        );
    }
}

#[test]
fn warm_routing_loads_fewer_copies_and_starts_pods_sooner() {
    let spread = run_small(Routing::Spread, 11);
    let warm = run_small(Routing::Warm, 11);
    let (s, w) = (&spread.measured, &warm.measured);
    // A fleet this small is short of memory, so the margin is smaller than
    // at 100 nodes (see benches/README.md).
    assert!(
        w.cold_loads * 2 < s.cold_loads,
        "{} vs {}",
        w.cold_loads,
        s.cold_loads
    );
    assert!(w.loaded_mib * 2 < s.loaded_mib);
    assert!(w.first_tasks_warm > s.first_tasks_warm);
    assert!(
        w.first_task_wait_ms.p90 < s.first_task_wait_ms.p90,
        "{:?} vs {:?}",
        w.first_task_wait_ms,
        s.first_task_wait_ms
    );
    assert!(w.pods_on_warm_nodes > s.pods_on_warm_nodes);
}

#[test]
fn nodes_write_their_annotations_at_most_once_per_interval_and_at_least_every_refresh() {
    let r = run_small(Routing::Warm, 5);
    let interval = Config::dev().cluster.annotation_interval.as_secs_f64();
    let refresh = crate::cluster::residency::REFRESH.as_secs_f64();
    let per_node = r.measured.annotation_writes_per_node_per_s;
    assert!(per_node <= 1.0 / interval, "{per_node}");
    assert!(per_node >= 1.0 / (refresh + interval), "{per_node}");
}

#[test]
fn the_json_has_the_keys_the_issue_names() {
    let v: Value = serde_json::from_str(&run_small(Routing::Spread, 1).json()).expect("JSON");
    for key in [
        "/cold_loads",
        "/loaded_mib",
        "/first_task_wait_ms/p50",
        "/first_task_wait_ms/p99",
        "/grants",
        "/rejections",
        "/annotation_writes_per_node_per_s",
        "/including_warmup/cold_loads",
        "/gpu_busy_fraction",
    ] {
        assert!(
            v.pointer(key).is_some_and(|x| x.is_number()),
            "{key} in {v}"
        );
    }
    assert_eq!(v["routing"], "spread");
}

#[test]
fn warm_routing_scores_with_the_extenders_own_function() {
    // The very function, not a copy of it.
    assert!(std::ptr::fn_addr_eq(
        EXTENDER_SCORE,
        crate::extender::score::score as ScoreFn
    ));
}

/// The scores the fleet's placement used, mid-run, are the ones the HTTP
/// extender answers when kube-scheduler sends it those nodes with the
/// annotations the fleet's daemons last wrote.
#[test]
fn the_fleets_scores_are_what_the_http_extender_answers_for_the_published_annotations() {
    let config = Config::dev();
    let options = small(Routing::Warm, 2);
    let snap = snapshot(&config, &options, Duration::from_secs(200));
    let extender = Extender::new(&Settings {
        models: snap.models.clone(),
        node_cache: NodeCacheMode::Off,
        ..Settings::from_config(&config)
    });
    let nodes: Vec<Value> = snap
        .annotations
        .iter()
        .enumerate()
        .map(|(i, a)| json!({"metadata": {"name": format!("node-{i}"), "annotations": a}}))
        .collect();
    let mut differing = 0;
    let mut warm_seen = false;
    for (m, want) in snap.models.iter().zip(&snap.scores) {
        let pod = json!({"metadata": {"annotations": {"vision.ai/models": m.name}}});
        let body =
            json!({"Pod": pod, "Nodes": {"metadata": {}, "items": nodes}, "NodeNames": null});
        let answer = extender.prioritize(&serde_json::to_vec(&body).expect("JSON"), snap.wall);
        assert_eq!(answer.status, 200);
        let got: Vec<i64> = serde_json::from_slice::<Vec<Value>>(&answer.body)
            .expect("a HostPriorityList")
            .iter()
            .map(|h| h["Score"].as_i64().expect("Score"))
            .collect();
        assert_eq!(&got, want, "{}", m.name);
        warm_seen |= want.iter().any(|&s| s >= 9);
        differing += usize::from(want.iter().any(|s| *s != want[0]));
    }
    // Not vacuous: mid-run, nodes differ and some are warm.
    assert!(
        warm_seen && differing > snap.models.len() / 2,
        "{differing}"
    );
    assert_eq!(extender::MAX_PRIORITY, 10);
}

#[test]
fn bad_options_name_the_flag() {
    let config = Config::dev();
    for (options, flag) in [
        (
            Options {
                nodes: 0,
                ..Options::default()
            },
            "--nodes",
        ),
        (
            Options {
                rate_per_s: -1.0,
                ..Options::default()
            },
            "--rate",
        ),
        (
            Options {
                warmup: Duration::from_secs(7200),
                ..Options::default()
            },
            "--warmup",
        ),
        (
            Options {
                tasks_per_pod: 0.5,
                ..Options::default()
            },
            "--tasks-per-pod",
        ),
    ] {
        let e = run(&config, &options).expect_err("refused");
        assert!(e.to_string().starts_with(flag), "{e}");
    }
}
