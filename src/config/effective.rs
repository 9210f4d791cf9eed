//! The effective config: what the daemon will run with, every default filled
//! in, as YAML that loads back to the same [`Config`].
//!
//! `check-config` prints it so an operator sees the defaults they did not
//! write, and can pin them by copying the output.

use super::duration;
use super::wire::{
    WireAdmission, WireBackend, WireCluster, WireConfig, WireDevices, WireDuration,
    WireEvictionPolicy, WireGpus, WireMeasureMemory, WireModel, WirePublish, WireRuntime,
    WireRuntimeKind, WireSimulatedGpu, WireSlotGpuVisibility, WireTelemetry,
};
use super::{
    Config, EvictionPolicy, GpuBackend, MeasureMemory, Publish, RuntimeKind, SlotGpuVisibility,
};

impl Config {
    /// The full effective configuration as YAML; loading it gives back an
    /// equal `Config` (durations print as `30s`-style strings).
    pub fn effective_yaml(&self) -> String {
        serde_yaml::to_string(&to_wire(self))
            // Plain strings, integers, floats and unit enums always serialize;
            // a unit test runs this on the dev and example configs.
            .expect("the wire types serialize to YAML")
    }
}

fn to_wire(config: &Config) -> WireConfig {
    let gpus = &config.gpus;
    let devices = &config.devices;
    let admission = &config.admission;
    WireConfig {
        node_name: Some(config.node_name.clone()),
        domain: Some(config.domain.clone()),
        gpus: Some(WireGpus {
            backend: Some(match gpus.backend {
                GpuBackend::Auto => WireBackend::Auto,
                GpuBackend::Nvml => WireBackend::Nvml,
                GpuBackend::Simulated => WireBackend::Simulated,
            }),
            reserve_mib: Some(gpus.reserve_mib),
            nvml_library: gpus
                .nvml_library
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            simulated: Some(
                gpus.simulated
                    .iter()
                    .map(|g| WireSimulatedGpu {
                        name: Some(g.name.clone()),
                        memory_mib: Some(g.memory_mib),
                        count: Some(g.count),
                    })
                    .collect(),
            ),
        }),
        devices: Some(WireDevices {
            slots_per_gpu: Some(devices.slots_per_gpu),
            vram_unit_mib: Some(devices.vram_unit_mib),
            vram_shareable_fraction: Some(devices.vram_shareable_fraction),
            health_recovery: Some(WireDuration(duration::format(devices.health_recovery))),
            release_grace: Some(WireDuration(duration::format(devices.release_grace))),
            cdi: Some(devices.cdi),
            container_socket_dir: Some(devices.container_socket_dir.to_string_lossy().into_owned()),
            slot_gpu_visibility: Some(match devices.slot_gpu_visibility {
                SlotGpuVisibility::All => WireSlotGpuVisibility::All,
                SlotGpuVisibility::None => WireSlotGpuVisibility::None,
            }),
        }),
        admission: Some(WireAdmission {
            queue_limit: Some(admission.queue_limit as u64),
            per_pod_queue_limit: Some(admission.per_pod_queue_limit as u64),
            per_pod_loads: Some(admission.per_pod_loads),
            default_timeout: Some(WireDuration(duration::format(admission.default_timeout))),
            lease_ttl: Some(WireDuration(duration::format(admission.lease_ttl))),
            eviction_policy: Some(match admission.eviction_policy {
                EvictionPolicy::Lru => WireEvictionPolicy::Lru,
                EvictionPolicy::GreedyDualSize => WireEvictionPolicy::GreedyDualSize,
            }),
            watch_streams_per_pod: Some(admission.watch_streams_per_pod),
        }),
        runtime: Some(match &config.runtime.kind {
            RuntimeKind::Bookkeeping { simulate_load_time } => WireRuntime {
                kind: Some(WireRuntimeKind::Bookkeeping),
                endpoint: None,
                client_endpoint: None,
                model_repository: None,
                load_timeout: Some(WireDuration(duration::format(config.runtime.load_timeout))),
                simulate_load_time: Some(*simulate_load_time),
                ..WireRuntime::default()
            },
            RuntimeKind::Grpc { endpoint } => WireRuntime {
                kind: Some(WireRuntimeKind::Grpc),
                endpoint: Some(endpoint.clone()),
                client_endpoint: None,
                model_repository: None,
                simulate_load_time: None,
                ..serving(config)
            },
            RuntimeKind::Triton(t) => WireRuntime {
                kind: Some(WireRuntimeKind::Triton),
                endpoint: Some(t.endpoint.clone()),
                client_endpoint: Some(t.client_endpoint.clone()),
                model_repository: t
                    .model_repository
                    .as_ref()
                    .map(|p| p.to_string_lossy().into_owned()),
                simulate_load_time: None,
                ..serving(config)
            },
        }),
        cluster: Some(WireCluster {
            publish: Some(match config.cluster.publish {
                Publish::Auto => WirePublish::Auto,
                Publish::Off => WirePublish::Off,
            }),
            annotation_interval: Some(WireDuration(duration::format(
                config.cluster.annotation_interval,
            ))),
        }),
        telemetry: Some(WireTelemetry {
            otlp_endpoint: config.telemetry.otlp_endpoint.clone(),
        }),
        models: Some(
            config
                .models
                .iter()
                .map(|m| WireModel {
                    name: Some(m.name.clone()),
                    runtime_name: match &config.runtime.kind {
                        RuntimeKind::Triton(t) => t.model_names.get(&m.name).cloned(),
                        _ => None,
                    },
                    weights_mib: Some(m.weights_mib),
                    working_mib: Some(m.working_mib),
                    max_concurrency: Some(m.max_concurrency),
                    load_ms: Some(m.load_ms),
                    task_ms: Some(m.task_ms),
                    task_types: Some(m.task_types.clone()),
                })
                .collect(),
        ),
    }
}

/// The runtime keys of a serving runtime (grpc, triton).
fn serving(config: &Config) -> WireRuntime {
    let r = &config.runtime;
    WireRuntime {
        load_timeout: Some(WireDuration(duration::format(r.load_timeout))),
        health_interval: Some(WireDuration(duration::format(r.health_interval))),
        reconcile_interval: Some(WireDuration(duration::format(r.reconcile_interval))),
        measure_memory: Some(match r.measure_memory {
            MeasureMemory::Auto => WireMeasureMemory::Auto,
            MeasureMemory::On => WireMeasureMemory::On,
            MeasureMemory::Off => WireMeasureMemory::Off,
        }),
        ..WireRuntime::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, load_str};

    const EXAMPLE_YAML: &str = include_str!("../../config/example.yaml");

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn round_trip(config: &Config) {
        let yaml = config.effective_yaml();
        let again = load_str(&yaml, "effective", &no_env)
            .unwrap_or_else(|e| panic!("effective YAML does not load:\n{e}\n{yaml}"));
        assert_eq!(&again, config, "{yaml}");
    }

    #[test]
    fn the_effective_dev_config_loads_back_to_an_equal_config() {
        round_trip(&Config::dev());
    }

    #[test]
    fn the_effective_example_config_loads_back_to_an_equal_config() {
        let env = |k: &str| (k == "NODE_NAME").then(|| "gpu-node-7".to_owned());
        let config = load_str(EXAMPLE_YAML, "config/example.yaml", &env).expect("example loads");
        round_trip(&config);
    }

    #[test]
    fn a_config_of_defaults_prints_every_default() {
        let text = format!("node_name: n1\n{}", crate::config::test_support::ONE_MODEL);
        let config = load_str(&text, "t", &no_env).expect("loads");
        let yaml = config.effective_yaml();
        for line in [
            "domain: vision.ai",
            "  backend: auto",
            "  reserve_mib: 512",
            "  slots_per_gpu: 8",
            "  vram_unit_mib: 1024",
            "  vram_shareable_fraction: 0.5",
            "  queue_limit: 256",
            "  default_timeout: 30s",
            "  lease_ttl: 1m",
            "  eviction_policy: lru",
        ] {
            assert!(
                yaml.lines().any(|l| l == line),
                "missing {line:?} in\n{yaml}"
            );
        }
        assert!(!yaml.contains("nvml_library"), "{yaml}");
        round_trip(&config);
    }

    #[test]
    fn a_triton_runtime_survives_the_round_trip() {
        let text = "\
node_name: n
runtime: { kind: triton, endpoint: 'http://triton:8001', client_endpoint: '10.0.0.1:8001', model_repository: /models }
models:
  - { name: a, runtime_name: a_onnx, weights_mib: 1, working_mib: 1, load_ms: 0 }
  - { name: b, weights_mib: 1, working_mib: 1, load_ms: 0 }
";
        let config = load_str(text, "t", &no_env).expect("loads");
        let yaml = config.effective_yaml();
        assert!(yaml.contains("runtime_name: a_onnx"), "{yaml}");
        round_trip(&config);
    }

    #[test]
    fn unusual_values_survive_the_round_trip() {
        let text = "\
node_name: '123'
gpus:
  backend: nvml
  nvml_library: /opt/nvidia/lib64/libnvidia-ml.so.1
  reserve_mib: 0
  simulated: [{ name: 'true', memory_mib: 1024 }]
devices: { vram_shareable_fraction: 0.1, vram_unit_mib: 256 }
admission: { default_timeout: 0s, lease_ttl: 1h1m1s1ms, eviction_policy: greedy-dual-size }
models:
  - { name: a.b_c, weights_mib: 1, working_mib: 1, load_ms: 0, task_types: ['null', '1'] }
";
        let config = load_str(text, "t", &no_env).expect("loads");
        round_trip(&config);
    }
}
