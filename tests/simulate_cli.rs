//! `vision-node-daemon simulate`, run as an operator runs it.

use std::process::{Command, Output};

fn simulate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vision-node-daemon"))
        .arg("simulate")
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout_of(args: &[&str]) -> String {
    let out = simulate(args);
    assert!(
        out.status.success(),
        "status {:?}, stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 report")
}

/// The report minus its wall-clock line(s).
fn without_timing(report: &str) -> String {
    report
        .lines()
        .filter(|l| !l.starts_with("engine:"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_same_seed_prints_the_same_report_apart_from_the_timing_line() {
    let args = ["--seed", "7", "--duration", "2m"];
    let first = stdout_of(&args);
    let second = stdout_of(&args);
    assert_eq!(without_timing(&first), without_timing(&second));
    assert_eq!(
        first.lines().filter(|l| l.starts_with("engine:")).count(),
        1
    );
    for part in [
        "seed 7",
        "hit rate",
        "cold loads",
        "p99",
        "rejected",
        "fairness",
        "GPUs busy",
        "× optimal",
    ] {
        assert!(first.contains(part), "missing {part:?} in:\n{first}");
    }
}

#[test]
fn another_seed_prints_another_report() {
    let a = stdout_of(&["--seed", "7", "--duration", "2m"]);
    let b = stdout_of(&["--seed", "8", "--duration", "2m"]);
    assert_ne!(without_timing(&a), without_timing(&b));
}

#[test]
fn json_output_is_the_report_with_its_headline_first() {
    let out = stdout_of(&["--seed", "7", "--duration", "2m", "-o", "json"]);
    let value: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e} in:\n{out}"));
    let serde_json::Value::Object(fields) = &value else {
        panic!("not an object: {out}");
    };
    let keys: Vec<&str> = fields.keys().map(String::as_str).collect();
    for key in [
        "scenario",
        "seed",
        "policy",
        "requests",
        "grant_ratio",
        "grants",
        "rejections",
        "queue_wait_ms",
        "hit_rate",
        "gpu_busy",
        "fairness",
        "loads",
        "bound",
        "engine",
    ] {
        assert!(keys.contains(&key), "missing {key:?} in {keys:?}");
    }
    assert_eq!(value["scenario"], "default");
    assert_eq!(value["seed"], 7);
    let bound = &value["bound"]["load_ms"];
    let (lower, upper) = (bound["lower"].as_u64(), bound["upper"].as_u64());
    assert!(
        lower.is_some_and(|l| upper.is_some_and(|u| l <= u)),
        "{bound}"
    );
    assert!(bound["ratio"].as_f64().is_some_and(|r| r >= 1.0), "{bound}");
}

#[test]
fn the_overload_scenario_is_the_first_designs_workload_and_flags_override_it() {
    let out = stdout_of(&["--scenario", "overload", "--duration", "1m"]);
    assert!(out.starts_with("simulate: scenario overload"), "{out}");
    assert!(out.contains("arrivals 20/s for 1m"), "{out}");
    let out = stdout_of(&["--scenario", "overload", "--duration", "1m", "--rate", "3"]);
    assert!(out.contains("arrivals 3/s"), "{out}");
    let out = simulate(&["--scenario", "busy"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("overload"));
}

#[test]
fn the_headline_leads_with_grants_rejections_and_waits() {
    let out = stdout_of(&["--scenario", "overload", "--duration", "1m"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[1].starts_with("granted ") && lines[1].contains("rejected"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("queue wait p50") && lines[2].contains("hit rate"),
        "{out}"
    );
    assert!(
        lines[3].starts_with("fairness: lowest model grant ratio"),
        "{out}"
    );
}

#[test]
fn a_bad_flag_value_fails_with_the_flag_named() {
    let out = simulate(&["--rate", "0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--rate"), "stderr: {stderr}");
    let out = simulate(&["--policy", "fifo"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("greedy-dual-size"));
}

#[test]
fn plot_draws_the_run_into_an_svg() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("run.svg");
    let report = stdout_of(&[
        "--seed",
        "3",
        "--duration",
        "5m",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(report.contains("hit rate"), "the report is still printed");
    let svg = std::fs::read_to_string(&svg).expect("the plot was written");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for title in [
        "simulate --seed 3 --duration 5m",
        "Queue depth",
        "Warm hit rate",
        "Pool use per GPU",
        "Requests per model",
        "GPU 1",
        "sd3b",
    ] {
        assert!(svg.contains(title), "{title} missing from the plot");
    }
    // The series are sampled over the run: lines of many points (queue,
    // waiting on a load, hit rate, a pool line per GPU).
    let long_lines = svg
        .split("<polyline")
        .skip(1)
        .filter_map(|l| l.split("points=\"").nth(1)?.split('"').next())
        .filter(|points| points.split(' ').count() > 50)
        .count();
    assert_eq!(long_lines, 5, "{svg}");
}

#[test]
fn under_o_json_a_failure_is_a_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "node_name: n\nmodels: []\n").unwrap();
    let out = simulate(&["--config", bad.to_str().unwrap(), "-o", "json"]);
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["error"]["code"], "INVALID_ARGUMENT");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("models"),
        "{v}"
    );
}
