//! The engine's vocabulary: time, identifiers, leases, effects and errors.

use std::fmt;
use std::ops::Add;
use std::time::Duration;

/// A point on the engine's timeline, in milliseconds since an epoch the
/// caller chose (the shell uses its start instant; the simulator uses 0).
///
/// The engine never reads a clock: every operation takes `now: Time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(u64);

impl Time {
    pub const ZERO: Time = Time(0);

    pub const fn from_millis(ms: u64) -> Time {
        Time(ms)
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// `self − earlier`, or zero when `earlier` is later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    /// Adds whole milliseconds, saturating at the end of time.
    fn add(self, d: Duration) -> Time {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Time(self.0.saturating_add(ms))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t={}ms", self.0)
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// Index of a GPU in the engine (the inventory's order).
    GpuId(u32),
    "GPU "
);
id_type!(
    /// Index of a model in the catalog.
    ModelId(u32),
    "model"
);
id_type!(
    /// A granted lease. Never reused within one engine.
    LeaseId(u64),
    "lease "
);
id_type!(
    /// An admission that has not been answered yet. Never reused.
    TicketId(u64),
    "ticket "
);
id_type!(
    /// One load of one model copy; lets a late load result be told apart
    /// from a newer load of the same model on the same GPU.
    LoadId(u64),
    "load "
);

/// What a caller asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmitRequest {
    /// The allocation token the pod got from Allocate.
    pub token: String,
    pub model: String,
    /// Must be one the model serves, when the catalog lists any.
    pub task_type: Option<String>,
    /// Higher runs first; equal priorities run in arrival order.
    pub priority: i32,
    pub wait: Wait,
}

/// How long an admission may wait for a slot or for memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The configured default timeout.
    Default,
    /// At most this long; a zero duration behaves like [`Wait::NoQueue`].
    For(Duration),
    /// Never queue: answer now (a cold load may still be started or joined).
    NoQueue,
}

/// The engine's immediate answer to an admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Warm and fitting: the lease is live now.
    Granted(Lease),
    /// Waiting for a load or for capacity; exactly one [`Effect::Grant`] or
    /// [`Effect::Reject`] for this ticket follows (or [`crate::engine::Engine::cancel`]).
    Pending(TicketId),
}

/// A granted lease, as callers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: LeaseId,
    pub gpu: GpuId,
    pub model: ModelId,
    /// The model was resident and ready when the admission was placed.
    pub warm: bool,
    pub requested_at: Time,
    pub granted_at: Time,
    pub expires_at: Time,
}

impl Lease {
    /// Time the caller waited between asking and getting the lease.
    pub fn waited(&self) -> Duration {
        self.granted_at.saturating_since(self.requested_at)
    }
}

/// A decision the shell carries out. Effects for one GPU must be carried out
/// in order (an `Unload` listed before a `Load` frees the memory that load needs).
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Start loading `model` on `gpu`; report with `Engine::load_finished(load, ..)`.
    Load {
        load: LoadId,
        gpu: GpuId,
        model: ModelId,
    },
    /// Drop the copy of `model` on `gpu` (cancel its load first if one is running).
    Unload {
        gpu: GpuId,
        model: ModelId,
        reason: UnloadReason,
    },
    /// A pending admission got its lease.
    Grant { ticket: TicketId, lease: Lease },
    /// A pending admission failed; this is its final answer.
    Reject { ticket: TicketId, reason: Rejection },
    /// A lease outlived its TTL without a KeepAlive (the client probably died).
    Expire { lease: Lease },
    /// A live lease was taken away.
    Revoke { lease: Lease, reason: RevokeReason },
    /// The GPU's pool holds more than it can: admissions there wait until it drains.
    Overcommitted {
        gpu: GpuId,
        committed_mib: u64,
        usable_mib: u64,
    },
    /// The GPU left the over-committed state.
    Drained { gpu: GpuId },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnloadReason {
    /// Evicted (idle, least valuable) to make room for `for_model`, or for a
    /// vram carve-out / external memory growth when `None`.
    Evicted { for_model: Option<ModelId> },
    /// An operator asked (`Evict`).
    Admin,
    /// The GPU turned unhealthy.
    GpuUnhealthy,
    /// The daemon is shutting down.
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    /// The lease's GPU turned unhealthy.
    GpuUnhealthy,
    /// The pod's allocation was released (pod gone).
    AllocationReleased,
    /// The model runtime no longer holds the lease's copy (it restarted).
    RuntimeLost,
}

/// Why a pending admission ended without a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The deadline passed while waiting.
    DeadlineExceeded { waited: Duration },
    /// The model load this admission waited on failed.
    LoadFailed { gpu: GpuId, message: String },
    /// Every GPU turned unhealthy while this admission waited.
    NoHealthyGpu,
    /// After a health or memory change no healthy GPU could ever hold the model.
    NoGpuFits {
        need_mib: u64,
        largest_usable_mib: u64,
    },
    /// The pod's allocation was released.
    AllocationReleased,
    /// The daemon is shutting down.
    ShuttingDown,
}

/// Why an admission was refused at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    #[error("unknown allocation token")]
    UnknownToken,
    #[error("the token's allocation holds vram, not slots; admissions need a slot allocation")]
    NotSlotAllocation,
    #[error("unknown model {name:?}; known models: {}", known.join(", "))]
    UnknownModel { name: String, known: Vec<String> },
    #[error("model {model:?} does not serve task type {task_type:?}; it serves: {}", served.join(", "))]
    TaskTypeNotServed {
        model: String,
        task_type: String,
        served: Vec<String>,
    },
    #[error(
        "model {model:?} needs {need_mib} MiB (weights + working) but the largest healthy GPU pool is {largest_usable_mib} MiB"
    )]
    NeverFits {
        model: String,
        need_mib: u64,
        largest_usable_mib: u64,
    },
    #[error("no healthy GPU")]
    NoHealthyGpu,
    #[error("all {slots} slots of this allocation hold leases")]
    NoFreeSlot { slots: u32 },
    #[error("no capacity now and the request may not wait")]
    NoCapacityNow,
    #[error("admission queue is full ({limit} waiting)")]
    QueueFull { limit: usize },
    /// This pod's own bound (`admission.per_pod_queue_limit`); other pods are unaffected.
    #[error(
        "this pod already has {limit} admissions waiting, its limit (admission.per_pod_queue_limit)"
    )]
    PodQueueFull { limit: usize },
    /// The admission needs a new copy and its pod has `admission.per_pod_loads` in flight.
    #[error(
        "this pod already has {limit} model loads in flight, its limit (admission.per_pod_loads)"
    )]
    PodLoadLimit { limit: u32 },
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

/// Errors of Release / KeepAlive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// Unknown, already released, expired, or held by another token.
    #[error("unknown {0} (released, expired, or not yours)")]
    UnknownLease(LeaseId),
}

/// Errors of allocation bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("allocation token already in use")]
    DuplicateToken,
    #[error("unknown allocation token")]
    UnknownToken,
    #[error("unknown {0}")]
    UnknownGpu(GpuId),
    #[error("an allocation needs at least one slot or one MiB")]
    Empty,
}

/// Errors of the operator's calls (Preload / Evict).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("unknown model {0:?}")]
    UnknownModel(String),
    #[error("unknown {0}")]
    UnknownGpu(GpuId),
    #[error("{0} is unhealthy")]
    GpuUnhealthy(GpuId),
    #[error("model {model:?} is already resident on {gpu}")]
    AlreadyResident { model: String, gpu: GpuId },
    #[error("model {model:?} is not resident{}", gpu.map(|g| format!(" on {g}")).unwrap_or_default())]
    NotResident { model: String, gpu: Option<GpuId> },
    #[error("model {model:?} on {gpu} is pinned by {pins} task(s); release them first")]
    Pinned {
        model: String,
        gpu: GpuId,
        pins: u32,
    },
    #[error("model {model:?} on {gpu} is still loading")]
    Loading { model: String, gpu: GpuId },
    #[error(
        "no GPU can hold model {model:?} ({need_mib} MiB) without evicting pinned models; most that could be freed: {best_free_mib} MiB"
    )]
    NoRoom {
        model: String,
        need_mib: u64,
        best_free_mib: u64,
    },
}
