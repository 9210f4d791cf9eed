//! The simulated inventory: GPUs listed in the config, with fault injection.
//!
//! It stands in for NVML on laptops, in CI and in demos, so it behaves like
//! the real thing where the rest of the daemon can tell: UUIDs have NVIDIA's
//! shape and survive restarts (kubelet keeps device IDs across a daemon
//! restart), and health changes are pushed to watchers as they happen. There
//! is no thread: a [`FaultHandle`] call delivers its event synchronously.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{Backend, Error, GpuInfo, Health, HealthEvent, HealthSink, HealthWatch, Inventory};
use crate::config::SimulatedGpu;

/// GPUs from the config; faults come in through [`FaultHandle`].
#[derive(Clone)]
pub struct SimulatedInventory {
    shared: Arc<Shared>,
}

/// Injects faults into a [`SimulatedInventory`]: health changes and memory
/// used by "other processes". Cheap to clone; every clone drives the same GPUs.
#[derive(Clone)]
pub struct FaultHandle {
    shared: Arc<Shared>,
}

struct Shared {
    /// Serialises fault injection with event delivery, so that every sink
    /// sees one GPU's changes in the order they were made. Held while sinks
    /// run; a sink must therefore not call back into a [`FaultHandle`] nor
    /// stop a watch (reading a snapshot from a sink is fine: that takes only
    /// `state`).
    deliver: Mutex<()>,
    /// The GPUs and the registered sinks; held only for short, non-calling
    /// sections.
    state: Mutex<State>,
}

struct State {
    gpus: Vec<GpuInfo>,
    /// Registered sinks with the id their [`HealthWatch`] removes.
    sinks: Vec<(u64, HealthSink)>,
    next_sink_id: u64,
}

/// A UUID in NVIDIA's `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` shape, derived
/// from the GPU's product name and index alone.
///
/// The same config therefore yields the same UUIDs after a restart, which is
/// what keeps kubelet's device IDs (and pods' `NVIDIA_VISIBLE_DEVICES`)
/// stable. The hash is FNV-1a/128, written out here because std's hashers
/// promise no stability across Rust releases.
pub fn simulated_uuid(name: &str, index: u32) -> String {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut hash = OFFSET;
    let input = format!("vision-node-daemon/simulated\0{name}\0{index}");
    for byte in input.bytes() {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    let hex = format!("{hash:032x}");
    format!(
        "GPU-{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

impl SimulatedInventory {
    /// Builds the GPUs in config order, each entry expanded `count` times.
    ///
    /// An empty list is an error: a node agent with nothing to offer is
    /// misconfigured, and saying so beats advertising zero devices.
    pub fn new(list: &[SimulatedGpu]) -> Result<(Self, FaultHandle), Error> {
        let gpus: Vec<GpuInfo> = list
            .iter()
            .flat_map(|entry| (0..entry.count).map(move |_| entry))
            .zip(0u32..)
            .map(|(entry, index)| GpuInfo {
                index,
                uuid: simulated_uuid(&entry.name, index),
                name: entry.name.clone(),
                total_mib: entry.memory_mib,
                used_mib: 0,
                health: Health::Healthy,
                pci_bus_id: None,
            })
            .collect();
        if gpus.is_empty() {
            return Err(Error::NoGpus {
                backend: Backend::Simulated,
            });
        }
        let shared = Arc::new(Shared {
            deliver: Mutex::new(()),
            state: Mutex::new(State {
                gpus,
                sinks: Vec::new(),
                next_sink_id: 0,
            }),
        });
        let faults = FaultHandle {
            shared: Arc::clone(&shared),
        };
        Ok((SimulatedInventory { shared }, faults))
    }
}

impl Shared {
    /// Locks the state; a panic in another holder leaves plain data behind,
    /// so poisoning is ignored rather than spread.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn gpu_mut(&mut self, index: u32) -> Result<&mut GpuInfo, Error> {
        let count = u32::try_from(self.gpus.len()).unwrap_or(u32::MAX);
        usize::try_from(index)
            .ok()
            .and_then(|i| self.gpus.get_mut(i))
            .ok_or(Error::UnknownGpu { index, count })
    }
}

impl Inventory for SimulatedInventory {
    fn backend(&self) -> Backend {
        Backend::Simulated
    }

    fn snapshot(&self) -> Result<Vec<GpuInfo>, Error> {
        Ok(self.shared.state().gpus.clone())
    }

    fn watch_health(&self, sink: HealthSink) -> Result<HealthWatch, Error> {
        let id = {
            let mut state = self.shared.state();
            let id = state.next_sink_id;
            state.next_sink_id += 1;
            state.sinks.push((id, sink));
            id
        };
        let shared = Arc::clone(&self.shared);
        Ok(HealthWatch::new(move || {
            // Waiting for `deliver` means a delivery in progress finishes
            // first: after `stop` returns, this sink is never called again.
            let _order = shared
                .deliver
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            shared.state().sinks.retain(|(sink_id, _)| *sink_id != id);
        }))
    }
}

impl FaultHandle {
    /// Sets a GPU's health; pushes a [`HealthEvent`] to every watcher, before
    /// returning, if and only if the health actually changed.
    pub fn set_health(&self, index: u32, health: Health) -> Result<(), Error> {
        let _order = self
            .shared
            .deliver
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (event, sinks) = {
            let mut state = self.shared.state();
            let gpu = state.gpu_mut(index)?;
            if gpu.health == health {
                return Ok(());
            }
            gpu.health = health.clone();
            let event = HealthEvent {
                uuid: gpu.uuid.clone(),
                index,
                health,
            };
            let sinks: Vec<HealthSink> = state.sinks.iter().map(|(_, s)| Arc::clone(s)).collect();
            (event, sinks)
        };
        for sink in sinks {
            sink(event.clone());
        }
        Ok(())
    }

    /// Sets the GPU's used memory as NVML would report it (`used_mib` in
    /// the next snapshot): other processes' memory, plus — when the daemon
    /// measures loads (`runtime.measure_memory: on`) — what the model
    /// runtime's loads put there.
    pub fn set_used_mib(&self, index: u32, used_mib: u64) -> Result<(), Error> {
        let mut state = self.shared.state();
        let gpu = state.gpu_mut(index)?;
        if used_mib > gpu.total_mib {
            return Err(Error::UsedOverTotal {
                index,
                used_mib,
                total_mib: gpu.total_mib,
            });
        }
        gpu.used_mib = used_mib;
        Ok(())
    }
}

impl fmt::Debug for SimulatedInventory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.state();
        f.debug_struct("SimulatedInventory")
            .field("gpus", &state.gpus)
            .field("watchers", &state.sinks.len())
            .finish()
    }
}

impl fmt::Debug for FaultHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultHandle").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    fn list() -> Vec<SimulatedGpu> {
        vec![
            SimulatedGpu {
                name: "NVIDIA L4".into(),
                memory_mib: 23_034,
                count: 2,
            },
            SimulatedGpu {
                name: "NVIDIA A100-SXM4-80GB".into(),
                memory_mib: 81_920,
                count: 1,
            },
        ]
    }

    fn recorder() -> (HealthSink, mpsc::Receiver<HealthEvent>) {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let sink: HealthSink = Arc::new(move |event| {
            let _ = tx.lock().map(|tx| tx.send(event));
        });
        (sink, rx)
    }

    #[test]
    fn gpus_follow_config_order_with_counts_expanded() {
        let (inv, _) = SimulatedInventory::new(&list()).unwrap();
        let gpus = inv.snapshot().unwrap();
        let summary: Vec<(u32, &str, u64)> = gpus
            .iter()
            .map(|g| (g.index, g.name.as_str(), g.total_mib))
            .collect();
        assert_eq!(
            summary,
            [
                (0, "NVIDIA L4", 23_034),
                (1, "NVIDIA L4", 23_034),
                (2, "NVIDIA A100-SXM4-80GB", 81_920),
            ]
        );
        assert!(
            gpus.iter()
                .all(|g| g.health.is_healthy() && g.used_mib == 0)
        );
        assert_eq!(inv.backend(), Backend::Simulated);
    }

    #[test]
    fn uuids_have_nvidias_shape_and_survive_a_restart() {
        let (first, _) = SimulatedInventory::new(&list()).unwrap();
        let (second, _) = SimulatedInventory::new(&list()).unwrap();
        let uuids: Vec<String> = first
            .snapshot()
            .unwrap()
            .into_iter()
            .map(|g| g.uuid)
            .collect();
        let again: Vec<String> = second
            .snapshot()
            .unwrap()
            .into_iter()
            .map(|g| g.uuid)
            .collect();
        assert_eq!(uuids, again);
        for uuid in &uuids {
            let groups: Vec<usize> = uuid["GPU-".len()..].split('-').map(str::len).collect();
            assert!(uuid.starts_with("GPU-"), "{uuid}");
            assert_eq!(groups, [8, 4, 4, 4, 12], "{uuid}");
            assert!(uuid[4..].chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        }
        assert_ne!(uuids[0], uuids[1], "same model, different index");
    }

    #[test]
    fn uuids_depend_on_name_and_index_only() {
        assert_eq!(
            simulated_uuid("NVIDIA L4", 0),
            simulated_uuid("NVIDIA L4", 0)
        );
        assert_ne!(
            simulated_uuid("NVIDIA L4", 0),
            simulated_uuid("NVIDIA T4", 0)
        );
        assert_ne!(
            simulated_uuid("NVIDIA L4", 0),
            simulated_uuid("NVIDIA L4", 1)
        );
    }

    #[test]
    fn an_empty_list_is_refused() {
        let err = SimulatedInventory::new(&[]).unwrap_err();
        assert!(matches!(
            err,
            Error::NoGpus {
                backend: Backend::Simulated
            }
        ));
    }

    #[test]
    fn a_health_change_reaches_every_watcher_before_set_health_returns() {
        let (inv, faults) = SimulatedInventory::new(&list()).unwrap();
        let (sink_a, rx_a) = recorder();
        let (sink_b, rx_b) = recorder();
        let _watch_a = inv.watch_health(sink_a).unwrap();
        let _watch_b = inv.watch_health(sink_b).unwrap();
        let sick = Health::Unhealthy("Xid 79: GPU has fallen off the bus".into());

        faults.set_health(1, sick.clone()).unwrap();

        let expected = HealthEvent {
            uuid: simulated_uuid("NVIDIA L4", 1),
            index: 1,
            health: sick.clone(),
        };
        assert_eq!(rx_a.try_recv(), Ok(expected.clone()));
        assert_eq!(rx_b.try_recv(), Ok(expected));
        assert_eq!(inv.snapshot().unwrap()[1].health, sick);
    }

    #[test]
    fn setting_the_same_health_again_sends_no_event() {
        let (inv, faults) = SimulatedInventory::new(&list()).unwrap();
        let (sink, rx) = recorder();
        let _watch = inv.watch_health(sink).unwrap();

        faults.set_health(0, Health::Healthy).unwrap();
        assert!(rx.try_recv().is_err(), "healthy → healthy is no change");

        let sick = Health::Unhealthy("fault".into());
        faults.set_health(0, sick.clone()).unwrap();
        faults.set_health(0, sick).unwrap();
        faults.set_health(0, Health::Healthy).unwrap();
        let healths: Vec<bool> = rx.try_iter().map(|e| e.health.is_healthy()).collect();
        assert_eq!(healths, [false, true]);
    }

    #[test]
    fn a_stopped_watch_hears_nothing_more() {
        let (inv, faults) = SimulatedInventory::new(&list()).unwrap();
        let (sink, rx) = recorder();
        let watch = inv.watch_health(Arc::clone(&sink)).unwrap();
        watch.stop();

        faults
            .set_health(0, Health::Unhealthy("fault".into()))
            .unwrap();
        assert!(rx.try_recv().is_err());
        assert_eq!(Arc::strong_count(&sink), 1, "the inventory let the sink go");
    }

    #[test]
    fn faults_for_an_unknown_gpu_are_errors() {
        let (_inv, faults) = SimulatedInventory::new(&list()).unwrap();
        let err = faults.set_health(3, Health::Healthy).unwrap_err();
        assert!(
            matches!(err, Error::UnknownGpu { index: 3, count: 3 }),
            "{err:?}"
        );
        let err = faults.set_used_mib(7, 1).unwrap_err();
        assert!(
            matches!(err, Error::UnknownGpu { index: 7, count: 3 }),
            "{err:?}"
        );
    }

    #[test]
    fn external_memory_use_shows_in_the_next_snapshot() {
        let (inv, faults) = SimulatedInventory::new(&list()).unwrap();
        faults.set_used_mib(2, 4_096).unwrap();
        let gpus = inv.snapshot().unwrap();
        assert_eq!(gpus[2].used_mib, 4_096);
        assert_eq!(gpus[0].used_mib, 0);
    }

    #[test]
    fn memory_use_beyond_the_total_is_refused() {
        let (_inv, faults) = SimulatedInventory::new(&list()).unwrap();
        let err = faults.set_used_mib(0, 23_035).unwrap_err();
        assert!(
            matches!(err, Error::UsedOverTotal { index: 0, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn a_sink_may_read_a_snapshot_while_it_is_called() {
        let (inv, faults) = SimulatedInventory::new(&list()).unwrap();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let reader = inv.clone();
        let sink: HealthSink = Arc::new(move |event: HealthEvent| {
            let health = reader
                .snapshot()
                .map(|g| g[event.index as usize].health.clone());
            let _ = tx.lock().map(|tx| tx.send(health));
        });
        let _watch = inv.watch_health(sink).unwrap();

        faults
            .set_health(2, Health::Unhealthy("fault".into()))
            .unwrap();
        let seen = rx.try_recv().unwrap().unwrap();
        assert_eq!(seen, Health::Unhealthy("fault".into()));
    }
}
