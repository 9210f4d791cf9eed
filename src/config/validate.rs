//! Validation: wire types → domain types, every problem reported at once.
//!
//! Each section is checked on its own (defaults filled in, sizes > 0, names
//! well formed), then the cross-field checks of [`super::capacity`] run on
//! whatever was valid enough to check. Every error carries the key path and
//! the position of the offending value from the [`Index`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::capacity;
use super::duration;
use super::error::Error;
use super::names;
use super::position::{Index, join};
use super::wire::{
    WireAdmission, WireBackend, WireCluster, WireConfig, WireDevices, WireDuration,
    WireEvictionPolicy, WireGpus, WireMeasureMemory, WireModel, WirePublish, WireRuntime,
    WireRuntimeKind, WireSimulatedGpu, WireSlotGpuVisibility, WireTelemetry,
};
use super::{
    AdmissionConfig, ClusterConfig, Config, DevicesConfig, EvictionPolicy, GpuBackend, GpuConfig,
    MeasureMemory, ModelSpec, Publish, RuntimeConfig, RuntimeKind, SimulatedGpu, SlotGpuVisibility,
    TelemetryConfig, TritonConfig,
};

pub(crate) const DEFAULT_DOMAIN: &str = "vision.ai";
pub(crate) const DEFAULT_RESERVE_MIB: u64 = 512;
pub(crate) const DEFAULT_SLOTS_PER_GPU: u32 = 8;
pub(crate) const DEFAULT_VRAM_UNIT_MIB: u64 = 1024;
pub(crate) const DEFAULT_VRAM_SHAREABLE_FRACTION: f64 = 0.5;
pub(crate) const DEFAULT_QUEUE_LIMIT: u64 = 256;
/// An eighth of the default queue: eight pods at their limit fill it, and a
/// pod with a handful of slots rarely has a use for more than this waiting.
pub(crate) const DEFAULT_PER_POD_QUEUE_LIMIT: u64 = 32;
/// A pod may warm a few models at once; its further cold admissions wait
/// for one of those loads to finish.
pub(crate) const DEFAULT_PER_POD_LOADS: u32 = 4;
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(60);
/// A pod's worker processes each holding a stream or two.
pub(crate) const DEFAULT_WATCH_STREAMS_PER_POD: u32 = 16;
pub(crate) const DEFAULT_MAX_CONCURRENCY: u32 = 4;
pub(crate) const DEFAULT_TASK_MS: u64 = 100;
pub(crate) const DEFAULT_SIMULATED_COUNT: u32 = 1;
pub(crate) const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(120);
pub(crate) const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(2);
pub(crate) const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_ANNOTATION_INTERVAL: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_HEALTH_RECOVERY: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_RELEASE_GRACE: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_CONTAINER_SOCKET_DIR: &str = "/var/run/vision";

/// Bounds on the simulated inventory: real nodes have at most 16 GPUs of at
/// most a few hundred GiB. Beyond these, a typo (`count: 4294967295`) would
/// make the daemon allocate without limit, build a status larger than a
/// gRPC message and take minutes to shut down.
pub const MAX_SIMULATED_GPUS: u64 = 64;
pub const MIN_GPU_MEMORY_MIB: u64 = 1024;
pub const MAX_GPU_MEMORY_MIB: u64 = 1 << 20;
/// The longest simulated GPU name (NVML's name buffer is 96 bytes): the
/// name is in every Status answer, once per GPU.
pub const MAX_GPU_NAME_BYTES: usize = 96;
/// The most models one catalog may list.
pub const MAX_MODELS: usize = 1024;
/// The shortest runtime health or reconcile interval.
pub(crate) const MIN_RUNTIME_INTERVAL: Duration = Duration::from_millis(100);

/// Where values not in the file come from; injected so tests do not depend on
/// the machine they run on.
pub(crate) struct Sources<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub hostname: &'a dyn Fn() -> Option<String>,
    pub reader: Reader,
}

/// Who reads the config: the node's daemon, or a reader off the node that
/// shares its file (the scheduler extender reads the daemons' ConfigMap for
/// the domain and the catalog).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// `$(NAME)` references in node-local settings resolve from the
    /// environment, and an unset one is an error.
    Daemon,
    /// Node-local settings keep their `$(NAME)` references as written (the
    /// reader has not the node's environment, e.g. no `HOST_IP`); their
    /// syntax is still checked.
    OffNode,
}

/// Builds the domain [`Config`] from `wire`, or returns every problem found.
pub(crate) fn validate(
    wire: WireConfig,
    index: &Index,
    sources: &Sources<'_>,
) -> Result<Config, Vec<Error>> {
    let mut c = Check {
        index,
        errors: Vec::new(),
    };
    let node_name = node_name(&mut c, wire.node_name, sources);
    let domain = wire.domain.unwrap_or_else(|| DEFAULT_DOMAIN.to_owned());
    if let Some(problem) = names::resource_domain_problem(&domain) {
        c.fail("domain", problem);
    }
    let gpus = gpus(&mut c, wire.gpus.unwrap_or_default());
    let (mut devices, slot_gpus) = devices(&mut c, wire.devices.unwrap_or_default());
    let admission = admission(&mut c, wire.admission.unwrap_or_default());
    let mut runtime = runtime(&mut c, wire.runtime.unwrap_or_default(), sources);
    devices.slot_gpu_visibility = match (slot_gpus, &runtime.kind) {
        (Some(WireSlotGpuVisibility::All), _) => SlotGpuVisibility::All,
        (Some(WireSlotGpuVisibility::None), _) => SlotGpuVisibility::None,
        (None, RuntimeKind::Bookkeeping { .. }) => SlotGpuVisibility::All,
        (None, _) => SlotGpuVisibility::None,
    };
    let cluster = cluster(&mut c, wire.cluster.unwrap_or_default());
    let telemetry = telemetry(&mut c, wire.telemetry.unwrap_or_default());
    let (models, runtime_names) = models(&mut c, wire.models.unwrap_or_default());
    runtime_model_names(&mut c, &mut runtime.kind, &models, runtime_names);
    if models.is_empty() {
        c.fail(
            "models",
            "the model catalog is empty; list at least one model with its name, weights_mib, \
             working_mib and load_ms (see config/example.yaml)",
        );
    } else if models.len() > MAX_MODELS {
        c.fail(
            "models",
            format!(
                "lists {} models; a catalog holds at most {MAX_MODELS}",
                models.len()
            ),
        );
    }
    cross_checks(&mut c, &gpus, &devices, &models);
    if c.errors.is_empty() {
        Ok(Config {
            node_name,
            domain,
            gpus,
            devices,
            admission,
            runtime,
            cluster,
            telemetry,
            models,
        })
    } else {
        Err(c.errors)
    }
}

/// Collects errors, each located through the index.
struct Check<'a> {
    index: &'a Index,
    errors: Vec<Error>,
}

impl Check<'_> {
    fn fail(&mut self, path: &str, message: impl Into<String>) {
        let pos = self.index.locate(path);
        self.errors.push(Error {
            path: path.to_owned(),
            message: message.into(),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
        });
    }

    /// The value of a required key, or a default placeholder after reporting
    /// it missing (at the mapping it belongs in).
    fn required<T: Default>(&mut self, path: &str, value: Option<T>) -> T {
        value.unwrap_or_else(|| {
            self.fail(path, "is required");
            T::default()
        })
    }

    fn positive<T: Default + PartialEq>(&mut self, path: &str, value: T) -> T {
        if value == T::default() {
            self.fail(path, "must be > 0");
        }
        value
    }

    fn duration(&mut self, path: &str, value: Option<WireDuration>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(WireDuration(text)) => duration::parse(&text).unwrap_or_else(|problem| {
                self.fail(path, problem.to_string());
                default
            }),
        }
    }
}

/// `node_name`, else `$NODE_NAME` (the Downward API's `spec.nodeName` in a
/// DaemonSet), else the kernel host name lowercased as kubelet does.
fn node_name(c: &mut Check<'_>, configured: Option<String>, sources: &Sources<'_>) -> String {
    const PATH: &str = "node_name";
    let from_env = || {
        (sources.env)("NODE_NAME")
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
    };
    let from_host = || {
        (sources.hostname)()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
    };
    let (name, origin) = if let Some(name) = configured {
        (name, "")
    } else if let Some(name) = from_env() {
        (name, "taken from $NODE_NAME: ")
    } else if let Some(name) = from_host() {
        (name, "taken from /proc/sys/kernel/hostname: ")
    } else {
        c.fail(
            PATH,
            "not set, and neither $NODE_NAME nor /proc/sys/kernel/hostname gives one; \
             set node_name, or NODE_NAME from the Downward API (spec.nodeName)",
        );
        return String::new();
    };
    if let Some(problem) = names::dns_subdomain_problem(&name) {
        c.fail(PATH, format!("{origin}{problem}"));
    }
    name
}

fn gpus(c: &mut Check<'_>, wire: WireGpus) -> GpuConfig {
    let backend = match wire.backend.unwrap_or(WireBackend::Auto) {
        WireBackend::Auto => GpuBackend::Auto,
        WireBackend::Nvml => GpuBackend::Nvml,
        WireBackend::Simulated => GpuBackend::Simulated,
    };
    let nvml_library = wire.nvml_library.map(|path| {
        if path.is_empty() {
            c.fail(
                "gpus.nvml_library",
                "must not be empty; leave the key out to let the loader search",
            );
        }
        PathBuf::from(path)
    });
    let simulated: Vec<SimulatedGpu> = wire
        .simulated
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, gpu)| simulated_gpu(c, i, gpu))
        .collect();
    if backend == GpuBackend::Simulated && simulated.is_empty() {
        c.fail(
            "gpus.simulated",
            "must list at least one GPU when gpus.backend is `simulated`",
        );
    }
    let total: u64 = simulated.iter().map(|g| u64::from(g.count)).sum();
    if total > MAX_SIMULATED_GPUS {
        c.fail(
            "gpus.simulated",
            format!(
                "lists {total} GPUs in all; a node has at most {MAX_SIMULATED_GPUS} \
                 (lower the `count` of its entries)"
            ),
        );
    }
    GpuConfig {
        backend,
        reserve_mib: wire.reserve_mib.unwrap_or(DEFAULT_RESERVE_MIB),
        simulated,
        nvml_library,
    }
}

fn simulated_gpu(c: &mut Check<'_>, i: usize, wire: WireSimulatedGpu) -> SimulatedGpu {
    let base = format!("gpus.simulated[{i}]");
    let name_path = join(&base, "name");
    let present = wire.name.is_some();
    let name = c.required(&name_path, wire.name);
    if present && name.trim().is_empty() {
        c.fail(&name_path, "must not be empty");
    }
    if name.len() > MAX_GPU_NAME_BYTES {
        c.fail(
            &name_path,
            format!(
                "is {} bytes long; a GPU name has at most {MAX_GPU_NAME_BYTES} (NVML's limit)",
                name.len()
            ),
        );
    }
    let memory_path = join(&base, "memory_mib");
    let memory_mib = required_positive(c, &memory_path, wire.memory_mib);
    if memory_mib > 0 && !(MIN_GPU_MEMORY_MIB..=MAX_GPU_MEMORY_MIB).contains(&memory_mib) {
        c.fail(
            &memory_path,
            format!(
                "{memory_mib} MiB is not a GPU's memory; give a size from {MIN_GPU_MEMORY_MIB} \
                 to {MAX_GPU_MEMORY_MIB} MiB (24 GiB = 24576)"
            ),
        );
    }
    let count = wire.count.unwrap_or(DEFAULT_SIMULATED_COUNT);
    c.positive(&join(&base, "count"), count);
    SimulatedGpu {
        name,
        memory_mib,
        count,
    }
}

/// The devices section, and `slot_gpu_visibility` as given (its default
/// depends on the runtime).
fn devices(c: &mut Check<'_>, wire: WireDevices) -> (DevicesConfig, Option<WireSlotGpuVisibility>) {
    let slots_per_gpu = wire.slots_per_gpu.unwrap_or(DEFAULT_SLOTS_PER_GPU);
    c.positive("devices.slots_per_gpu", slots_per_gpu);
    let vram_unit_mib = wire.vram_unit_mib.unwrap_or(DEFAULT_VRAM_UNIT_MIB);
    c.positive("devices.vram_unit_mib", vram_unit_mib);
    let fraction = wire
        .vram_shareable_fraction
        .unwrap_or(DEFAULT_VRAM_SHAREABLE_FRACTION);
    if !(0.0..=1.0).contains(&fraction) {
        c.fail(
            "devices.vram_shareable_fraction",
            format!("must be within [0, 1], got {fraction}"),
        );
    }
    let health_recovery = c.duration(
        "devices.health_recovery",
        wire.health_recovery,
        DEFAULT_HEALTH_RECOVERY,
    );
    let release_grace = c.duration(
        "devices.release_grace",
        wire.release_grace,
        DEFAULT_RELEASE_GRACE,
    );
    let container_socket_dir = wire
        .container_socket_dir
        .unwrap_or_else(|| DEFAULT_CONTAINER_SOCKET_DIR.to_owned());
    if !container_socket_dir.starts_with('/') {
        c.fail(
            "devices.container_socket_dir",
            format!("must be an absolute path inside the container, got {container_socket_dir:?}"),
        );
    }
    let devices = DevicesConfig {
        slots_per_gpu,
        vram_unit_mib,
        vram_shareable_fraction: fraction,
        health_recovery,
        release_grace,
        cdi: wire.cdi.unwrap_or(false),
        container_socket_dir: PathBuf::from(container_socket_dir),
        slot_gpu_visibility: SlotGpuVisibility::All,
    };
    (devices, wire.slot_gpu_visibility)
}

fn admission(c: &mut Check<'_>, wire: WireAdmission) -> AdmissionConfig {
    let queue_limit = wire.queue_limit.unwrap_or(DEFAULT_QUEUE_LIMIT);
    c.positive("admission.queue_limit", queue_limit);
    let queue_limit = usize::try_from(queue_limit).unwrap_or_else(|_| {
        c.fail(
            "admission.queue_limit",
            format!("must be at most {}", usize::MAX),
        );
        0
    });
    let per_pod_queue_limit = match wire.per_pod_queue_limit {
        Some(limit) => {
            c.positive("admission.per_pod_queue_limit", limit);
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            if queue_limit > 0 && limit > queue_limit {
                c.fail(
                    "admission.per_pod_queue_limit",
                    format!(
                        "must be at most admission.queue_limit ({queue_limit}): one pod must not be able to fill the node's queue"
                    ),
                );
            }
            limit
        }
        // Never above a smaller node-wide limit.
        None => (DEFAULT_PER_POD_QUEUE_LIMIT as usize).min(queue_limit.max(1)),
    };
    let per_pod_loads = wire.per_pod_loads.unwrap_or(DEFAULT_PER_POD_LOADS);
    c.positive("admission.per_pod_loads", per_pod_loads);
    // 0 is a valid default timeout: callers that give none fail fast instead
    // of queueing.
    let default_timeout = c.duration(
        "admission.default_timeout",
        wire.default_timeout,
        DEFAULT_TIMEOUT,
    );
    let lease_ttl = c.duration("admission.lease_ttl", wire.lease_ttl, DEFAULT_LEASE_TTL);
    if lease_ttl.is_zero() {
        c.fail(
            "admission.lease_ttl",
            "must be > 0: a lease that expires at once reclaims every task",
        );
    }
    let eviction_policy = match wire.eviction_policy.unwrap_or(WireEvictionPolicy::Lru) {
        WireEvictionPolicy::Lru => EvictionPolicy::Lru,
        WireEvictionPolicy::GreedyDualSize => EvictionPolicy::GreedyDualSize,
    };
    let watch_streams_per_pod = wire
        .watch_streams_per_pod
        .unwrap_or(DEFAULT_WATCH_STREAMS_PER_POD);
    c.positive("admission.watch_streams_per_pod", watch_streams_per_pod);
    AdmissionConfig {
        queue_limit,
        per_pod_queue_limit,
        per_pod_loads,
        default_timeout,
        lease_ttl,
        eviction_policy,
        watch_streams_per_pod,
    }
}

fn cluster(c: &mut Check<'_>, wire: WireCluster) -> ClusterConfig {
    let annotation_interval = c.duration(
        "cluster.annotation_interval",
        wire.annotation_interval,
        DEFAULT_ANNOTATION_INTERVAL,
    );
    if annotation_interval.is_zero() {
        c.fail(
            "cluster.annotation_interval",
            "must be > 0: every admission would write to the API server",
        );
    }
    ClusterConfig {
        publish: match wire.publish.unwrap_or(WirePublish::Auto) {
            WirePublish::Auto => Publish::Auto,
            WirePublish::Off => Publish::Off,
        },
        annotation_interval,
    }
}

fn telemetry(c: &mut Check<'_>, wire: WireTelemetry) -> TelemetryConfig {
    let otlp_endpoint = wire.otlp_endpoint.filter(|e| !e.is_empty());
    if let Some(e) = &otlp_endpoint
        && !(e.starts_with("http://") || e.starts_with("https://"))
    {
        c.fail(
            "telemetry.otlp_endpoint",
            format!("{e:?}: expected an OTLP/gRPC URL such as http://otel-collector:4317"),
        );
    }
    TelemetryConfig { otlp_endpoint }
}

fn runtime(c: &mut Check<'_>, wire: WireRuntime, sources: &Sources<'_>) -> RuntimeConfig {
    let load_timeout = c.duration(
        "runtime.load_timeout",
        wire.load_timeout,
        DEFAULT_LOAD_TIMEOUT,
    );
    if load_timeout.is_zero() {
        c.fail("runtime.load_timeout", "must be > 0");
    }
    let health_interval = c.duration(
        "runtime.health_interval",
        wire.health_interval.clone(),
        DEFAULT_HEALTH_INTERVAL,
    );
    let reconcile_interval = c.duration(
        "runtime.reconcile_interval",
        wire.reconcile_interval.clone(),
        DEFAULT_RECONCILE_INTERVAL,
    );
    for (key, d) in [
        ("runtime.health_interval", health_interval),
        ("runtime.reconcile_interval", reconcile_interval),
    ] {
        if d < MIN_RUNTIME_INTERVAL {
            c.fail(
                key,
                format!(
                    "must be at least {}: each round calls the model runtime",
                    duration::format(MIN_RUNTIME_INTERVAL)
                ),
            );
        }
    }
    let measure_memory = match wire.measure_memory {
        None | Some(WireMeasureMemory::Auto) => MeasureMemory::Auto,
        Some(WireMeasureMemory::On) => MeasureMemory::On,
        Some(WireMeasureMemory::Off) => MeasureMemory::Off,
    };
    let kind = wire.kind.unwrap_or(WireRuntimeKind::Bookkeeping);
    if kind == WireRuntimeKind::Bookkeeping {
        for (key, present) in [
            ("runtime.health_interval", wire.health_interval.is_some()),
            (
                "runtime.reconcile_interval",
                wire.reconcile_interval.is_some(),
            ),
            ("runtime.measure_memory", wire.measure_memory.is_some()),
        ] {
            if present {
                c.fail(
                    key,
                    "is only used with `kind: grpc` or `kind: triton` (the bookkeeping runtime \
                     loads nothing)",
                );
            }
        }
    }
    if kind != WireRuntimeKind::Triton {
        for (key, present) in [
            ("runtime.client_endpoint", wire.client_endpoint.is_some()),
            ("runtime.model_repository", wire.model_repository.is_some()),
        ] {
            if present {
                c.fail(key, "is only used with `kind: triton`");
            }
        }
    }
    let kind = match kind {
        WireRuntimeKind::Bookkeeping => {
            if wire.endpoint.is_some() {
                c.fail(
                    "runtime.endpoint",
                    "is only used with `kind: grpc` or `kind: triton`",
                );
            }
            RuntimeKind::Bookkeeping {
                simulate_load_time: wire.simulate_load_time.unwrap_or(false),
            }
        }
        WireRuntimeKind::Grpc => {
            if wire.simulate_load_time.is_some() {
                c.fail(
                    "runtime.simulate_load_time",
                    "is only used with `kind: bookkeeping`",
                );
            }
            let endpoint = wire.endpoint.unwrap_or_default();
            if let Some(problem) = endpoint_problem(&endpoint) {
                c.fail("runtime.endpoint", problem);
            }
            RuntimeKind::Grpc { endpoint }
        }
        WireRuntimeKind::Triton => {
            if wire.simulate_load_time.is_some() {
                c.fail(
                    "runtime.simulate_load_time",
                    "is only used with `kind: bookkeeping`",
                );
            }
            RuntimeKind::Triton(triton(
                c,
                wire.endpoint,
                wire.client_endpoint,
                wire.model_repository,
                sources,
            ))
        }
    };
    RuntimeConfig {
        kind,
        load_timeout,
        health_interval,
        reconcile_interval,
        measure_memory,
    }
}

/// `runtime` with `kind: triton`; `model_names` is filled in from the catalog.
fn triton(
    c: &mut Check<'_>,
    endpoint: Option<String>,
    client_endpoint: Option<String>,
    model_repository: Option<String>,
    sources: &Sources<'_>,
) -> TritonConfig {
    let endpoint = endpoint.unwrap_or_default();
    if endpoint.is_empty() {
        c.fail(
            "runtime.endpoint",
            "is required with `kind: triton`: Triton's gRPC address, e.g. 127.0.0.1:8001",
        );
    } else if let Some(problem) = tcp_address_problem(&endpoint) {
        c.fail("runtime.endpoint", problem);
    }
    let client_endpoint = match client_endpoint.filter(|e| !e.is_empty()) {
        Some(e) => match expand_for(sources, &e) {
            Ok(expanded) => {
                if let Some(problem) = tcp_address_problem(&expanded) {
                    c.fail("runtime.client_endpoint", problem);
                }
                match sources.reader {
                    Reader::Daemon => expanded,
                    Reader::OffNode => e,
                }
            }
            Err(problem) => {
                c.fail("runtime.client_endpoint", problem);
                e
            }
        },
        None => endpoint.clone(),
    };
    let model_repository = model_repository.map(|path| {
        if !path.starts_with('/') {
            c.fail(
                "runtime.model_repository",
                format!("{path:?}: must be an absolute path (Triton's model repository as the daemon sees it)"),
            );
        }
        PathBuf::from(path)
    });
    TritonConfig {
        endpoint,
        client_endpoint,
        model_repository,
        model_names: Default::default(),
    }
}

/// `text` expanded for `sources`' reader: from the environment for the
/// daemon; off the node, each reference stands for an IP address, so that
/// the text's syntax and shape are checked all the same.
fn expand_for(sources: &Sources<'_>, text: &str) -> Result<String, String> {
    match sources.reader {
        Reader::Daemon => expand_env(text, sources.env),
        Reader::OffNode => expand_env(text, &|_| Some("192.0.2.1".to_owned())),
    }
}

/// Expands `$(NAME)` references to the daemon's environment, the way
/// Kubernetes expands them in a container's `env` and `args`: with `HOST_IP`
/// set from the Downward API (`status.hostIP`), `$(HOST_IP):8001` names this
/// node's Triton for the pods on it. `$$` is a literal `$`. An unset
/// variable is an error (Kubernetes would leave the text as is; a lease
/// naming `$(HOST_IP)` helps nobody).
fn expand_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("$(") {
            let Some(end) = after.find(')') else {
                return Err(format!("{text:?}: `$(` without its `)`"));
            };
            let name = &after[..end];
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "{text:?}: `$({name})` is not an environment variable name"
                ));
            }
            let value = env(name).filter(|v| !v.is_empty()).ok_or_else(|| {
                format!(
                    "{text:?}: ${name} is not set in the daemon's environment (the chart sets \
                     HOST_IP from the Downward API, status.hostIP)"
                )
            })?;
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Triton's gRPC address: `host:port` or `http://host:port` (Triton serves
/// gRPC on TCP only).
fn tcp_address_problem(address: &str) -> Option<String> {
    let rest = address.strip_prefix("http://").unwrap_or(address);
    match rest.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty()
                && !host.contains(['/', ' ', '\t'])
                && port.parse::<u16>().is_ok_and(|p| p > 0) =>
        {
            None
        }
        _ => Some(format!(
            "{address:?}: expected host:port or http://host:port, e.g. 127.0.0.1:8001"
        )),
    }
}

/// Puts `models[].runtime_name` into the Triton config, or reports it where
/// no runtime uses it. Two catalog models may not share one Triton model:
/// the runtime tracks each Triton model's copies as one set.
fn runtime_model_names(
    c: &mut Check<'_>,
    kind: &mut RuntimeKind,
    models: &[ModelSpec],
    runtime_names: Vec<(usize, String)>,
) {
    let RuntimeKind::Triton(triton) = kind else {
        for (i, _) in runtime_names {
            c.fail(
                &format!("models[{i}].runtime_name"),
                "is only used with `runtime.kind: triton`",
            );
        }
        return;
    };
    let mut given: HashMap<usize, String> = HashMap::new();
    for (i, name) in runtime_names {
        if let Some(problem) = names::triton_model_name_problem(&name) {
            c.fail(&format!("models[{i}].runtime_name"), problem);
        }
        given.insert(i, name);
    }
    let mut first_use: HashMap<String, usize> = HashMap::new();
    for (i, model) in models.iter().enumerate() {
        let triton_name = given.get(&i).unwrap_or(&model.name).clone();
        if triton_name.is_empty() {
            continue;
        }
        let path = if given.contains_key(&i) {
            format!("models[{i}].runtime_name")
        } else {
            format!("models[{i}].name")
        };
        match first_use.get(&triton_name) {
            Some(first) => c.fail(
                &path,
                format!(
                    "Triton model `{triton_name}` is already served for models[{first}]; \
                     each catalog model needs its own Triton model"
                ),
            ),
            None => {
                first_use.insert(triton_name.clone(), i);
            }
        }
        if given.contains_key(&i) && triton_name != model.name {
            triton.model_names.insert(model.name.clone(), triton_name);
        }
    }
}

/// A model runtime is reached over a Unix socket (`unix:///abs/path`) or TCP
/// (`http://host:port`).
fn endpoint_problem(endpoint: &str) -> Option<String> {
    if endpoint.is_empty() {
        return Some("is required with `kind: grpc` (e.g. unix:///run/model-runtime.sock)".into());
    }
    if let Some(path) = endpoint.strip_prefix("unix://") {
        return (!path.starts_with('/'))
            .then(|| format!("{endpoint:?}: a unix endpoint needs an absolute path, e.g. unix:///run/model-runtime.sock"));
    }
    if let Some(rest) = endpoint.strip_prefix("http://") {
        return (rest.is_empty() || rest.contains(char::is_whitespace))
            .then(|| format!("{endpoint:?}: expected http://host:port"));
    }
    Some(format!(
        "{endpoint:?}: expected unix:///path or http://host:port"
    ))
}

/// The catalog, and each `runtime_name` given (by index), checked later
/// against the runtime.
fn models(c: &mut Check<'_>, wire: Vec<WireModel>) -> (Vec<ModelSpec>, Vec<(usize, String)>) {
    let mut first_use: HashMap<String, usize> = HashMap::new();
    let mut models = Vec::with_capacity(wire.len());
    let mut runtime_names = Vec::new();
    for (i, model) in wire.into_iter().enumerate() {
        let base = format!("models[{i}]");
        if let Some(runtime_name) = model.runtime_name {
            runtime_names.push((i, runtime_name));
        }
        let name_path = join(&base, "name");
        let present = model.name.is_some();
        let name = c.required(&name_path, model.name);
        if present && let Some(problem) = names::model_name_problem(&name) {
            c.fail(&name_path, problem);
        }
        if !name.is_empty() {
            match first_use.get(&name) {
                Some(first) => c.fail(
                    &name_path,
                    format!("duplicate model name `{name}`; models[{first}] already uses it"),
                ),
                None => {
                    first_use.insert(name.clone(), i);
                }
            }
        }
        let weights_mib = required_positive(c, &join(&base, "weights_mib"), model.weights_mib);
        let working_mib = required_positive(c, &join(&base, "working_mib"), model.working_mib);
        let max_concurrency = model.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY);
        c.positive(&join(&base, "max_concurrency"), max_concurrency);
        // A load time of 0 is allowed: an already-resident or trivial model.
        let load_ms = c.required(&join(&base, "load_ms"), model.load_ms);
        let task_ms = model.task_ms.unwrap_or(DEFAULT_TASK_MS);
        c.positive(&join(&base, "task_ms"), task_ms);
        let task_types = model.task_types.unwrap_or_default();
        for (j, task_type) in task_types.iter().enumerate() {
            if let Some(problem) = names::task_type_problem(task_type) {
                c.fail(&format!("{base}.task_types[{j}]"), problem);
            }
        }
        models.push(ModelSpec {
            name,
            weights_mib,
            working_mib,
            max_concurrency,
            load_ms,
            task_ms,
            task_types,
        });
    }
    (models, runtime_names)
}

/// A required size: missing is reported as required, zero as `> 0`.
fn required_positive(c: &mut Check<'_>, path: &str, value: Option<u64>) -> u64 {
    match value {
        None => c.required(path, value),
        Some(v) => c.positive(path, v),
    }
}

/// Whether the simulated list is within the bounds `gpus` checks (count and
/// sizes), so that capacity can be judged on it.
fn within_bounds(simulated: &[SimulatedGpu]) -> bool {
    let total: u64 = simulated.iter().map(|g| u64::from(g.count)).sum();
    total <= MAX_SIMULATED_GPUS
        && simulated.iter().all(|g| {
            g.memory_mib == 0 || (MIN_GPU_MEMORY_MIB..=MAX_GPU_MEMORY_MIB).contains(&g.memory_mib)
        })
}

/// Checks across sections; each runs only on inputs valid enough to judge.
fn cross_checks(
    c: &mut Check<'_>,
    gpus: &GpuConfig,
    devices: &DevicesConfig,
    models: &[ModelSpec],
) {
    // A simulated list out of bounds has its own errors; judging capacity on
    // it would only add noise (billions of devices).
    let list_ok = within_bounds(&gpus.simulated);
    let reserve_ok = match capacity::reserve_problem(gpus.reserve_mib, &gpus.simulated) {
        _ if !list_ok => false,
        Some(problem) => {
            c.fail("gpus.reserve_mib", problem);
            false
        }
        None => true,
    };
    // Model fit is only judged against simulated GPUs, whenever they may be
    // used: with `simulated`, and with `auto`, which falls back to them when
    // NVML is absent. With `nvml` the GPUs are unknown until runtime, where
    // admission refuses a model that fits no GPU (FAILED_PRECONDITION with
    // the numbers).
    let simulated = gpus.backend == GpuBackend::Simulated;
    let may_simulate =
        simulated || (gpus.backend == GpuBackend::Auto && !gpus.simulated.is_empty());
    let node_known = if may_simulate {
        reserve_ok && !gpus.simulated.is_empty()
    } else {
        true
    };
    if may_simulate && reserve_ok {
        for (i, model) in models.iter().enumerate() {
            if let Some(problem) = capacity::unfit_model_problem(
                model.weights_mib,
                model.working_mib,
                gpus.reserve_mib,
                &gpus.simulated,
            ) {
                c.fail(&format!("models[{i}]"), problem);
            }
        }
    }
    let fraction_ok = (0.0..=1.0).contains(&devices.vram_shareable_fraction);
    if node_known
        && fraction_ok
        && devices.vram_unit_mib > 0
        && let Some(problem) = capacity::vram_listandwatch_problem(gpus, devices)
    {
        c.fail("devices.vram_unit_mib", problem);
    }
    if node_known
        && devices.slots_per_gpu > 0
        && let Some(problem) = capacity::slot_listandwatch_problem(gpus, devices)
    {
        c.fail("devices.slots_per_gpu", problem);
    }
}

#[cfg(test)]
mod tests;
