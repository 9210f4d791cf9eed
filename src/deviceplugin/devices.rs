//! Device IDs and device lists: pure functions of the GPUs and the config.
//!
//! IDs carry the GPU UUID, so that Allocate needs no state to know which GPU
//! a device is on, and a GPU's health maps to its devices:
//! `GPU-8f3c…-slot-3`, `GPU-8f3c…-vram-12` (≤ 52 characters; kubelet allows 63).

use std::fmt;

use crate::config::{LISTANDWATCH_LIMIT_BYTES, VRAM_DEVICE_WIRE_BYTES};

/// The two extended resources the daemon advertises.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Resource {
    /// `<domain>/slot`: concurrency tokens for task admission.
    Slot,
    /// `<domain>/vram`: dedicated GPU memory, one device per unit.
    Vram,
}

impl Resource {
    pub(crate) const ALL: [Resource; 2] = [Resource::Slot, Resource::Vram];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Resource::Slot => "slot",
            Resource::Vram => "vram",
        }
    }

    /// The extended resource name kubelet advertises, e.g. `vision.ai/slot`.
    pub(crate) fn name(self, domain: &str) -> String {
        format!("{domain}/{}", self.as_str())
    }

    /// This plugin's socket file in the kubelet device-plugin directory.
    pub(crate) fn socket_file(self) -> &'static str {
        match self {
            Resource::Slot => "vision-slot.sock",
            Resource::Vram => "vision-vram.sock",
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One device as kubelet sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceView {
    pub(crate) id: String,
    pub(crate) healthy: bool,
}

/// One GPU's share of the devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GpuLayout {
    pub(crate) uuid: String,
    pub(crate) vram_units: u32,
}

/// Which devices exist: fixed at start-up from the GPUs and the config, so
/// IDs (and kubelet's checkpoint) stay stable while the daemon runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) slots_per_gpu: u32,
    /// MiB per vram device (may exceed the configured unit, see [`Layout::new`]).
    pub(crate) vram_unit_mib: u64,
    pub(crate) gpus: Vec<GpuLayout>,
}

/// A device ID taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ParsedId {
    pub(crate) gpu: usize,
    pub(crate) resource: Resource,
    pub(crate) n: u32,
}

impl Layout {
    /// `gpus` are `(uuid, total_mib)` in inventory order. Each GPU gets
    /// `floor((total − reserve) × fraction / unit)` vram devices, counted per
    /// GPU so mixed sizes are not under-counted. If the whole list would not
    /// fit kubelet's 4 MiB ListAndWatch limit (an NVML node larger than
    /// `check-config` could know), the unit is doubled until it does, and the
    /// caller logs it.
    pub(crate) fn new(
        gpus: &[(String, u64)],
        reserve_mib: u64,
        slots_per_gpu: u32,
        unit_mib: u64,
        fraction: f64,
    ) -> Layout {
        let mut unit = unit_mib.max(1);
        loop {
            let layout = Layout {
                slots_per_gpu,
                vram_unit_mib: unit,
                gpus: gpus
                    .iter()
                    .map(|(uuid, total)| GpuLayout {
                        uuid: uuid.clone(),
                        vram_units: (total.saturating_sub(reserve_mib) as f64 * fraction
                            / unit as f64)
                            .floor() as u32,
                    })
                    .collect(),
            };
            let devices: u64 = layout.gpus.iter().map(|g| u64::from(g.vram_units)).sum();
            if devices * VRAM_DEVICE_WIRE_BYTES <= LISTANDWATCH_LIMIT_BYTES {
                return layout;
            }
            unit *= 2;
        }
    }

    pub(crate) fn id(&self, gpu: usize, resource: Resource, n: u32) -> String {
        format!("{}-{}-{n}", self.gpus[gpu].uuid, resource.as_str())
    }

    /// Devices of `resource` on GPU `gpu`.
    pub(crate) fn count(&self, gpu: usize, resource: Resource) -> u32 {
        match resource {
            Resource::Slot => self.slots_per_gpu,
            Resource::Vram => self.gpus[gpu].vram_units,
        }
    }

    /// Parses an ID this layout issued; `None` for anything else.
    pub(crate) fn parse(&self, id: &str) -> Option<ParsedId> {
        let (rest, n) = id.rsplit_once('-')?;
        let n: u32 = n.parse().ok()?;
        let (uuid, kind) = rest.rsplit_once('-')?;
        let resource = match kind {
            "slot" => Resource::Slot,
            "vram" => Resource::Vram,
            _ => return None,
        };
        let gpu = self.gpus.iter().position(|g| g.uuid == uuid)?;
        (n < self.count(gpu, resource)).then_some(ParsedId { gpu, resource, n })
    }

    /// Every device of `resource`; a GPU's devices follow `healthy[gpu]`.
    pub(crate) fn devices(&self, resource: Resource, healthy: &[bool]) -> Vec<DeviceView> {
        let mut out = Vec::new();
        for gpu in 0..self.gpus.len() {
            let ok = healthy.get(gpu).copied().unwrap_or(false);
            for n in 0..self.count(gpu, resource) {
                out.push(DeviceView {
                    id: self.id(gpu, resource, n),
                    healthy: ok,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "GPU-8f3c5a2e-1b2c-4d5e-9f00-112233445566";
    const B: &str = "GPU-00000000-1111-2222-3333-444444444444";

    fn layout() -> Layout {
        // An 80 GiB and a 24 GiB GPU on one node.
        Layout::new(&[(A.into(), 81_920), (B.into(), 24_576)], 512, 4, 1024, 0.5)
    }

    #[test]
    fn vram_devices_are_counted_per_gpu_so_mixed_sizes_are_not_under_counted() {
        let l = layout();
        assert_eq!(
            l.gpus[0].vram_units, 39,
            "(81920 − 512) × 0.5 / 1024 = 39.75"
        );
        assert_eq!(
            l.gpus[1].vram_units, 11,
            "(24576 − 512) × 0.5 / 1024 = 11.75"
        );
        assert_eq!(l.devices(Resource::Vram, &[true, true]).len(), 50);
        assert_eq!(l.devices(Resource::Slot, &[true, true]).len(), 8);
    }

    #[test]
    fn ids_name_their_gpu_fit_kubelets_limit_and_parse_back() {
        let l = layout();
        let id = l.id(0, Resource::Vram, 38);
        assert_eq!(id, format!("{A}-vram-38"));
        assert!(id.len() <= 63);
        assert_eq!(
            l.parse(&id),
            Some(ParsedId {
                gpu: 0,
                resource: Resource::Vram,
                n: 38
            })
        );
        assert_eq!(
            l.parse(&l.id(1, Resource::Slot, 3)),
            Some(ParsedId {
                gpu: 1,
                resource: Resource::Slot,
                n: 3
            })
        );
        assert_eq!(
            l.parse(&format!("{A}-vram-39")),
            None,
            "beyond the GPU's units"
        );
        assert_eq!(
            l.parse(&format!("{B}-slot-4")),
            None,
            "beyond slots_per_gpu"
        );
        assert_eq!(l.parse("GPU-unknown-slot-0"), None);
        assert_eq!(l.parse("garbage"), None);
        assert_eq!(l.parse(&format!("{A}-gpu-1")), None);
    }

    #[test]
    fn an_unhealthy_gpu_turns_only_its_own_devices_unhealthy() {
        let l = layout();
        let d = l.devices(Resource::Slot, &[true, false]);
        assert!(d[..4].iter().all(|d| d.healthy));
        assert!(d[4..].iter().all(|d| !d.healthy && d.id.starts_with(B)));
    }

    #[test]
    fn a_unit_too_small_for_kubelets_message_limit_is_coarsened() {
        // 8 × 192 GiB at 1 MiB would be ~786 000 devices, far over 4 MiB.
        let gpus: Vec<(String, u64)> = (0..8).map(|i| (format!("GPU-{i}"), 196_608)).collect();
        let l = Layout::new(&gpus, 0, 8, 1, 1.0);
        let devices: u64 = l.gpus.iter().map(|g| u64::from(g.vram_units)).sum();
        assert!(devices * VRAM_DEVICE_WIRE_BYTES <= LISTANDWATCH_LIMIT_BYTES);
        assert!(l.vram_unit_mib >= 32, "unit {}", l.vram_unit_mib);
        assert!(l.vram_unit_mib.is_power_of_two());
    }

    #[test]
    fn a_zero_fraction_advertises_no_vram() {
        let l = Layout::new(&[(A.into(), 81_920)], 512, 4, 1024, 0.0);
        assert!(l.devices(Resource::Vram, &[true]).is_empty());
    }
}
