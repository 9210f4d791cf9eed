//! What the status page shows, in its own types: the page (`/`), its live
//! updates (`/events`) and `/status.json` all render one [`PageView`].
//! The shell builds it from its snapshot; nothing here knows the shell.

use serde::Serialize;

/// One snapshot of the node for the status page. Sizes in MiB, as the
/// ledger counts them; times as RFC 3339 wall-clock timestamps (UTC).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PageView {
    pub node: String,
    /// The daemon's version (and commit, when the build knew it).
    pub version: String,
    /// `nvml` or `simulated`.
    pub gpu_backend: String,
    /// When the snapshot was taken.
    pub taken_at: String,
    pub gpus: Vec<GpuView>,
    pub queue: QueueView,
    /// Live leases grouped by the pod (allocation) that holds them.
    pub pods: Vec<PodView>,
    pub counters: CountersView,
    /// The most recent events, newest first.
    pub events: Vec<EventView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuView {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub healthy: bool,
    /// The pool holds more than it can; admissions on this GPU wait.
    pub overcommitted: bool,
    pub total_mib: u64,
    pub reserve_mib: u64,
    /// Used by processes the daemon does not account for.
    pub external_mib: u64,
    /// The pool: total − reserve − external.
    pub usable_mib: u64,
    /// The pool's parts: pods' vram carve-outs, resident weights, admitted
    /// tasks' working memory, and what is free.
    pub carved_mib: u64,
    pub weights_mib: u64,
    pub working_mib: u64,
    pub free_mib: u64,
    /// Most recently used first.
    pub residents: Vec<ResidentView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResidentView {
    pub model: String,
    pub weights_mib: u64,
    pub state: ResidentState,
    /// Tasks using (or waiting on the load of) this copy.
    pub pins: u32,
    /// Milliseconds since the copy became idle (warm copies only).
    pub idle_ms: Option<u64>,
}

/// What a resident copy is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResidentState {
    /// Loaded and idle: the next admission for it is warm; evictable.
    Warm,
    /// Being loaded; admissions may join the load.
    Loading,
    /// Loaded and in use by tasks; never evicted while pinned.
    Pinned,
}

impl ResidentState {
    pub fn as_str(self) -> &'static str {
        match self {
            ResidentState::Warm => "warm",
            ResidentState::Loading => "loading",
            ResidentState::Pinned => "pinned",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueView {
    /// Admissions waiting for a slot or GPU memory.
    pub queued: u64,
    /// Admissions waiting for a model load.
    pub waiting_on_load: u64,
    /// The queue's bound (admission.queue_limit).
    pub capacity: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodView {
    /// The pod (`namespace/name`) when kubelet told which pod holds the
    /// allocation; otherwise a stable name of the allocation itself.
    pub pod: String,
    pub leases: Vec<LeaseView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseView {
    pub lease_id: u64,
    pub model: String,
    pub gpu_index: u32,
    pub warm: bool,
    /// Milliseconds it waited for the grant (queue plus load).
    pub waited_ms: u64,
    pub expires_in_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CountersView {
    pub granted_warm: u64,
    pub granted_cold: u64,
    /// Admissions that ended without a lease.
    pub rejected: u64,
    pub loads_started: u64,
    pub loads_failed: u64,
    pub evictions: u64,
    pub expired: u64,
    pub revoked: u64,
}

impl CountersView {
    /// Warm grants among all grants, when there were any.
    pub fn hit_rate(&self) -> Option<f64> {
        let granted = self.granted_warm + self.granted_cold;
        (granted > 0).then(|| self.granted_warm as f64 / granted as f64)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventView {
    /// When it happened (RFC 3339, UTC).
    pub at: String,
    pub level: Level,
    /// The event's kind (`lease_granted`, `model_loaded`, `gpu_health`, …).
    pub kind: String,
    /// One line for a person: `lease 3 granted: sd3b on GPU 0 (warm)`.
    pub text: String,
}

/// Whether an event deserves a person's attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Info,
    Warning,
}
