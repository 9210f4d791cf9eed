//! GPU discovery: the [`Inventory`] trait and its two implementations.
//!
//! - NVML (`nvml-wrapper`): real GPUs, memory v2, UUID, name, and critical Xid
//!   events watched on a dedicated blocking thread.
//! - Simulated: GPUs listed in the config, with a [`FaultHandle`] that marks a
//!   GPU unhealthy/healthy or sets its external memory use — for tests, the
//!   simulator and demos.
//!
//! [`open()`] picks one from [`crate::config::GpuBackend`]; `auto` uses NVML
//! when the library loads and otherwise falls back to the simulated list,
//! logging one warning that says why.
//!
//! # Layout
//! - `error`: the typed [`Error`].
//! - `open`: backend selection and the `auto` fallback.
//! - `simulated`: the config-driven inventory and its [`FaultHandle`].
//! - `nvml`: discovery and snapshots through NVML.
//! - `nvml_watch`: the Xid/ECC event thread behind NVML's `watch_health`.
//! - `xid`: which Xids make a GPU unhealthy, and what they mean.
//!
//! # How the shell uses an inventory
//! Register the health watch first, then take a snapshot, then keep polling
//! snapshots every few seconds: events give prompt reaction, polling
//! reconciles what events cannot carry (memory used by other processes, a
//! GPU that stopped answering, anything missed between the two calls).

use std::fmt;
use std::sync::Arc;

mod error;
mod nvml;
mod nvml_watch;
mod open;
mod simulated;
pub mod xid;

pub use error::{Error, chain as error_chain};
pub use nvml::NvmlInventory;
pub use open::{Opened, open};
pub use simulated::{FaultHandle, SimulatedInventory, simulated_uuid};

/// Health of one GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// Unhealthy, with a human-readable reason (e.g. `Xid 79: GPU has fallen off the bus`).
    Unhealthy(String),
}

impl Health {
    pub fn is_healthy(&self) -> bool {
        matches!(self, Health::Healthy)
    }
}

/// A point-in-time view of one GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    /// NVML index (stable for the life of the process).
    pub index: u32,
    /// `GPU-xxxxxxxx-…` UUID; what device IDs and env vars carry.
    pub uuid: String,
    /// Product name, e.g. `NVIDIA L4`.
    pub name: String,
    /// Total framebuffer memory.
    pub total_mib: u64,
    /// Memory not free: processes plus driver reservations (NVML `total − free`).
    pub used_mib: u64,
    pub health: Health,
    /// PCI bus id (`00000000:3B:00.0`) when known.
    pub pci_bus_id: Option<String>,
}

/// A change of one GPU's health, pushed by the inventory as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    pub uuid: String,
    pub index: u32,
    pub health: Health,
}

/// Receives health events; called from the inventory's own thread.
pub type HealthSink = Arc<dyn Fn(HealthEvent) + Send + Sync>;

/// Which implementation an inventory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Nvml,
    Simulated,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Nvml => "nvml",
            Backend::Simulated => "simulated",
        })
    }
}

/// A source of GPUs: what exists, how much memory is in use, which are healthy.
///
/// Implementations are shared between the shell's poller and its health
/// task, hence `Send + Sync` and `&self` methods.
pub trait Inventory: Send + Sync {
    /// Which implementation this is (for logs, labels and `/readyz`).
    fn backend(&self) -> Backend;

    /// Every GPU, in index order, as of now.
    ///
    /// Cheap enough to poll every few seconds. A GPU that stopped answering
    /// is reported `Unhealthy`, not as an error; an error means the whole
    /// backend is unusable for this call.
    fn snapshot(&self) -> Result<Vec<GpuInfo>, Error>;

    /// Starts pushing health changes to `sink` as they happen.
    ///
    /// Returns once the watch is in place, so a fault after this returns is
    /// delivered. Only real changes are pushed. The watch lasts until the
    /// returned guard is dropped or stopped.
    fn watch_health(&self, sink: HealthSink) -> Result<HealthWatch, Error>;
}

/// Keeps a health watch alive; dropping it (or [`HealthWatch::stop`]) ends
/// the watch and, for NVML, joins its thread.
///
/// Stopping is prompt but blocking: the NVML thread waits for events in
/// steps of at most [`EVENT_WAIT_MS`] and checks for a stop between steps,
/// so from async code drop it where blocking is allowed (`spawn_blocking`,
/// or at shutdown). After it returns, the sink is never called again.
#[must_use = "dropping a HealthWatch stops the watch at once"]
pub struct HealthWatch {
    /// Undoes the registration; `None` once run.
    stop: Option<Box<dyn FnOnce() + Send + Sync>>,
}

/// Longest single NVML event wait, which bounds how long stopping a watch takes.
pub const EVENT_WAIT_MS: u32 = 500;

impl HealthWatch {
    pub(crate) fn new(stop: impl FnOnce() + Send + Sync + 'static) -> Self {
        HealthWatch {
            stop: Some(Box::new(stop)),
        }
    }

    /// Ends the watch now and waits until no more events can be delivered.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

impl Drop for HealthWatch {
    fn drop(&mut self) {
        self.stop_now();
    }
}

impl fmt::Debug for HealthWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthWatch")
            .field("active", &self.stop.is_some())
            .finish()
    }
}
