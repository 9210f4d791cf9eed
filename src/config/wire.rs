//! Serde wire types: the YAML file exactly as written.
//!
//! Kept apart from the domain types so the file format can stay stable (snake
//! case, units in names) while the daemon's types evolve, and so that every
//! field is optional here: a missing key is reported by validation, with the
//! others, instead of stopping serde at the first one. Unknown keys are not
//! rejected by serde (`deny_unknown_fields` would also stop at the first);
//! [`super::load`] collects them all with `serde_ignored`.
//!
//! The same types serialize the effective config, with every field filled in.

use serde::{Deserialize, Deserializer, Serialize, de};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(
    expecting = "a mapping of config keys (node_name, domain, gpus, devices, admission, runtime, cluster, telemetry, models)"
)]
pub(crate) struct WireConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus: Option<WireGpus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<WireDevices>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission: Option<WireAdmission>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<WireRuntime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<WireCluster>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<WireTelemetry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<WireModel>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(expecting = "a mapping of GPU settings (backend, reserve_mib, nvml_library, simulated)")]
pub(crate) struct WireGpus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<WireBackend>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserve_mib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nvml_library: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simulated: Option<Vec<WireSimulatedGpu>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum WireBackend {
    Auto,
    Nvml,
    Simulated,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(expecting = "a mapping with name, memory_mib and count")]
pub(crate) struct WireSimulatedGpu {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(
    expecting = "a mapping of device settings (slots_per_gpu, vram_unit_mib, vram_shareable_fraction, health_recovery, release_grace, cdi, container_socket_dir, slot_gpu_visibility)"
)]
pub(crate) struct WireDevices {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots_per_gpu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vram_unit_mib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vram_shareable_fraction: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_recovery: Option<WireDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_grace: Option<WireDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cdi: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_socket_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot_gpu_visibility: Option<WireSlotGpuVisibility>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum WireSlotGpuVisibility {
    All,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum WireMeasureMemory {
    Auto,
    On,
    Off,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(
    expecting = "a mapping of admission settings (queue_limit, per_pod_queue_limit, per_pod_loads, default_timeout, lease_ttl, eviction_policy, watch_streams_per_pod)"
)]
pub(crate) struct WireAdmission {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_pod_queue_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_pod_loads: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_timeout: Option<WireDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_ttl: Option<WireDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eviction_policy: Option<WireEvictionPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch_streams_per_pod: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum WireEvictionPolicy {
    Lru,
    GreedyDualSize,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(
    expecting = "a mapping of model runtime settings (kind, endpoint, client_endpoint, model_repository, load_timeout, simulate_load_time, health_interval, reconcile_interval, measure_memory)"
)]
pub(crate) struct WireRuntime {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<WireRuntimeKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_repository: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_timeout: Option<WireDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simulate_load_time: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_interval: Option<WireDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconcile_interval: Option<WireDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measure_memory: Option<WireMeasureMemory>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(expecting = "a mapping of cluster settings (publish, annotation_interval)")]
pub(crate) struct WireCluster {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish: Option<WirePublish>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotation_interval: Option<WireDuration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum WirePublish {
    Auto,
    Off,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(expecting = "a mapping of telemetry settings (otlp_endpoint)")]
pub(crate) struct WireTelemetry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum WireRuntimeKind {
    Bookkeeping,
    Grpc,
    Triton,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(
    expecting = "a mapping of model settings (name, runtime_name, weights_mib, working_mib, max_concurrency, load_ms, task_ms, task_types)"
)]
pub(crate) struct WireModel {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights_mib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_mib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_types: Option<Vec<String>>,
}

/// A duration as written (`30s`), parsed by validation so that a bad one is
/// reported with all the other errors. A bare number is accepted here and
/// turned into text, so that validation can say "add a unit" rather than
/// serde's "invalid type: integer".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub(crate) struct WireDuration(pub String);

impl<'de> Deserialize<'de> for WireDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = WireDuration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration such as `30s`, `500ms` or `1m30s`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<WireDuration, E> {
                Ok(WireDuration(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<WireDuration, E> {
                Ok(WireDuration(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<WireDuration, E> {
                Ok(WireDuration(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<WireDuration, E> {
                Ok(WireDuration(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The keys each mapping accepts, for "did you mean" hints on unknown keys.
/// A test checks these lists against what the structs serialize.
pub(crate) const CONFIG_KEYS: &[&str] = &[
    "node_name",
    "domain",
    "gpus",
    "devices",
    "admission",
    "runtime",
    "cluster",
    "telemetry",
    "models",
];
pub(crate) const GPUS_KEYS: &[&str] = &["backend", "reserve_mib", "nvml_library", "simulated"];
pub(crate) const SIMULATED_GPU_KEYS: &[&str] = &["name", "memory_mib", "count"];
pub(crate) const DEVICES_KEYS: &[&str] = &[
    "slots_per_gpu",
    "vram_unit_mib",
    "vram_shareable_fraction",
    "health_recovery",
    "release_grace",
    "cdi",
    "container_socket_dir",
    "slot_gpu_visibility",
];
pub(crate) const ADMISSION_KEYS: &[&str] = &[
    "queue_limit",
    "per_pod_queue_limit",
    "per_pod_loads",
    "default_timeout",
    "lease_ttl",
    "eviction_policy",
    "watch_streams_per_pod",
];
pub(crate) const CLUSTER_KEYS: &[&str] = &["publish", "annotation_interval"];
pub(crate) const TELEMETRY_KEYS: &[&str] = &["otlp_endpoint"];
pub(crate) const RUNTIME_KEYS: &[&str] = &[
    "kind",
    "endpoint",
    "client_endpoint",
    "model_repository",
    "load_timeout",
    "simulate_load_time",
    "health_interval",
    "reconcile_interval",
    "measure_memory",
];
pub(crate) const MODEL_KEYS: &[&str] = &[
    "name",
    "runtime_name",
    "weights_mib",
    "working_mib",
    "max_concurrency",
    "load_ms",
    "task_ms",
    "task_types",
];

/// One step of a key path, as `serde_ignored` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

/// The keys valid in the mapping at `parent`, or none if it is not one of
/// ours.
pub(crate) fn known_keys(parent: &[Segment]) -> &'static [&'static str] {
    use Segment::{Index, Key};
    match parent {
        [] => CONFIG_KEYS,
        [Key(k)] if k == "gpus" => GPUS_KEYS,
        [Key(k)] if k == "devices" => DEVICES_KEYS,
        [Key(k)] if k == "admission" => ADMISSION_KEYS,
        [Key(k)] if k == "runtime" => RUNTIME_KEYS,
        [Key(k)] if k == "cluster" => CLUSTER_KEYS,
        [Key(k)] if k == "telemetry" => TELEMETRY_KEYS,
        [Key(g), Key(s), Index(_)] if g == "gpus" && s == "simulated" => SIMULATED_GPU_KEYS,
        [Key(m), Index(_)] if m == "models" => MODEL_KEYS,
        _ => &[],
    }
}

/// `[Key(models), Index(1), Key(name)]` → `models[1].name`.
pub(crate) fn path_string(segments: &[Segment]) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => {
                out.push_str(&format!("[{i}]"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_of<T: Serialize>(value: &T) -> Vec<String> {
        let value = serde_yaml::to_value(value).expect("serializes");
        let map = value.as_mapping().expect("a mapping");
        map.keys()
            .map(|k| k.as_str().expect("string key").to_owned())
            .collect()
    }

    fn d() -> Option<WireDuration> {
        Some(WireDuration("1s".into()))
    }

    #[test]
    fn the_known_key_lists_match_the_wire_structs() {
        let config = WireConfig {
            node_name: Some(String::new()),
            domain: Some(String::new()),
            gpus: Some(WireGpus::default()),
            devices: Some(WireDevices::default()),
            admission: Some(WireAdmission::default()),
            runtime: Some(WireRuntime::default()),
            cluster: Some(WireCluster::default()),
            telemetry: Some(WireTelemetry::default()),
            models: Some(vec![]),
        };
        assert_eq!(keys_of(&config), CONFIG_KEYS);
        let gpus = WireGpus {
            backend: Some(WireBackend::Auto),
            reserve_mib: Some(1),
            nvml_library: Some(String::new()),
            simulated: Some(vec![]),
        };
        assert_eq!(keys_of(&gpus), GPUS_KEYS);
        let gpu = WireSimulatedGpu {
            name: Some(String::new()),
            memory_mib: Some(1),
            count: Some(1),
        };
        assert_eq!(keys_of(&gpu), SIMULATED_GPU_KEYS);
        let devices = WireDevices {
            slots_per_gpu: Some(1),
            vram_unit_mib: Some(1),
            vram_shareable_fraction: Some(0.5),
            health_recovery: d(),
            release_grace: d(),
            cdi: Some(false),
            container_socket_dir: Some(String::new()),
            slot_gpu_visibility: Some(WireSlotGpuVisibility::All),
        };
        assert_eq!(keys_of(&devices), DEVICES_KEYS);
        let admission = WireAdmission {
            queue_limit: Some(1),
            per_pod_queue_limit: Some(1),
            per_pod_loads: Some(1),
            default_timeout: d(),
            lease_ttl: d(),
            eviction_policy: Some(WireEvictionPolicy::Lru),
            watch_streams_per_pod: Some(1),
        };
        assert_eq!(keys_of(&admission), ADMISSION_KEYS);
        let runtime = WireRuntime {
            kind: Some(WireRuntimeKind::Grpc),
            endpoint: Some(String::new()),
            client_endpoint: Some(String::new()),
            model_repository: Some(String::new()),
            load_timeout: d(),
            simulate_load_time: Some(false),
            health_interval: d(),
            reconcile_interval: d(),
            measure_memory: Some(WireMeasureMemory::Auto),
        };
        assert_eq!(keys_of(&runtime), RUNTIME_KEYS);
        let cluster = WireCluster {
            publish: Some(WirePublish::Auto),
            annotation_interval: d(),
        };
        assert_eq!(keys_of(&cluster), CLUSTER_KEYS);
        let telemetry = WireTelemetry {
            otlp_endpoint: Some(String::new()),
        };
        assert_eq!(keys_of(&telemetry), TELEMETRY_KEYS);
        let model = WireModel {
            name: Some(String::new()),
            runtime_name: Some(String::new()),
            weights_mib: Some(1),
            working_mib: Some(1),
            max_concurrency: Some(1),
            load_ms: Some(1),
            task_ms: Some(1),
            task_types: Some(vec![]),
        };
        assert_eq!(keys_of(&model), MODEL_KEYS);
    }

    #[test]
    fn a_duration_may_be_written_as_a_bare_number_for_validation_to_reject() {
        let d: WireDuration = serde_yaml::from_str("30").expect("parses");
        assert_eq!(d, WireDuration("30".into()));
        let d: WireDuration = serde_yaml::from_str("1m30s").expect("parses");
        assert_eq!(d, WireDuration("1m30s".into()));
    }

    #[test]
    fn eviction_policies_are_spelled_in_kebab_case() {
        let p: WireEvictionPolicy = serde_yaml::from_str("greedy-dual-size").expect("parses");
        assert_eq!(p, WireEvictionPolicy::GreedyDualSize);
    }

    #[test]
    fn path_string_joins_keys_with_dots_and_indexes_with_brackets() {
        let segments = [
            Segment::Key("models".into()),
            Segment::Index(1),
            Segment::Key("name".into()),
        ];
        assert_eq!(path_string(&segments), "models[1].name");
        assert_eq!(known_keys(&segments[..2]), MODEL_KEYS);
    }
}
