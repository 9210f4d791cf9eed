//! Loading as a whole: unknown keys, serde's type and syntax errors, where
//! `node_name` comes from, defaults, and the shipped config files.

use std::path::PathBuf;
use std::time::Duration;

use super::super::test_support::{ONE_MODEL, err, errors, load, load_exactly, load_with_env};
use super::super::wire::MODEL_KEYS;
use super::super::{
    AdmissionConfig, Config, DevicesConfig, EvictionPolicy, GpuBackend, GpuConfig, ModelSpec,
    load_file, load_str,
};
use super::{edit_distance, suggest};
use proptest::prelude::*;

#[test]
fn every_unknown_key_is_reported_at_its_key_with_a_hint_when_one_is_close() {
    let text = "\
node_name: n
colour: blue
gpus:
  reserve: 512
models:
  - name: a
    weights_mib: 1
    working_mib: 1
    load_ms: 0
  - name: b
    weigths_mib: 1
    working_mib: 1
    load_ms: 0
    taskTypes: [x]
";
    assert_eq!(
        errors(text),
        vec![
            err("colour", "unknown key", 2, 1),
            err("gpus.reserve", "unknown key", 4, 3),
            err("models[1].weights_mib", "is required", 10, 5),
            err(
                "models[1].weigths_mib",
                "unknown key; did you mean `weights_mib`?",
                11,
                5
            ),
            err(
                "models[1].taskTypes",
                "unknown key; did you mean `task_types`?",
                14,
                5
            ),
        ]
    );
}

#[test]
fn unknown_keys_in_flow_mappings_and_nested_sections_are_found() {
    let text = "\
node_name: n
gpus:
  simulated: [{ name: g, memory_mib: 1024, cuont: 2 }]
admission: { lease_tll: 5s }
";
    assert_eq!(
        errors(text),
        vec![
            err(
                "gpus.simulated[0].cuont",
                "unknown key; did you mean `count`?",
                3,
                44
            ),
            err(
                "admission.lease_tll",
                "unknown key; did you mean `lease_ttl`?",
                4,
                14
            ),
        ]
    );
}

#[test]
fn a_type_error_names_the_key_path_and_the_value_position() {
    let text = "node_name: n\nmodels:\n  - name: a\n    weights_mib: lots\n";
    assert_eq!(
        errors(text),
        vec![err(
            "models[0].weights_mib",
            "invalid type: string \"lots\", expected u64",
            4,
            18
        )]
    );
}

#[test]
fn an_unknown_enum_value_lists_the_valid_ones() {
    let text = "node_name: n\ngpus:\n  backend: gpu\n";
    assert_eq!(
        errors(text),
        vec![err(
            "gpus.backend",
            "unknown variant `gpu`, expected one of `auto`, `nvml`, `simulated`",
            3,
            12
        )]
    );
}

#[test]
fn unknown_keys_before_a_type_error_are_reported_with_it() {
    let text = "node_name: n\nnodename: x\ndevices:\n  slots_per_gpu: many\n";
    let found = errors(text);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        found[0],
        err("nodename", "unknown key; did you mean `node_name`?", 2, 1)
    );
    assert_eq!(
        (found[1].path.as_str(), found[1].line, found[1].column),
        ("devices.slots_per_gpu", Some(4), Some(18))
    );
}

#[test]
fn a_document_that_is_not_a_mapping_is_a_type_error_at_the_top() {
    let found = load_exactly("- 1\n", &|_| None, &|| None)
        .expect_err("a sequence")
        .errors()
        .to_vec();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "");
    assert!(
        found[0]
            .message
            .starts_with("invalid type: sequence, expected a mapping of config keys"),
        "{found:?}"
    );
}

#[test]
fn a_syntax_error_is_reported_with_its_position() {
    assert_eq!(
        errors("node_name: n\nmodels: [\n"),
        vec![err(
            "",
            "did not find expected node content, while parsing a flow node",
            3,
            1
        )]
    );
    assert_eq!(
        errors("node_name: n\ngpus:\n  backend: auto\n reserve_mib: 1\n"),
        vec![err(
            "",
            "did not find expected key, while parsing a block mapping",
            4,
            2
        )]
    );
}

#[test]
fn node_name_comes_from_the_environment_before_the_host_name() {
    let env = |k: &str| (k == "NODE_NAME").then(|| "gpu-node-7".to_owned());
    let host = || Some("other-host".to_owned());
    let config = load_with_env("", &env, &host).expect("loads");
    assert_eq!(config.node_name, "gpu-node-7");
    // The file wins over both.
    let config = load_with_env("node_name: from-file\n", &env, &host).expect("loads");
    assert_eq!(config.node_name, "from-file");
}

#[test]
fn node_name_falls_back_to_the_lower_cased_host_name() {
    let host = || Some("GPU-Host-3\n".to_owned());
    let config = load_with_env("", &|_| None, &host).expect("loads");
    assert_eq!(config.node_name, "gpu-host-3");
}

#[test]
fn load_str_takes_node_name_from_the_injected_environment() {
    let env = |k: &str| (k == "NODE_NAME").then(|| "injected".to_owned());
    let text = format!("domain: vision.ai\n{ONE_MODEL}");
    let config = load_str(&text, "t.yaml", &env).expect("loads");
    assert_eq!(config.node_name, "injected");
}

#[test]
fn a_node_name_from_nowhere_is_an_error_naming_node_name() {
    let found = errors("domain: vision.ai\n");
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].path.as_str(), found[0].line), ("node_name", None));
    assert!(found[0].message.contains("NODE_NAME"), "{found:?}");
}

#[test]
fn an_invalid_node_name_from_the_environment_says_where_it_came_from() {
    let env = |k: &str| (k == "NODE_NAME").then(|| "Bad_Name".to_owned());
    let errors = load_with_env("", &env, &|| None).expect_err("invalid");
    let found = &errors.errors()[0];
    assert_eq!(found.path, "node_name");
    assert!(
        found.message.starts_with("taken from $NODE_NAME: "),
        "{found:?}"
    );
}

#[test]
fn every_default_is_filled_in() {
    let config = load("node_name: n1\n").expect("loads");
    let expected = Config {
        node_name: "n1".into(),
        domain: "vision.ai".into(),
        gpus: GpuConfig {
            backend: GpuBackend::Auto,
            reserve_mib: 512,
            simulated: vec![],
            nvml_library: None,
        },
        devices: DevicesConfig {
            slots_per_gpu: 8,
            vram_unit_mib: 1024,
            vram_shareable_fraction: 0.5,
            health_recovery: Duration::from_secs(60),
            release_grace: Duration::from_secs(30),
            cdi: false,
            container_socket_dir: PathBuf::from("/var/run/vision"),
            slot_gpu_visibility: crate::config::SlotGpuVisibility::All,
        },
        admission: AdmissionConfig {
            queue_limit: 256,
            per_pod_queue_limit: 32,
            per_pod_loads: 4,
            default_timeout: Duration::from_secs(30),
            lease_ttl: Duration::from_secs(60),
            eviction_policy: EvictionPolicy::Lru,
            watch_streams_per_pod: 16,
        },
        runtime: crate::config::RuntimeConfig {
            kind: crate::config::RuntimeKind::Bookkeeping {
                simulate_load_time: false,
            },
            load_timeout: Duration::from_secs(120),
            health_interval: Duration::from_secs(2),
            reconcile_interval: Duration::from_secs(30),
            measure_memory: crate::config::MeasureMemory::Auto,
        },
        cluster: crate::config::ClusterConfig {
            publish: crate::config::Publish::Auto,
            annotation_interval: Duration::from_secs(10),
        },
        telemetry: crate::config::TelemetryConfig::default(),
        // test_support's ONE_MODEL, with the model defaults filled in.
        models: vec![ModelSpec {
            name: "m".into(),
            weights_mib: 1,
            working_mib: 1,
            max_concurrency: 4,
            load_ms: 0,
            task_ms: 100,
            task_types: vec![],
        }],
    };
    assert_eq!(config, expected);
}

#[test]
fn model_and_simulated_gpu_defaults_are_filled_in() {
    let text = "\
node_name: n1
gpus: { simulated: [{ name: g, memory_mib: 2048 }], nvml_library: /lib/libnvidia-ml.so.1 }
models: [{ name: m, weights_mib: 1, working_mib: 2, load_ms: 3 }]
";
    let config = load(text).expect("loads");
    assert_eq!(config.gpus.simulated[0].count, 1);
    assert_eq!(
        config.gpus.nvml_library,
        Some(PathBuf::from("/lib/libnvidia-ml.so.1"))
    );
    assert_eq!(
        config.models,
        vec![ModelSpec {
            name: "m".into(),
            weights_mib: 1,
            working_mib: 2,
            max_concurrency: 4,
            load_ms: 3,
            task_ms: 100,
            task_types: vec![],
        }]
    );
}

#[test]
fn greedy_dual_size_maps_to_its_policy() {
    let config = load("node_name: n\nadmission: { eviction_policy: greedy-dual-size }\n");
    assert_eq!(
        config.expect("loads").admission.eviction_policy,
        EvictionPolicy::GreedyDualSize
    );
}

#[test]
fn the_embedded_dev_config_validates_with_the_seed_models() {
    let config = Config::dev();
    assert_eq!(config.node_name, "dev-node");
    assert_eq!(config.gpus.backend, GpuBackend::Simulated);
    assert_eq!(config.gpus.simulated.len(), 1);
    assert_eq!(config.gpus.simulated[0].name, "NVIDIA L4 (simulated)");
    assert_eq!(config.gpus.simulated[0].memory_mib, 24576);
    assert_eq!(config.gpus.simulated[0].count, 2);
    let names: Vec<&str> = config.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["yolo-v8n", "clip-vit-b32", "sd3b", "sdxl-refiner"]);
}

#[test]
fn the_example_config_file_loads_with_backend_auto() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.yaml");
    let text = std::fs::read_to_string(path).expect("example.yaml exists");
    let env = |k: &str| (k == "NODE_NAME").then(|| "gpu-node-1".to_owned());
    let config = load_str(&text, path, &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.gpus.backend, GpuBackend::Auto);
    // The catalogs of the two shipped files agree.
    assert_eq!(config.models, Config::dev().models);
}

#[test]
fn load_file_reads_a_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.yaml");
    let text = format!("node_name: n\ndevices: {{ slots_per_gpu: 0 }}\n{ONE_MODEL}");
    std::fs::write(&path, text).expect("write");
    let errors = load_file(&path).expect_err("invalid");
    let shown = errors.to_string();
    let header = format!("{}: 1 error\n", path.display());
    assert!(shown.starts_with(&header), "{shown}");
    assert!(
        shown.ends_with("devices.slots_per_gpu: must be > 0 (line 2, column 27)\n"),
        "{shown}"
    );
}

#[test]
fn load_file_reports_a_missing_file() {
    let errors = load_file(std::path::Path::new("/nonexistent/vision.yaml")).expect_err("missing");
    assert_eq!(errors.source_name(), "/nonexistent/vision.yaml");
    assert!(
        errors.errors()[0]
            .message
            .starts_with("cannot read the config file: ")
    );
}

#[test]
fn suggestions_catch_transpositions_and_case_changes() {
    assert_eq!(suggest("weigths_mib", MODEL_KEYS), Some("weights_mib"));
    assert_eq!(suggest("weightsMib", MODEL_KEYS), Some("weights_mib"));
    assert_eq!(suggest("task-types", MODEL_KEYS), Some("task_types"));
    assert_eq!(suggest("nmae", MODEL_KEYS), Some("name"));
    assert_eq!(suggest("color", MODEL_KEYS), None);
}

#[test]
fn edit_distance_counts_insertions_deletions_substitutions_and_swaps() {
    assert_eq!(edit_distance("abc", "abc"), 0);
    assert_eq!(edit_distance("abc", "abd"), 1);
    assert_eq!(edit_distance("abc", "ab"), 1);
    assert_eq!(edit_distance("abc", "acb"), 1);
    assert_eq!(edit_distance("", "abc"), 3);
}

/// 512 cases a property; 100× in the fault suite's long mode
/// (`VISION_FAULTS_LONG=1`, `.ci/faults-long`).
fn cases() -> u32 {
    let long = std::env::var("VISION_FAULTS_LONG").is_ok_and(|v| !v.is_empty() && v != "0");
    if long { 51_200 } else { 512 }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Whatever an operator types, loading answers with a config or errors.
    #[test]
    fn loading_never_panics_on_yaml_like_text(text in "[a-z_:{}\\[\\],\"' \n#&*!|>.0-9-]{0,80}") {
        let _ = load(&text);
    }
}

#[test]
fn every_type_error_is_reported_with_every_unknown_key_in_one_run() {
    // serde stops at the first wrong type; the loader sets each aside and
    // looks again, so an operator fixes the whole file in one round.
    let text = "\
node_name: n
colour: blue
gpus:
  reserve_mib: lots
  simulated: [{ name: g, memory_mib: 24576, count: two }]
admission: { queue_limit: -1, lease_tll: 5s }
models:
  - name: a
    weights_mib: [1]
    working_mib: 1
    load_ms: 0
";
    let found: Vec<(String, Option<usize>)> =
        errors(text).into_iter().map(|e| (e.path, e.line)).collect();
    assert_eq!(
        found,
        vec![
            ("colour".to_owned(), Some(2)),
            ("gpus.reserve_mib".to_owned(), Some(4)),
            ("gpus.simulated[0].count".to_owned(), Some(5)),
            ("admission.queue_limit".to_owned(), Some(6)),
            ("admission.lease_tll".to_owned(), Some(6)),
            ("models[0].weights_mib".to_owned(), Some(9)),
        ]
    );
    let messages: Vec<String> = errors(text).into_iter().map(|e| e.message).collect();
    assert!(
        messages[1].starts_with("invalid type: string \"lots\""),
        "{messages:?}"
    );
    assert!(
        messages[5].starts_with("invalid type: sequence"),
        "{messages:?}"
    );
}

#[test]
fn an_empty_file_is_refused_with_a_clear_message() {
    for text in ["", "# only a comment\n", "---\n"] {
        let errors = load_exactly(text, &|_| None, &|| None).expect_err("empty");
        let found = errors.errors();
        assert_eq!(found.len(), 1, "{text:?}: {found:?}");
        assert!(
            found[0].message.starts_with("the config is empty"),
            "{found:?}"
        );
    }
}

#[test]
fn an_empty_catalog_is_refused_at_its_key() {
    let found = load_exactly("node_name: n\nmodels: []\n", &|_| None, &|| None)
        .expect_err("no models")
        .errors()
        .to_vec();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].path.as_str(), found[0].line), ("models", Some(2)));
    assert!(found[0].message.contains("catalog is empty"), "{found:?}");
}

#[test]
fn deep_nesting_fails_fast_at_the_line_where_it_goes_too_deep() {
    // unsafe-libyaml takes minutes on 100 000 levels; the shape check stops
    // at the limit without handing the text to it. Flow, block and compact
    // sequence nesting are all caught.
    let flow = format!(
        "node_name: n\nx: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let compact = format!("node_name: n\nx:\n{}1\n", "- ".repeat(100_000));
    let mut block = "node_name: n\n".to_owned();
    for depth in 0..100 {
        block.push_str(&format!("{}k{depth}:\n", "  ".repeat(depth)));
    }
    for (name, text) in [("flow", flow), ("compact", compact), ("block", block)] {
        let found = load_exactly(&text, &|_| None, &|| None)
            .expect_err(name)
            .errors()
            .to_vec();
        assert_eq!(found.len(), 1, "{name}: {found:?}");
        assert!(
            found[0].message.contains("nested more than"),
            "{name}: {found:?}"
        );
        assert!(found[0].line.is_some(), "{name}: {found:?}");
    }
}

#[test]
fn a_file_over_the_size_limit_is_refused_before_parsing() {
    let text = format!("node_name: n\n# {}\n", "x".repeat(super::MAX_CONFIG_BYTES));
    let found = load_exactly(&text, &|_| None, &|| None)
        .expect_err("too large")
        .errors()
        .to_vec();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].message.contains("bytes, more than the"),
        "{found:?}"
    );
    // The same from a file, without reading it whole.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big.yaml");
    std::fs::write(&path, &text).expect("write");
    let shown = load_file(&path).expect_err("too large").to_string();
    assert!(shown.contains("bytes, more than the"), "{shown}");
}

#[test]
fn a_second_document_is_reported_at_its_start() {
    let text = format!("node_name: n\n{ONE_MODEL}---\nnode_name: m\n");
    let found = load_exactly(&text, &|_| None, &|| None)
        .expect_err("two documents")
        .errors()
        .to_vec();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].line, Some(3), "{found:?}");
    assert!(
        found[0].message.contains("second YAML document"),
        "{found:?}"
    );
}

#[test]
fn a_file_that_is_not_utf8_is_reported_at_the_bad_byte() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("latin1.yaml");
    std::fs::write(&path, b"node_name: n\ndomain: caf\xe9\n").expect("write");
    let errors = load_file(&path).expect_err("not UTF-8");
    let found = &errors.errors()[0];
    assert_eq!((found.line, found.column), (Some(2), Some(12)), "{found:?}");
    assert!(found.message.contains("not UTF-8"), "{found:?}");
}
