//! GPU discovery: the [`Inventory`] trait and its two implementations.
//!
//! - NVML (`nvml-wrapper`): real GPUs, memory v2, UUID, name, and critical Xid
//!   events watched on a dedicated blocking thread.
//! - Simulated: GPUs listed in the config, with a [`FaultHandle`] that marks a
//!   GPU unhealthy/healthy or sets its external memory use — for tests, the
//!   simulator and demos.
//!
//! [`open`] picks one from [`crate::config::GpuBackend`]; `auto` uses NVML
//! when the library loads and otherwise falls back to the simulated list,
//! logging one warning that says why.

use std::sync::Arc;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Nvml,
    Simulated,
}
