//! Configuration: YAML wire types, validation into the domain types below.
//!
//! The domain types here are what the rest of the daemon consumes; they are
//! valid by construction (every check of [`load_str`] has passed).
//!
//! # Layout
//! - `wire`: serde structs for the file as written (all keys optional).
//! - `position`: key path → line/column index, for errors that point at the
//!   line to edit.
//! - `validate` (+ `names`, `capacity`): wire → domain types, every problem
//!   at once.
//! - `load`: the three passes tied together; `effective`: back to YAML.
//! - [`duration`]: `30s`-style durations, shared with `visionctl`.
//! - [`Error`]/[`Errors`]: problems with key path and position.

use std::path::PathBuf;
use std::time::Duration;

mod capacity;
pub mod duration;
mod effective;
mod error;
mod load;
mod names;
mod position;
#[cfg(test)]
mod test_support;
mod validate;
mod wire;

pub use capacity::{LISTANDWATCH_LIMIT_BYTES, VRAM_DEVICE_WIRE_BYTES};
pub use error::{Error, Errors};
pub use load::{load_file, load_shared_file, load_str};
pub use names::{MAX_MODEL_NAME_BYTES, MAX_TASK_TYPE_BYTES};
pub use validate::{
    MAX_GPU_MEMORY_MIB, MAX_GPU_NAME_BYTES, MAX_MODELS, MAX_SIMULATED_GPUS, MIN_GPU_MEMORY_MIB,
};

/// The development config (simulated GPUs, the seed models), built into the
/// binary so `simulate` and local runs need no file.
pub const DEV_YAML: &str = include_str!("../../config/dev.yaml");

impl Config {
    /// The embedded [`DEV_YAML`] config.
    ///
    /// It sets `node_name` itself, so the environment does not matter; a unit
    /// test proves it validates, which is why this cannot panic.
    pub fn dev() -> Config {
        load_str(DEV_YAML, "config/dev.yaml (embedded)", &|_| None)
            .unwrap_or_else(|errors| panic!("the embedded dev config is invalid:\n{errors}"))
    }
}

/// The validated daemon configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Kubernetes node this daemon runs on (`node_name`, default `$NODE_NAME`,
    /// else the host name).
    pub node_name: String,
    /// Extended-resource and label domain, e.g. `vision.ai`.
    pub domain: String,
    pub gpus: GpuConfig,
    pub devices: DevicesConfig,
    pub admission: AdmissionConfig,
    pub runtime: RuntimeConfig,
    pub cluster: ClusterConfig,
    pub telemetry: TelemetryConfig,
    /// The model catalog, in file order. Names are unique.
    pub models: Vec<ModelSpec>,
}

/// Which GPU inventory to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuBackend {
    /// NVML when `libnvidia-ml` loads, else the simulated list (with a warning).
    Auto,
    Nvml,
    Simulated,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GpuConfig {
    pub backend: GpuBackend,
    /// MiB per GPU kept out of the pool (CUDA context, fragmentation headroom).
    pub reserve_mib: u64,
    /// Simulated GPUs, expanded from `{name, memory_mib, count}` entries.
    pub simulated: Vec<SimulatedGpu>,
    /// Explicit path of `libnvidia-ml.so.1`; `None` lets the loader search.
    pub nvml_library: Option<PathBuf>,
}

/// One simulated GPU model line (`count` identical GPUs).
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatedGpu {
    pub name: String,
    pub memory_mib: u64,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DevicesConfig {
    /// `<domain>/slot` devices per healthy GPU.
    pub slots_per_gpu: u32,
    /// MiB per `<domain>/vram` device.
    pub vram_unit_mib: u64,
    /// Fraction (0..=1) of each GPU's pool that may be carved out as vram.
    pub vram_shareable_fraction: f64,
    /// How long a GPU must stay healthy before its devices are advertised
    /// Healthy again (one flap does not bounce pods' scheduling).
    pub health_recovery: Duration,
    /// How long an allocation's devices must be absent from kubelet's
    /// PodResources before the allocation is released (token revoked).
    pub release_grace: Duration,
    /// Also return CDI device names (`nvidia.com/gpu=<uuid>`) from Allocate.
    pub cdi: bool,
    /// Where Allocate mounts the task socket's directory inside containers
    /// (`VISION_SOCKET` is `<dir>/agent.sock`).
    pub container_socket_dir: PathBuf,
    /// Whether a slot container sees the node's GPUs (`NVIDIA_VISIBLE_DEVICES`).
    pub slot_gpu_visibility: SlotGpuVisibility,
}

/// What a `<domain>/slot` container sees of the node's GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotGpuVisibility {
    /// Every GPU (`NVIDIA_VISIBLE_DEVICES=all`): the task runs its model on
    /// the GPU its lease names. The default with the bookkeeping runtime.
    All,
    /// None (`NVIDIA_VISIBLE_DEVICES=void`, which also overrides an image's
    /// own `all`): the task sends its work to the model runtime. The
    /// default with a serving runtime (grpc, triton).
    None,
}

/// Which idle model to evict first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvictionPolicy {
    /// Least recently used (default).
    #[default]
    Lru,
    /// Cost-aware GreedyDual-Size, cost = the model's load time.
    GreedyDualSize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionConfig {
    /// Most admissions waiting in the queue at once.
    pub queue_limit: usize,
    /// Most admissions one pod (allocation token) may have waiting at once,
    /// in the queue or on a model load: one pod cannot fill the node's queue.
    pub per_pod_queue_limit: usize,
    /// Most model loads one pod's admissions may have in flight at once
    /// (a load goes on when its caller gives up, so this bounds how much of
    /// the cache one pod can churn).
    pub per_pod_loads: u32,
    /// How long an admission waits when the caller gives no timeout.
    pub default_timeout: Duration,
    /// Lease lifetime; `KeepAlive` extends a lease by this much.
    pub lease_ttl: Duration,
    pub eviction_policy: EvictionPolicy,
    /// Most Watch streams one pod (one allocation token) may hold open on
    /// the task socket; more are RESOURCE_EXHAUSTED.
    pub watch_streams_per_pod: u32,
}

/// Publishing to the Kubernetes API (node labels, annotations, Events).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// `Auto`: publish when an in-cluster config or `KUBECONFIG` is found.
    pub publish: Publish,
    /// At most one annotation write per interval; the latest state wins.
    pub annotation_interval: Duration,
}

/// Whether cluster publishing may run (an enum, not a boolean: subsystems that can be off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    Auto,
    Off,
}

/// Trace export. The standard `OTEL_*` variables take precedence.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TelemetryConfig {
    /// OTLP/gRPC endpoint (`http://collector:4317`); `None`: only `OTEL_*` env.
    pub otlp_endpoint: Option<String>,
}

/// Where model weights are really loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    pub kind: RuntimeKind,
    /// A load that takes longer fails (its waiting admissions get UNAVAILABLE).
    pub load_timeout: Duration,
    /// How often a serving runtime's readiness is checked (grpc, triton).
    pub health_interval: Duration,
    /// How often the ledger is reconciled with the runtime's list of copies
    /// while it answers (grpc, triton).
    pub reconcile_interval: Duration,
    /// Whether loads and unloads are measured in the GPU's used memory.
    pub measure_memory: MeasureMemory,
}

/// Whether the daemon measures what a load really took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeasureMemory {
    /// With NVML GPUs and a serving runtime (the default).
    Auto,
    /// Always with a serving runtime: on simulated GPUs, the used memory that
    /// tests and demos set through the fault handle.
    On,
    Off,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeKind {
    /// No model server: the daemon keeps the ledger only (pods run their own
    /// model code). `simulate_load_time` makes each load take the catalog's
    /// `load_ms`, for demos and the dev config.
    Bookkeeping { simulate_load_time: bool },
    /// A node-local model server implementing `vision.v1.ModelRuntime`, at
    /// `unix:///path` or `http://host:port`.
    Grpc { endpoint: String },
    /// Triton Inference Server in explicit model-control mode, driven over
    /// its gRPC API.
    Triton(TritonConfig),
}

/// How the daemon reaches Triton, and what Triton calls the catalog's models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TritonConfig {
    /// Triton's gRPC address as the daemon dials it (`host:port` or
    /// `http://host:port`).
    pub endpoint: String,
    /// What leases tell pods (`host:port`, as Triton's clients take it);
    /// `endpoint` unless set.
    pub client_endpoint: String,
    /// Triton's model repository as the daemon sees it (read-only): where it
    /// reads a model's `config.pbtxt` to pin copies to GPUs. Without it,
    /// copies are not pinned and the repository's own config stands.
    pub model_repository: Option<PathBuf>,
    /// Catalog name → Triton model name, for the models whose names differ
    /// (`models[].runtime_name`).
    pub model_names: std::collections::BTreeMap<String, String>,
}

impl TritonConfig {
    /// Triton's name for the catalog model `model`.
    pub fn triton_name<'a>(&'a self, model: &'a str) -> &'a str {
        self.model_names.get(model).map_or(model, String::as_str)
    }
}

/// One catalog entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub name: String,
    /// Resident weights on one GPU.
    pub weights_mib: u64,
    /// Working memory of one running task.
    pub working_mib: u64,
    /// Most concurrent tasks one resident copy serves.
    pub max_concurrency: u32,
    /// Expected load time (used by the simulated runtime, GDS cost, simulator).
    pub load_ms: u64,
    /// Typical task duration (simulator, status estimates).
    pub task_ms: u64,
    /// Task types the model serves (e.g. `detect`); empty = any.
    pub task_types: Vec<String>,
}
