//! Every metric family the daemon exports, in one list: the collector takes
//! names and help from here, the README's table is generated from here,
//! and a test checks that `/metrics` exports exactly these.
//!
//! Conventions (Prometheus's): base units in the name (`_bytes`,
//! `_seconds`); a total and its parts in separate families, so that a sum
//! over a label means something; label values from bounded sets only (a
//! `model` is a catalog name, or `_unknown` for a name outside the
//! catalog); every series exists from start, at zero.

/// The prefix of every family.
pub const PREFIX: &str = "vision";

/// What kind of metric a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    #[cfg(test)]
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// Without the prefix, and for counters without `_total` (the encoder
    /// adds both).
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

impl Family {
    /// The name as `/metrics` shows it: `vision_admissions_total`.
    #[cfg(test)]
    pub fn exported_name(&self) -> String {
        match self.kind {
            Kind::Counter => format!("{PREFIX}_{}_total", self.name),
            _ => format!("{PREFIX}_{}", self.name),
        }
    }
}

const fn family(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Family {
    Family {
        name,
        kind,
        labels,
        help,
    }
}

const GPU: &[&str] = &["gpu", "uuid"];

pub const BUILD_INFO: Family = family(
    "build_info",
    Kind::Gauge,
    &["version", "commit"],
    "Always 1; the daemon's version and the commit it was built from",
);
pub const ADMISSIONS: Family = family(
    "admissions",
    Kind::Counter,
    &["model", "outcome"],
    "Admissions by model and final outcome (granted_warm, granted_cold, queue_full, deadline_exceeded, ...)",
);
pub const ADMISSION_WAIT: Family = family(
    "admission_wait_seconds",
    Kind::Histogram,
    &["model", "warm"],
    "Time a granted admission waited for its lease (queue plus model load)",
);
pub const QUEUE_DEPTH: Family = family(
    "queue_depth",
    Kind::Gauge,
    &[],
    "Admissions waiting for a slot or GPU memory",
);
pub const QUEUE_CAPACITY: Family = family(
    "queue_capacity",
    Kind::Gauge,
    &[],
    "Admissions the queue holds before it refuses more (admission.queue_limit)",
);
pub const WAITING_ON_LOAD: Family = family(
    "waiting_on_load",
    Kind::Gauge,
    &[],
    "Admissions waiting for a model load",
);
pub const ACTIVE_LEASES: Family = family("active_leases", Kind::Gauge, &[], "Live leases");
pub const ALLOCATIONS: Family = family(
    "allocations",
    Kind::Gauge,
    &[],
    "Pod allocations (tokens) the daemon knows",
);
pub const LEASES_RELEASED: Family = family(
    "leases_released",
    Kind::Counter,
    &[],
    "Leases released by their holder",
);
pub const LEASES_EXPIRED: Family = family(
    "leases_expired",
    Kind::Counter,
    &[],
    "Leases reclaimed after their TTL without a KeepAlive",
);
pub const LEASES_REVOKED: Family = family(
    "leases_revoked",
    Kind::Counter,
    &[],
    "Leases taken away (GPU unhealthy, pod gone)",
);
pub const MODEL_LOADS: Family = family(
    "model_loads",
    Kind::Counter,
    &["model"],
    "Model loads started",
);
pub const MODEL_LOAD_FAILURES: Family = family(
    "model_load_failures",
    Kind::Counter,
    &["model"],
    "Model loads that failed or timed out",
);
pub const MODEL_LOAD_DURATION: Family = family(
    "model_load_duration_seconds",
    Kind::Histogram,
    &["model"],
    "Duration of successful model loads through the runtime",
);
pub const MODEL_LOADED_BYTES: Family = family(
    "model_loaded_bytes",
    Kind::Counter,
    &["model"],
    "Bytes of weights of the loads started",
);
pub const MODEL_EVICTIONS: Family = family(
    "model_evictions",
    Kind::Counter,
    &["model"],
    "Idle model copies evicted (policy, memory pressure or operator)",
);
pub const MODEL_COPIES: Family = family(
    "model_copies",
    Kind::Gauge,
    &["model", "state"],
    "Copies of the model on the node's GPUs, ready or loading",
);
pub const GPU_HEALTHY: Family =
    family("gpu_healthy", Kind::Gauge, GPU, "1 when the GPU is healthy");
pub const GPU_OVERCOMMITTED: Family = family(
    "gpu_overcommitted",
    Kind::Gauge,
    GPU,
    "1 while the GPU's pool holds more than it can (admissions there wait)",
);
pub const GPU_RESIDENT_MODELS: Family = family(
    "gpu_resident_models",
    Kind::Gauge,
    GPU,
    "Model copies resident or loading on the GPU",
);
pub const GPU_MEMORY_TOTAL: Family = family(
    "gpu_memory_total_bytes",
    Kind::Gauge,
    GPU,
    "The GPU's memory",
);
pub const GPU_MEMORY_RESERVED: Family = family(
    "gpu_memory_reserved_bytes",
    Kind::Gauge,
    GPU,
    "GPU memory kept out of the pool by configuration (gpus.reserve_mib)",
);
pub const GPU_MEMORY_EXTERNAL: Family = family(
    "gpu_memory_external_bytes",
    Kind::Gauge,
    GPU,
    "GPU memory used by processes the daemon does not account for",
);
pub const GPU_POOL_SIZE: Family = family(
    "gpu_pool_size_bytes",
    Kind::Gauge,
    GPU,
    "The GPU's pool: total - reserved - external",
);
pub const GPU_POOL: Family = family(
    "gpu_pool_bytes",
    Kind::Gauge,
    &["gpu", "uuid", "part"],
    "The pool's parts: carved (pods' vram), weights, working, free; they add up to the pool size unless it is over-committed",
);
pub const KUBELET_REGISTERED: Family = family(
    "kubelet_registered",
    Kind::Gauge,
    &["resource"],
    "1 while the device plugin is registered with kubelet",
);
pub const KUBELET_REGISTRATIONS: Family = family(
    "kubelet_registrations",
    Kind::Counter,
    &["resource"],
    "Successful device plugin registrations with kubelet",
);
pub const CLUSTER_PUBLISH_ERRORS: Family = family(
    "cluster_publish_errors",
    Kind::Counter,
    &[],
    "Failed writes to the Kubernetes API (labels, annotations, Events)",
);

pub const RUNTIME_UP: Family = family(
    "runtime_up",
    Kind::Gauge,
    &["runtime"],
    "1 while the model runtime answers (always 1 for bookkeeping); 0: nothing is admitted",
);
pub const RUNTIME_UNAVAILABLE: Family = family(
    "runtime_unavailable",
    Kind::Counter,
    &[],
    "Admissions and preloads answered UNAVAILABLE because the model runtime was unreachable",
);
pub const MODEL_WEIGHTS: Family = family(
    "model_weights_bytes",
    Kind::Gauge,
    &["model", "source"],
    "A model's weights per copy: the catalog's figure (source=catalog, from start) and what its last measured load took (source=measured, once measured)",
);

/// Every family, in the order of the README's table.
#[cfg(test)]
pub const ALL: &[Family] = &[
    BUILD_INFO,
    ADMISSIONS,
    ADMISSION_WAIT,
    QUEUE_DEPTH,
    QUEUE_CAPACITY,
    WAITING_ON_LOAD,
    ACTIVE_LEASES,
    ALLOCATIONS,
    LEASES_RELEASED,
    LEASES_EXPIRED,
    LEASES_REVOKED,
    MODEL_LOADS,
    MODEL_LOAD_FAILURES,
    MODEL_LOAD_DURATION,
    MODEL_LOADED_BYTES,
    MODEL_EVICTIONS,
    MODEL_COPIES,
    MODEL_WEIGHTS,
    GPU_HEALTHY,
    GPU_OVERCOMMITTED,
    GPU_RESIDENT_MODELS,
    GPU_MEMORY_TOTAL,
    GPU_MEMORY_RESERVED,
    GPU_MEMORY_EXTERNAL,
    GPU_POOL_SIZE,
    GPU_POOL,
    KUBELET_REGISTERED,
    KUBELET_REGISTRATIONS,
    CLUSTER_PUBLISH_ERRORS,
    RUNTIME_UP,
    RUNTIME_UNAVAILABLE,
];

/// The README's table of metric families (between its `metrics-table`
/// markers).
#[cfg(test)]
pub fn markdown_table() -> String {
    let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for f in ALL {
        let labels = if f.labels.is_empty() {
            "–".to_owned()
        } else {
            f.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            f.exported_name(),
            f.kind.as_str(),
            labels,
            f.help
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions() {
        let mut seen = std::collections::HashSet::new();
        for f in ALL {
            assert!(seen.insert(f.name), "{} listed twice", f.name);
            assert!(
                !f.name.contains("mib") && !f.name.ends_with("_total"),
                "{}: base units, and no _total (the encoder adds it)",
                f.name
            );
            assert!(
                f.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                f.name
            );
        }
    }
}

#[cfg(test)]
mod readme {
    //! The README's table of metric families is this module's table.

    const BEGIN: &str = "<!-- metrics-table:begin -->\n";
    const END: &str = "<!-- metrics-table:end -->";

    #[test]
    fn readme_table_matches_the_families_exported() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let start = readme.find(BEGIN).expect("the table's begin marker") + BEGIN.len();
        let end = readme.find(END).expect("the table's end marker");
        let want = super::markdown_table();
        if readme[start..end] == want {
            return;
        }
        if std::env::var_os("VISION_UPDATE_README").is_some() {
            let updated = format!("{}{want}{}", &readme[..start], &readme[end..]);
            std::fs::write(&path, updated).unwrap();
            return;
        }
        panic!(
            "README.md's metric table is stale; run `VISION_UPDATE_README=1 cargo test --lib readme` \
             and commit README.md. It should read:\n{want}"
        );
    }
}
