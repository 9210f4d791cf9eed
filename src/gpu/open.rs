//! Choosing the inventory: the config's `gpus.backend`, and `auto`'s fallback.

use std::fmt;
use std::sync::Arc;

use super::{Error, FaultHandle, Inventory, NvmlInventory, SimulatedInventory, error_chain};
use crate::config::{GpuBackend, GpuConfig};

/// The inventory [`open()`] chose, and what the caller needs to know about it.
pub struct Opened {
    pub inventory: Arc<dyn Inventory>,
    /// Fault injection, present exactly when the inventory is simulated
    /// (for the simulator, demos and tests; the daemon may ignore it).
    pub faults: Option<FaultHandle>,
    /// Why `auto` is running simulated GPUs (the NVML error); `None` when
    /// the configured backend is the one running. Worth a status field and
    /// a Kubernetes Event: a GPU node on fake GPUs is rarely intended.
    pub fallback_reason: Option<String>,
}

/// Opens the configured inventory.
///
/// - `nvml`: NVML or the error.
/// - `simulated`: the config's list.
/// - `auto`: NVML when the library loads and reports at least one GPU. When
///   the library cannot be loaded at all (a laptop, CI) or reports no GPU, the
///   simulated list, with exactly one warning that carries the NVML error.
///   Any other NVML failure (driver not loaded, no permission, version
///   mismatch) is returned: a GPU node with a broken driver must not
///   advertise simulated GPUs. With no simulated list to fall back to, the
///   NVML error is returned: it says more than "no GPUs".
pub fn open(cfg: &GpuConfig) -> Result<Opened, Error> {
    let library = cfg.nvml_library.as_deref();
    match cfg.backend {
        GpuBackend::Nvml => NvmlInventory::open(library).map(Opened::nvml),
        GpuBackend::Simulated => Opened::simulated(cfg, None),
        GpuBackend::Auto => match NvmlInventory::open(library) {
            Ok(inventory) => Ok(Opened::nvml(inventory)),
            Err(nvml_error) if cfg.simulated.is_empty() || !means_no_nvidia_here(&nvml_error) => {
                Err(nvml_error)
            }
            Err(nvml_error) => {
                let reason = error_chain(&nvml_error);
                let opened = Opened::simulated(cfg, Some(reason.clone()))?;
                tracing::warn!(
                    %reason,
                    simulated_gpus = cfg.simulated.iter().map(|g| u64::from(g.count)).sum::<u64>(),
                    "NVML is unavailable; running on the SIMULATED GPUs from the config"
                );
                Ok(opened)
            }
        },
    }
}

/// Whether an NVML error means "this machine has no NVIDIA GPU stack" (the
/// library is absent, or it finds no GPU) rather than "the stack is broken".
fn means_no_nvidia_here(error: &Error) -> bool {
    matches!(
        error,
        Error::NvmlInit {
            source: nvml_wrapper::error::NvmlError::LibloadingError(_),
            ..
        } | Error::NoGpus { .. }
    )
}

impl Opened {
    fn nvml(inventory: NvmlInventory) -> Self {
        Opened {
            inventory: Arc::new(inventory),
            faults: None,
            fallback_reason: None,
        }
    }

    fn simulated(cfg: &GpuConfig, fallback_reason: Option<String>) -> Result<Self, Error> {
        let (inventory, faults) = SimulatedInventory::new(&cfg.simulated)?;
        Ok(Opened {
            inventory: Arc::new(inventory),
            faults: Some(faults),
            fallback_reason,
        })
    }
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("backend", &self.inventory.backend())
            .field("faults", &self.faults.is_some())
            .field("fallback_reason", &self.fallback_reason)
            .finish()
    }
}
