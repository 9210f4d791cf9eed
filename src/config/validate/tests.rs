//! Each semantic check, with the exact key path and line/column it reports.

use super::super::test_support::{err, errors, load};
use super::super::{Error, GpuBackend};

#[test]
fn zero_model_sizes_are_each_reported_at_their_value() {
    let text = "\
node_name: n
models:
  - name: a
    weights_mib: 0
    working_mib: 0
    max_concurrency: 0
    load_ms: 0
    task_ms: 0
";
    assert_eq!(
        errors(text),
        vec![
            err("models[0].weights_mib", "must be > 0", 4, 18),
            err("models[0].working_mib", "must be > 0", 5, 18),
            err("models[0].max_concurrency", "must be > 0", 6, 22),
            err("models[0].task_ms", "must be > 0", 8, 14),
        ]
    );
}

#[test]
fn a_load_time_of_zero_is_allowed() {
    let text = "node_name: n\nmodels: [{ name: a, weights_mib: 1, working_mib: 1, load_ms: 0 }]\n";
    let config = load(text).expect("loads");
    assert_eq!(config.models[0].load_ms, 0);
}

#[test]
fn zero_gpu_device_and_admission_settings_are_all_reported_at_once() {
    let text = "\
node_name: n
gpus:
  backend: simulated
  simulated:
    - name: g
      memory_mib: 0
      count: 0
    - name: h
      memory_mib: 1024
devices:
  slots_per_gpu: 0
  vram_unit_mib: 0
admission:
  queue_limit: 0
  lease_ttl: 0s
";
    let lease = "must be > 0: a lease that expires at once reclaims every task";
    assert_eq!(
        errors(text),
        vec![
            err("gpus.simulated[0].memory_mib", "must be > 0", 6, 19),
            err("gpus.simulated[0].count", "must be > 0", 7, 14),
            err("devices.slots_per_gpu", "must be > 0", 11, 18),
            err("devices.vram_unit_mib", "must be > 0", 12, 18),
            err("admission.queue_limit", "must be > 0", 14, 16),
            err("admission.lease_ttl", lease, 15, 14),
        ]
    );
}

#[test]
fn a_shareable_fraction_outside_zero_to_one_or_nan_is_rejected() {
    for (value, shown) in [("1.5", "1.5"), ("-0.1", "-0.1"), (".nan", "NaN")] {
        let text = format!("node_name: n\ndevices:\n  vram_shareable_fraction: {value}\n");
        let message = format!("must be within [0, 1], got {shown}");
        assert_eq!(
            errors(&text),
            vec![err("devices.vram_shareable_fraction", &message, 3, 28)]
        );
    }
    for edge in ["0", "1", "1.0"] {
        let text = format!("node_name: n\ndevices:\n  vram_shareable_fraction: {edge}\n");
        assert!(load(&text).is_ok(), "{edge} is within [0, 1]");
    }
}

#[test]
fn a_duplicate_model_name_points_at_the_second_and_names_the_first() {
    let text = "\
node_name: n
models:
  - { name: a, weights_mib: 1, working_mib: 1, load_ms: 0 }
  - { name: b, weights_mib: 1, working_mib: 1, load_ms: 0 }
  - { name: a, weights_mib: 1, working_mib: 1, load_ms: 0 }
";
    assert_eq!(
        errors(text),
        vec![err(
            "models[2].name",
            "duplicate model name `a`; models[0] already uses it",
            5,
            13
        )]
    );
}

#[test]
fn an_invalid_model_name_is_rejected_with_the_rule() {
    let text =
        "node_name: n\nmodels:\n  - { name: YOLO, weights_mib: 1, working_mib: 1, load_ms: 0 }\n";
    let message = "`YOLO` is not a valid model name: use lower-case letters, digits, '-', '.' \
                   and '_', starting and ending with a letter or digit";
    assert_eq!(errors(text), vec![err("models[0].name", message, 3, 13)]);
}

#[test]
fn a_model_name_over_63_characters_is_rejected() {
    let name = "a".repeat(64);
    let text = format!(
        "node_name: n\nmodels:\n  - {{ name: {name}, weights_mib: 1, working_mib: 1, load_ms: 0 }}\n"
    );
    let message = format!("`{name}` is 64 characters long; a model name has at most 63");
    assert_eq!(errors(&text), vec![err("models[0].name", &message, 3, 13)]);
}

#[test]
fn a_task_type_over_63_bytes_is_rejected() {
    let long = "t".repeat(64);
    let text = format!(
        "node_name: n\nmodels:\n  - {{ name: a, weights_mib: 1, working_mib: 1, load_ms: 0, task_types: [{long}] }}\n"
    );
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].path, "models[0].task_types[0]");
    assert_eq!(e[0].message, "is 64 bytes long; a task type has at most 63");
}

#[test]
fn an_empty_task_type_is_reported_at_its_list_item() {
    let text = "\
node_name: n
models:
  - name: a
    weights_mib: 1
    working_mib: 1
    load_ms: 0
    task_types: [detect, \"\"]
";
    assert_eq!(
        errors(text),
        vec![err("models[0].task_types[1]", "must not be empty", 7, 26)]
    );
}

#[test]
fn missing_required_keys_are_reported_at_the_entry_that_lacks_them() {
    let text = "\
node_name: n
gpus:
  simulated:
    - name: g
models:
  - name: a
    working_mib: 1
  - weights_mib: 1
    working_mib: 1
    load_ms: 0
";
    assert_eq!(
        errors(text),
        vec![
            err("gpus.simulated[0].memory_mib", "is required", 4, 7),
            err("models[0].weights_mib", "is required", 6, 5),
            err("models[0].load_ms", "is required", 6, 5),
            err("models[1].name", "is required", 8, 5),
        ]
    );
}

#[test]
fn a_reserve_at_least_a_simulated_gpus_memory_is_rejected() {
    let text = "\
node_name: n
gpus:
  reserve_mib: 4096
  simulated:
    - { name: big, memory_mib: 24576 }
    - { name: tiny, memory_mib: 4096 }
";
    let message = "4096 MiB leaves no usable memory on gpus.simulated[1] (`tiny`, memory_mib 4096); \
                   it must be less than every simulated GPU's memory_mib";
    assert_eq!(errors(text), vec![err("gpus.reserve_mib", message, 3, 16)]);
}

const TOO_BIG_MODEL: &str = "\
node_name: n
gpus:
  backend: simulated
  simulated: [{ name: small, memory_mib: 8192 }]
models:
  - name: big
    weights_mib: 6000
    working_mib: 2000
    load_ms: 0
";

#[test]
fn a_model_that_fits_no_simulated_gpu_is_rejected_with_the_numbers() {
    let message = "needs 8000 MiB on one GPU (weights_mib 6000 + working_mib 2000), more than any \
                   simulated GPU offers: the largest pool is 7680 MiB (`small`: memory_mib 8192 - \
                   gpus.reserve_mib 512)";
    assert_eq!(errors(TOO_BIG_MODEL), vec![err("models[0]", message, 6, 5)]);
}

#[test]
fn model_fit_is_not_checked_when_the_gpus_are_known_only_at_runtime() {
    let text = TOO_BIG_MODEL.replace("backend: simulated", "backend: nvml");
    let config = load(&text).expect("nvml GPUs are unknown until runtime");
    assert_eq!(config.gpus.backend, GpuBackend::Nvml);
}

#[test]
fn model_fit_is_checked_against_the_list_auto_falls_back_to() {
    // Without NVML, `auto` runs on the simulated list: check-config must say
    // what the daemon would then refuse.
    let text = TOO_BIG_MODEL.replace("backend: simulated", "backend: auto");
    let found = errors(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].path.as_str(), found[0].line),
        ("models[0]", Some(6))
    );
}

#[test]
fn the_simulated_backend_needs_at_least_one_gpu() {
    let message = "must list at least one GPU when gpus.backend is `simulated`";
    let text = "node_name: n\ngpus:\n  backend: simulated\n  simulated: []\n";
    assert_eq!(errors(text), vec![err("gpus.simulated", message, 4, 14)]);
    // Without the key the error points at the `gpus` mapping.
    let text = "node_name: n\ngpus:\n  backend: simulated\n";
    assert_eq!(errors(text), vec![err("gpus.simulated", message, 3, 3)]);
}

#[test]
fn a_vram_unit_too_small_for_kubelet_is_rejected_with_the_worst_case_assumption() {
    let text = "node_name: n\ndevices:\n  vram_unit_mib: 1\n";
    let message = "1 MiB per device gives 784384 vram devices assuming a worst-case node of 8 GPUs \
                   × 196608 MiB (backend `auto` finds its GPUs only at runtime), about 62750720 \
                   bytes in one ListAndWatch response (at ~80 bytes per device), over kubelet's \
                   4194304-byte gRPC receive limit; the smallest unit that fits is 15 MiB";
    assert_eq!(
        errors(text),
        vec![err("devices.vram_unit_mib", message, 3, 18)]
    );
}

#[test]
fn a_vram_unit_too_small_for_the_simulated_gpus_is_rejected() {
    let text = "\
node_name: n
gpus:
  backend: simulated
  simulated: [{ name: a100, memory_mib: 81920 }]
devices: { vram_unit_mib: 1, vram_shareable_fraction: 1 }
";
    let found = errors(text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].path.as_str(), found[0].line, found[0].column),
        ("devices.vram_unit_mib", Some(5), Some(27))
    );
    assert!(
        found[0]
            .message
            .starts_with("1 MiB per device gives 81408 vram devices on the 1 simulated GPUs,"),
        "{}",
        found[0].message
    );
}

#[test]
fn too_many_slots_per_gpu_for_kubelet_are_rejected() {
    let text = "node_name: n\ndevices:\n  slots_per_gpu: 7000\n";
    let found = errors(text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].path.as_str(), found[0].line, found[0].column),
        ("devices.slots_per_gpu", Some(3), Some(18))
    );
    assert!(
        found[0].message.ends_with("use at most 6553"),
        "{}",
        found[0].message
    );
}

#[test]
fn a_domain_must_be_a_dns_subdomain_outside_kubernetes_io() {
    let text = "node_name: n\ndomain: Vision.AI\n";
    let message = "`Vision.AI` is not a valid DNS subdomain: use lower-case letters, digits, '-' and \
                   '.', each dot-separated part starting and ending with a letter or digit";
    assert_eq!(errors(text), vec![err("domain", message, 2, 9)]);
    let found = errors("node_name: n\ndomain: kubernetes.io\n");
    assert_eq!(found[0].path, "domain");
    assert!(
        found[0].message.contains("reserved by Kubernetes"),
        "{found:?}"
    );
}

#[test]
fn a_node_name_in_the_file_must_be_a_dns_subdomain() {
    let found = errors("node_name: Node_1\n");
    assert_eq!(
        (found[0].path.as_str(), found[0].line, found[0].column),
        ("node_name", Some(1), Some(12))
    );
}

#[test]
fn a_duration_without_a_unit_is_reported_with_a_hint() {
    let text = "node_name: n\nadmission:\n  default_timeout: 30\n  lease_ttl: 1.5s\n";
    assert_eq!(
        errors(text),
        vec![
            err(
                "admission.default_timeout",
                "`30` has no unit; write e.g. `30s` (units: h, m, s, ms, us, ns)",
                3,
                20
            ),
            err(
                "admission.lease_ttl",
                "`1.5s` has an unknown unit `.` (units: h, m, s, ms, us, ns)",
                4,
                14
            ),
        ]
    );
}

#[test]
fn a_zero_default_timeout_is_allowed_to_fail_fast() {
    let config = load("node_name: n\nadmission: { default_timeout: 0s }\n").expect("loads");
    assert!(config.admission.default_timeout.is_zero());
}

#[test]
fn an_empty_nvml_library_path_is_rejected() {
    let text = "node_name: n\ngpus:\n  nvml_library: ''\n";
    let message = "must not be empty; leave the key out to let the loader search";
    assert_eq!(errors(text), vec![err("gpus.nvml_library", message, 3, 17)]);
}

#[test]
fn errors_from_every_section_come_back_together_in_file_order() {
    let text = "\
node_name: n
domain: -bad
devices:
  vram_shareable_fraction: 2
models:
  - { name: a, weights_mib: 0, working_mib: 1, load_ms: 0 }
  - { name: a, weights_mib: 1, working_mib: 1, load_ms: 0 }
admission:
  queue_limit: 0
";
    let found: Vec<(String, Option<usize>)> = errors(text)
        .into_iter()
        .map(|Error { path, line, .. }| (path, line))
        .collect();
    let expected = [
        ("domain", 2),
        ("devices.vram_shareable_fraction", 4),
        ("models[0].weights_mib", 6),
        ("models[1].name", 7),
        ("admission.queue_limit", 9),
    ];
    let expected: Vec<(String, Option<usize>)> = expected
        .iter()
        .map(|(p, l)| ((*p).to_owned(), Some(*l)))
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn the_runtime_defaults_to_bookkeeping_without_simulated_load_time() {
    let config = load("node_name: n\n").expect("loads");
    assert_eq!(
        config.runtime.kind,
        super::super::RuntimeKind::Bookkeeping {
            simulate_load_time: false
        }
    );
    assert_eq!(
        config.runtime.load_timeout,
        std::time::Duration::from_secs(120)
    );
}

#[test]
fn a_grpc_runtime_needs_a_unix_or_http_endpoint_and_no_bookkeeping_keys() {
    let text = "\
node_name: n
runtime:
  kind: grpc
  endpoint: unix://relative.sock
  simulate_load_time: true
  load_timeout: 0s
";
    assert_eq!(
        errors(text),
        vec![
            err(
                "runtime.endpoint",
                "\"unix://relative.sock\": a unix endpoint needs an absolute path, e.g. unix:///run/model-runtime.sock",
                4,
                13
            ),
            err(
                "runtime.simulate_load_time",
                "is only used with `kind: bookkeeping`",
                5,
                23
            ),
            err("runtime.load_timeout", "must be > 0", 6, 17),
        ],
        "in file order"
    );
    let ok = "node_name: n\nruntime: { kind: grpc, endpoint: \"unix:///run/rt.sock\" }\n";
    assert_eq!(
        load(ok).expect("loads").runtime.kind,
        super::super::RuntimeKind::Grpc {
            endpoint: "unix:///run/rt.sock".into()
        }
    );
}

#[test]
fn a_bookkeeping_runtime_refuses_an_endpoint() {
    let text = "node_name: n\nruntime:\n  endpoint: http://localhost:9000\n";
    assert_eq!(
        errors(text),
        vec![err(
            "runtime.endpoint",
            "is only used with `kind: grpc` or `kind: triton`",
            3,
            13
        )]
    );
}

#[test]
fn a_triton_runtime_takes_an_endpoint_a_client_endpoint_and_runtime_names() {
    let text = "\
node_name: n
runtime:
  kind: triton
  endpoint: 127.0.0.1:8001
  model_repository: /models
  load_timeout: 90s
models:
  - { name: yolo-v8n, runtime_name: yolov8n_onnx, weights_mib: 1, working_mib: 1, load_ms: 0 }
  - { name: clip, weights_mib: 1, working_mib: 1, load_ms: 0 }
";
    let config = load(text).expect("loads");
    let super::super::RuntimeKind::Triton(t) = &config.runtime.kind else {
        panic!("{:?}", config.runtime.kind)
    };
    assert_eq!(t.endpoint, "127.0.0.1:8001");
    assert_eq!(t.client_endpoint, "127.0.0.1:8001", "defaults to endpoint");
    assert_eq!(
        t.model_repository.as_deref(),
        Some(std::path::Path::new("/models"))
    );
    assert_eq!(t.triton_name("yolo-v8n"), "yolov8n_onnx");
    assert_eq!(t.triton_name("clip"), "clip");
    assert_eq!(
        config.runtime.load_timeout,
        std::time::Duration::from_secs(90)
    );
}

#[test]
fn triton_settings_are_checked_with_their_lines() {
    let text = "\
node_name: n
runtime:
  kind: triton
  endpoint: unix:///run/triton.sock
  client_endpoint: triton
  model_repository: models
  simulate_load_time: true
models:
  - { name: a, runtime_name: shared, weights_mib: 1, working_mib: 1, load_ms: 0 }
  - { name: b, runtime_name: shared, weights_mib: 1, working_mib: 1, load_ms: 0 }
  - { name: c, runtime_name: x/y, weights_mib: 1, working_mib: 1, load_ms: 0 }
";
    let got = errors(text);
    let paths: Vec<(&str, Option<usize>)> = got.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert_eq!(
        paths,
        vec![
            ("runtime.endpoint", Some(4)),
            ("runtime.client_endpoint", Some(5)),
            ("runtime.model_repository", Some(6)),
            ("runtime.simulate_load_time", Some(7)),
            ("models[1].runtime_name", Some(10)),
            ("models[2].runtime_name", Some(11)),
        ],
        "{got:#?}"
    );
    assert!(got[0].message.contains("host:port"), "{}", got[0].message);
    assert!(
        got[4].message.contains("already served for models[0]"),
        "{}",
        got[4].message
    );
}

#[test]
fn triton_keys_are_refused_with_other_runtimes() {
    let text = "\
node_name: n
runtime:
  client_endpoint: 127.0.0.1:8001
models:
  - { name: a, runtime_name: a_onnx, weights_mib: 1, working_mib: 1, load_ms: 0 }
";
    let got = errors(text);
    let paths: Vec<(&str, Option<usize>)> = got.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert_eq!(
        paths,
        vec![
            ("runtime.client_endpoint", Some(3)),
            ("models[0].runtime_name", Some(5))
        ],
        "{got:#?}"
    );
    assert!(
        got[1].message.contains("runtime.kind: triton"),
        "{}",
        got[1].message
    );
}

#[test]
fn device_plugin_settings_have_defaults_and_a_relative_socket_dir_is_refused() {
    let config = load("node_name: n\n").expect("loads");
    assert_eq!(
        config.devices.health_recovery,
        std::time::Duration::from_secs(60)
    );
    assert_eq!(
        config.devices.release_grace,
        std::time::Duration::from_secs(30)
    );
    assert!(!config.devices.cdi);
    assert_eq!(
        config.devices.container_socket_dir,
        std::path::PathBuf::from("/var/run/vision")
    );
    let text =
        "node_name: n\ndevices:\n  container_socket_dir: run/vision\n  health_recovery: soon\n";
    let found = errors(text);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].path, "devices.container_socket_dir");
    assert_eq!((found[0].line, found[0].column), (Some(3), Some(25)));
    assert_eq!(found[1].path, "devices.health_recovery");
}

#[test]
fn cluster_and_telemetry_settings_are_checked_with_their_lines() {
    let config = load("node_name: n\n").expect("loads");
    assert_eq!(config.cluster.publish, super::super::Publish::Auto);
    assert_eq!(config.telemetry.otlp_endpoint, None);
    let text = "node_name: n\ncluster:\n  publish: off\n  annotation_interval: 0s\ntelemetry:\n  otlp_endpoint: collector:4317\n";
    assert_eq!(
        errors(text),
        vec![
            err(
                "cluster.annotation_interval",
                "must be > 0: every admission would write to the API server",
                4,
                24
            ),
            err(
                "telemetry.otlp_endpoint",
                "\"collector:4317\": expected an OTLP/gRPC URL such as http://otel-collector:4317",
                6,
                18
            ),
        ]
    );
}

#[test]
fn the_simulated_list_is_bounded_whichever_backend_may_use_it() {
    // `auto` falls back to this list, so it is checked as strictly as under
    // `simulated`: a count or a size no node has is refused up front.
    for backend in ["auto", "simulated"] {
        let text = format!(
            "node_name: n\ngpus:\n  backend: {backend}\n  simulated:\n    - {{ name: a, memory_mib: 18446744073709551615 }}\n    - {{ name: b, memory_mib: 513 }}\n    - {{ name: c, memory_mib: 24576, count: 4294967295 }}\n"
        );
        let found: Vec<(String, Option<usize>)> = errors(&text)
            .into_iter()
            .map(|e| (e.path, e.line))
            .collect();
        assert_eq!(
            found,
            vec![
                ("gpus.simulated".to_owned(), Some(5)),
                ("gpus.simulated[0].memory_mib".to_owned(), Some(5)),
                ("gpus.simulated[1].memory_mib".to_owned(), Some(6)),
            ],
            "{backend}"
        );
    }
    let found =
        errors("node_name: n\ngpus:\n  simulated: [{ name: a, memory_mib: 24576, count: 65 }]\n");
    assert!(found[0].message.contains("lists 65 GPUs"), "{found:?}");
    let ok =
        load("node_name: n\ngpus:\n  simulated: [{ name: a, memory_mib: 24576, count: 64 }]\n");
    assert_eq!(ok.expect("64 GPUs is a node").gpus.simulated[0].count, 64);
}

#[test]
fn a_catalog_larger_than_the_limit_is_refused() {
    let mut text = "node_name: n\nmodels:\n".to_owned();
    for i in 0..=crate::config::validate::MAX_MODELS {
        text.push_str(&format!(
            "  - {{ name: m{i}, weights_mib: 1, working_mib: 1, load_ms: 0 }}\n"
        ));
    }
    let found = errors(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, "models");
}

#[test]
fn a_per_pod_queue_limit_above_the_node_wide_one_is_rejected_at_its_line() {
    let text = "\
node_name: n
admission:
  queue_limit: 16
  per_pod_queue_limit: 17
  per_pod_loads: 0
";
    assert_eq!(
        errors(text),
        vec![
            err(
                "admission.per_pod_queue_limit",
                "must be at most admission.queue_limit (16): one pod must not be able to fill the node's queue",
                4,
                24
            ),
            err("admission.per_pod_loads", "must be > 0", 5, 18),
        ]
    );
}

#[test]
fn a_simulated_gpu_name_over_96_bytes_is_rejected() {
    let long = "g".repeat(97);
    let text = format!(
        "node_name: n\ngpus:\n  simulated:\n    - {{ name: {long}, memory_mib: 24576 }}\nmodels:\n  - {{ name: a, weights_mib: 1, working_mib: 1, load_ms: 0 }}\n"
    );
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].path, "gpus.simulated[0].name");
    assert_eq!(
        e[0].message,
        "is 97 bytes long; a GPU name has at most 96 (NVML's limit)"
    );
}

#[test]
fn the_per_pod_queue_limit_defaults_to_32_or_the_node_wide_limit_if_smaller() {
    let config = load("node_name: n\n").expect("loads");
    assert_eq!(config.admission.per_pod_queue_limit, 32);
    assert_eq!(config.admission.per_pod_loads, 4);
    let config = load("node_name: n\nadmission:\n  queue_limit: 8\n").expect("loads");
    assert_eq!(config.admission.per_pod_queue_limit, 8);
}

#[test]
fn a_client_endpoint_takes_the_node_ip_from_the_environment() {
    let text = "\
node_name: n
runtime:
  kind: triton
  endpoint: 127.0.0.1:8001
  client_endpoint: $(HOST_IP):8001
";
    let env = |k: &str| (k == "HOST_IP").then(|| "10.0.0.7".to_owned());
    let config = super::super::test_support::load_with_env(text, &env, &|| None).expect("loads");
    let super::super::RuntimeKind::Triton(t) = &config.runtime.kind else {
        panic!("{:?}", config.runtime.kind)
    };
    assert_eq!(t.client_endpoint, "10.0.0.7:8001");

    let got = errors(text);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(
        (got[0].path.as_str(), got[0].line),
        ("runtime.client_endpoint", Some(5))
    );
    assert!(
        got[0].message.contains("$HOST_IP is not set") && got[0].message.contains("status.hostIP"),
        "{}",
        got[0].message
    );
}

#[test]
fn a_reader_off_the_node_keeps_the_client_endpoints_references_and_still_checks_them() {
    use super::Reader;
    let text = |endpoint: &str| {
        format!(
            "node_name: n\nruntime:\n  kind: triton\n  endpoint: 127.0.0.1:8001\n  client_endpoint: {endpoint}\n{}",
            super::super::test_support::ONE_MODEL
        )
    };
    // The scheduler extender has no HOST_IP: the daemons' config still loads.
    let no_env = |_: &str| None;
    let config = super::super::test_support::load_as(
        &text("$(HOST_IP):8001"),
        &no_env,
        &|| None,
        Reader::OffNode,
    )
    .expect("loads off the node");
    let super::super::RuntimeKind::Triton(t) = &config.runtime.kind else {
        panic!("{:?}", config.runtime.kind)
    };
    assert_eq!(t.client_endpoint, "$(HOST_IP):8001", "kept as written");
    // Its syntax and shape are checked all the same.
    for bad in ["$(HOST-IP):8001", "$(HOST_IP", "$(HOST_IP)"] {
        let got =
            super::super::test_support::load_as(&text(bad), &no_env, &|| None, Reader::OffNode)
                .expect_err(bad)
                .errors()
                .to_vec();
        assert_eq!(
            got.iter()
                .map(|e| (e.path.as_str(), e.line))
                .collect::<Vec<_>>(),
            vec![("runtime.client_endpoint", Some(5))],
            "{bad}: {got:#?}"
        );
    }
}

#[test]
fn env_references_expand_like_kubernetes_and_bad_ones_are_named() {
    let env = |k: &str| match k {
        "A" => Some("x".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    assert_eq!(super::expand_env("$(A):1", &env), Ok("x:1".into()));
    assert_eq!(super::expand_env("$$(A)", &env), Ok("$(A)".into()));
    assert_eq!(super::expand_env("a$b", &env), Ok("a$b".into()));
    for (text, problem) in [
        ("$(A", "without its `)`"),
        ("$(a-b)", "not an environment variable name"),
        ("$()", "not an environment variable name"),
        ("$(EMPTY):1", "$EMPTY is not set"),
    ] {
        let e = super::expand_env(text, &env).unwrap_err();
        assert!(e.contains(problem), "{text}: {e}");
    }
}

#[test]
fn runtime_watch_and_measure_settings_have_defaults_and_bounds() {
    let text = "node_name: n\nruntime: { kind: triton, endpoint: 127.0.0.1:8001 }\n";
    let r = load(text).expect("loads").runtime;
    assert_eq!(
        (r.health_interval, r.reconcile_interval, r.measure_memory),
        (
            std::time::Duration::from_secs(2),
            std::time::Duration::from_secs(30),
            super::super::MeasureMemory::Auto
        )
    );
    let text = "\
node_name: n
runtime:
  kind: grpc
  endpoint: unix:///run/r.sock
  health_interval: 10ms
  reconcile_interval: 0s
  measure_memory: on
";
    let got = errors(text);
    let paths: Vec<(&str, Option<usize>)> = got.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert_eq!(
        paths,
        vec![
            ("runtime.health_interval", Some(5)),
            ("runtime.reconcile_interval", Some(6))
        ]
    );
    assert!(
        got[0].message.contains("at least 100ms"),
        "{}",
        got[0].message
    );
}

#[test]
fn watch_and_measure_settings_are_refused_with_the_bookkeeping_runtime() {
    let text = "\
node_name: n
runtime:
  health_interval: 1s
  measure_memory: off
";
    let got = errors(text);
    let paths: Vec<(&str, Option<usize>)> = got.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert_eq!(
        paths,
        vec![
            ("runtime.health_interval", Some(3)),
            ("runtime.measure_memory", Some(4))
        ]
    );
    assert!(
        got[0].message.contains("loads nothing"),
        "{}",
        got[0].message
    );
}

#[test]
fn slot_containers_see_the_gpus_with_bookkeeping_and_none_with_a_serving_runtime() {
    use super::super::SlotGpuVisibility;
    let visibility = |text: &str| {
        load(&format!("node_name: n\n{text}"))
            .expect("loads")
            .devices
            .slot_gpu_visibility
    };
    assert_eq!(visibility(""), SlotGpuVisibility::All);
    let triton = "runtime: { kind: triton, endpoint: 127.0.0.1:8001 }\n";
    assert_eq!(visibility(triton), SlotGpuVisibility::None);
    assert_eq!(
        visibility(&format!(
            "{triton}devices: {{ slot_gpu_visibility: all }}\n"
        )),
        SlotGpuVisibility::All
    );
    assert_eq!(
        visibility("devices: { slot_gpu_visibility: none }\n"),
        SlotGpuVisibility::None
    );
}
