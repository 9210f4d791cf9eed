//! The NVML inventory: real GPUs through `nvml-wrapper`'s safe API.
//!
//! NVML is initialised once (loading the library resolves hundreds of
//! symbols) and kept in an `Arc` shared with the health watcher threads;
//! `Device` handles borrow it, so they are looked up by index on each use
//! rather than stored.
//!
//! What a GPU *is* (UUID, name, total memory, PCI address) is read once at
//! open; what it is *doing* (memory in use, whether it answers) is read on
//! every snapshot. Health combines two sources: a sticky per-UUID map filled
//! by the Xid watcher (a GPU that raised a critical Xid needs a reset, which
//! also restarts this daemon's view of it), and the snapshot's own query
//! failing with a device-level error (reported while it lasts).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::struct_wrappers::device::MemoryInfo;

use super::{Backend, Error, GpuInfo, Health, HealthSink, HealthWatch, Inventory, nvml_watch};

/// The name the loader searches for when the config gives no path.
const DEFAULT_LIBRARY: &str = "libnvidia-ml.so.1";

const MIB: u64 = 1024 * 1024;

/// Health learned from events, by GPU UUID; shared by the inventory (which
/// reads it in snapshots) and every watcher thread (which writes it). Only
/// `Unhealthy` entries are ever stored.
pub(super) type HealthMap = Mutex<HashMap<String, Health>>;

/// Locks a [`HealthMap`]; its data stays valid whatever a panicking holder
/// was doing, so poisoning is ignored.
pub(super) fn lock(map: &HealthMap) -> MutexGuard<'_, HashMap<String, Health>> {
    map.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Real GPUs, discovered through NVML.
pub struct NvmlInventory {
    nvml: Arc<Nvml>,
    /// The GPUs found at open, in index order; what never changes.
    gpus: Vec<Identity>,
    /// Sticky Xid-derived health, shared with watcher threads.
    health: Arc<HealthMap>,
    /// Last memory reading per entry of `gpus`, reported while a GPU does
    /// not answer so the pool does not jump to "empty" or "full".
    last_used_mib: Mutex<Vec<u64>>,
}

/// What NVML says a GPU is; read once because it cannot change while the
/// driver stays loaded.
#[derive(Debug, Clone)]
pub(super) struct Identity {
    pub index: u32,
    pub uuid: String,
    name: String,
    total_mib: u64,
    pci_bus_id: Option<String>,
}

impl NvmlInventory {
    /// Loads NVML (from `library`, else the loader's search path) and reads
    /// every GPU's identity.
    ///
    /// A GPU whose identity cannot be read is left out with an error log, so
    /// one dead GPU does not take its healthy neighbours out of service; if
    /// none can be read, the first failure is returned.
    pub fn open(library: Option<&Path>) -> Result<Self, Error> {
        let init = match library {
            Some(path) => Nvml::builder().lib_path(path.as_os_str()).init(),
            None => Nvml::init(),
        };
        let nvml = init.map_err(|source| Error::NvmlInit {
            library: library.map_or_else(
                || format!("{DEFAULT_LIBRARY} (loader search path)"),
                |p| p.display().to_string(),
            ),
            source,
        })?;
        let count = nvml.device_count().map_err(|source| Error::Nvml {
            call: "device_count",
            index: None,
            source,
        })?;
        if count == 0 {
            return Err(Error::NoGpus {
                backend: Backend::Nvml,
            });
        }
        let mut gpus = Vec::new();
        let mut first_error = None;
        for index in 0..count {
            match identify(&nvml, index) {
                Ok(identity) => gpus.push(identity),
                Err(err) => {
                    tracing::error!(gpu = index, error = %super::error_chain(&err), "GPU left out: cannot read its identity");
                    first_error.get_or_insert(err);
                }
            }
        }
        if let (true, Some(err)) = (gpus.is_empty(), first_error) {
            return Err(err);
        }
        tracing::info!(
            driver = %nvml.sys_driver_version().unwrap_or_else(|e| format!("unknown ({e})")),
            gpus = gpus.len(),
            "NVML ready"
        );
        let last_used_mib = Mutex::new(vec![0; gpus.len()]);
        Ok(NvmlInventory {
            nvml: Arc::new(nvml),
            gpus,
            health: Arc::default(),
            last_used_mib,
        })
    }

    /// Reads one GPU's memory use, or the health reason why it cannot.
    fn used_mib(&self, gpu: &Identity) -> Result<Result<u64, String>, Error> {
        let reading = self
            .nvml
            .device_by_index(gpu.index)
            .map_err(|e| ("device_by_index", e))
            .and_then(|device| device.memory_info().map_err(|e| ("memory_info", e)));
        match reading {
            Ok(memory) => Ok(Ok(used_mib(&memory))),
            Err((call, source)) if is_device_fault(&source) => {
                Ok(Err(format!("GPU does not answer NVML {call}: {source}")))
            }
            Err((call, source)) => Err(Error::Nvml {
                call,
                index: Some(gpu.index),
                source,
            }),
        }
    }
}

/// Reads what a GPU is. The PCI address is optional: a failure of just that
/// call is logged and leaves it unknown.
fn identify(nvml: &Nvml, index: u32) -> Result<Identity, Error> {
    let fail = |call: &'static str| {
        move |source| Error::Nvml {
            call,
            index: Some(index),
            source,
        }
    };
    let device = nvml
        .device_by_index(index)
        .map_err(fail("device_by_index"))?;
    let uuid = device.uuid().map_err(fail("uuid"))?;
    let name = device.name().map_err(fail("name"))?;
    let memory = device.memory_info().map_err(fail("memory_info"))?;
    let pci_bus_id = match device.pci_info() {
        Ok(pci) => Some(pci.bus_id),
        Err(err) => {
            tracing::info!(gpu = index, error = %err, "PCI bus id unknown");
            None
        }
    };
    Ok(Identity {
        index,
        uuid,
        name,
        total_mib: memory.total / MIB,
        pci_bus_id,
    })
}

/// Memory not free, in MiB: processes *and* driver reservations (the v2
/// struct's `used` leaves reservations out, but they are just as unusable).
/// Rounded up, so the pool never counts a partial MiB that is not there.
fn used_mib(memory: &MemoryInfo) -> u64 {
    memory.total.saturating_sub(memory.free).div_ceil(MIB)
}

/// True for errors that mean this GPU (not NVML as a whole) is in trouble:
/// those make the GPU unhealthy instead of failing the snapshot.
pub(super) fn is_device_fault(error: &NvmlError) -> bool {
    matches!(
        error,
        NvmlError::GpuLost
            | NvmlError::ResetRequired
            | NvmlError::IrqIssue
            | NvmlError::InsufficientPower
            | NvmlError::Unknown
    )
}

impl Inventory for NvmlInventory {
    fn backend(&self) -> Backend {
        Backend::Nvml
    }

    fn snapshot(&self) -> Result<Vec<GpuInfo>, Error> {
        let mut readings = Vec::with_capacity(self.gpus.len());
        for gpu in &self.gpus {
            readings.push(self.used_mib(gpu)?);
        }
        let mut last = self
            .last_used_mib
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let sticky = lock(&self.health);
        let snapshot = self
            .gpus
            .iter()
            .zip(readings)
            .zip(last.iter_mut())
            .map(|((gpu, reading), last_used)| {
                let mut health = sticky.get(&gpu.uuid).cloned().unwrap_or(Health::Healthy);
                match reading {
                    Ok(used) => *last_used = used,
                    Err(reason) if health.is_healthy() => health = Health::Unhealthy(reason),
                    Err(_) => {}
                }
                GpuInfo {
                    index: gpu.index,
                    uuid: gpu.uuid.clone(),
                    name: gpu.name.clone(),
                    total_mib: gpu.total_mib,
                    used_mib: *last_used,
                    health,
                    pci_bus_id: gpu.pci_bus_id.clone(),
                }
            })
            .collect();
        Ok(snapshot)
    }

    fn watch_health(&self, sink: HealthSink) -> Result<HealthWatch, Error> {
        nvml_watch::spawn(
            Arc::clone(&self.nvml),
            self.gpus.clone(),
            Arc::clone(&self.health),
            sink,
        )
    }
}

impl fmt::Debug for NvmlInventory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NvmlInventory")
            .field("gpus", &self.gpus)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(total: u64, free: u64, reserved: u64) -> MemoryInfo {
        MemoryInfo {
            total,
            free,
            reserved,
            used: total - free - reserved,
            version: 0,
        }
    }

    #[test]
    fn used_memory_includes_driver_reservations() {
        let m = memory(24_000 * MIB, 20_000 * MIB, 500 * MIB);
        assert_eq!(used_mib(&m), 4_000);
    }

    #[test]
    fn used_memory_rounds_a_partial_mib_up() {
        let m = memory(10 * MIB, 8 * MIB - 1, 0);
        assert_eq!(used_mib(&m), 3);
    }

    #[test]
    fn only_device_level_errors_mark_a_gpu_unhealthy() {
        assert!(is_device_fault(&NvmlError::GpuLost));
        assert!(is_device_fault(&NvmlError::ResetRequired));
        assert!(!is_device_fault(&NvmlError::LibRmVersionMismatch));
        assert!(!is_device_fault(&NvmlError::Uninitialized));
    }
}
