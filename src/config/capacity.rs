//! Cross-field checks on GPU memory: what the configured GPUs can hold and
//! what kubelet can receive.
//!
//! Each function returns the message for one problem, or `None`; validation
//! decides where to report it. They assume the single fields were checked
//! already and skip GPU entries that are invalid on their own (zero memory,
//! zero count), which have their own errors.

use super::{DevicesConfig, GpuBackend, GpuConfig, SimulatedGpu};

/// Estimated bytes of one `Device` in a ListAndWatch response: an ID carrying
/// the GPU UUID and an index (~55 bytes), health, field tags and lengths.
pub const VRAM_DEVICE_WIRE_BYTES: u64 = 80;

/// kubelet reads ListAndWatch with gRPC's default 4 MiB receive limit; a
/// larger response is dropped and the resource is never advertised.
pub const LISTANDWATCH_LIMIT_BYTES: u64 = 4_194_304;

/// The node assumed when the GPUs are only known at runtime (auto/nvml):
/// 8 GPUs of 192 GiB, the largest common configuration today (8 × B200).
const WORST_CASE_GPUS: u64 = 8;
const WORST_CASE_GPU_MEMORY_MIB: u64 = 196_608;

/// Why `reserve_mib` leaves some simulated GPU without a pool, or `None`.
pub(crate) fn reserve_problem(reserve_mib: u64, simulated: &[SimulatedGpu]) -> Option<String> {
    let (i, gpu) = simulated
        .iter()
        .enumerate()
        .find(|(_, g)| g.memory_mib > 0 && g.memory_mib <= reserve_mib)?;
    Some(format!(
        "{reserve_mib} MiB leaves no usable memory on gpus.simulated[{i}] (`{}`, memory_mib {}); \
         it must be less than every simulated GPU's memory_mib",
        gpu.name, gpu.memory_mib
    ))
}

/// Why a model of `weights_mib + working_mib` can never run on the simulated
/// GPUs, or `None`.
///
/// Only meaningful for the `simulated` backend: with `auto` or `nvml` the
/// GPUs are unknown until runtime, and admission answers FAILED_PRECONDITION
/// for a model that fits no GPU.
pub(crate) fn unfit_model_problem(
    weights_mib: u64,
    working_mib: u64,
    reserve_mib: u64,
    simulated: &[SimulatedGpu],
) -> Option<String> {
    let largest = simulated
        .iter()
        .filter(|g| g.count > 0 && g.memory_mib > 0)
        .max_by_key(|g| g.memory_mib)?;
    let usable = largest.memory_mib.saturating_sub(reserve_mib);
    let needed = weights_mib.saturating_add(working_mib);
    (needed > usable).then(|| {
        format!(
            "needs {needed} MiB on one GPU (weights_mib {weights_mib} + working_mib {working_mib}), \
             more than any simulated GPU offers: the largest pool is {usable} MiB \
             (`{}`: memory_mib {} - gpus.reserve_mib {reserve_mib})",
            largest.name, largest.memory_mib
        )
    })
}

/// The GPU sets the node may run with, each as (memory MiB, count) lines
/// and a phrase naming that assumption for messages: the simulated list for
/// `simulated`; a worst-case node for `nvml`; both for `auto`, which falls
/// back to the simulated list when NVML is absent.
fn node_gpus(gpus: &GpuConfig) -> Vec<(Vec<(u64, u64)>, String)> {
    let simulated = || {
        let lines: Vec<(u64, u64)> = gpus
            .simulated
            .iter()
            .filter(|g| g.memory_mib > 0)
            .map(|g| (g.memory_mib, u64::from(g.count)))
            .collect();
        let total: u64 = lines.iter().map(|(_, n)| n).sum();
        (lines, format!("on the {total} simulated GPUs"))
    };
    let worst_case = |backend: &str| {
        (
            vec![(WORST_CASE_GPU_MEMORY_MIB, WORST_CASE_GPUS)],
            format!(
                "assuming a worst-case node of {WORST_CASE_GPUS} GPUs × {WORST_CASE_GPU_MEMORY_MIB} MiB \
                 (backend `{backend}` finds its GPUs only at runtime)"
            ),
        )
    };
    match gpus.backend {
        GpuBackend::Simulated => vec![simulated()],
        GpuBackend::Nvml => vec![worst_case("nvml")],
        GpuBackend::Auto if gpus.simulated.is_empty() => vec![worst_case("auto")],
        GpuBackend::Auto => vec![worst_case("auto"), simulated()],
    }
}

/// `<domain>/vram` devices on a node: per GPU, the shareable part of its pool
/// divided into units, rounded down.
fn vram_devices(lines: &[(u64, u64)], reserve_mib: u64, fraction: f64, unit_mib: u64) -> u128 {
    lines
        .iter()
        .map(|&(memory_mib, count)| {
            let per_gpu = shareable_mib(memory_mib, reserve_mib, fraction) / unit_mib.max(1);
            u128::from(per_gpu) * u128::from(count)
        })
        .sum()
}

fn shareable_mib(memory_mib: u64, reserve_mib: u64, fraction: f64) -> u64 {
    // f64 holds every MiB count below 2^53 exactly; the product is rounded
    // down the way the device plugin rounds it.
    (memory_mib.saturating_sub(reserve_mib) as f64 * fraction).floor() as u64
}

fn over_limit(devices: u128) -> bool {
    devices * u128::from(VRAM_DEVICE_WIRE_BYTES) > u128::from(LISTANDWATCH_LIMIT_BYTES)
}

/// Why `devices.vram_unit_mib` makes the vram ListAndWatch response too large
/// for kubelet, or `None`. Expects `vram_unit_mib > 0` and a fraction in
/// [0, 1].
pub(crate) fn vram_listandwatch_problem(
    gpus: &GpuConfig,
    devices: &DevicesConfig,
) -> Option<String> {
    node_gpus(gpus)
        .into_iter()
        .find_map(|(lines, assumption)| vram_problem(&lines, &assumption, gpus, devices))
}

fn vram_problem(
    lines: &[(u64, u64)],
    assumption: &str,
    gpus: &GpuConfig,
    devices: &DevicesConfig,
) -> Option<String> {
    let (reserve, fraction) = (gpus.reserve_mib, devices.vram_shareable_fraction);
    let count = vram_devices(lines, reserve, fraction, devices.vram_unit_mib);
    if !over_limit(count) {
        return None;
    }
    let bytes = count * u128::from(VRAM_DEVICE_WIRE_BYTES);
    let head = format!(
        "{} MiB per device gives {count} vram devices {assumption}, about {bytes} bytes in one \
         ListAndWatch response (at ~{VRAM_DEVICE_WIRE_BYTES} bytes per device), over kubelet's \
         {LISTANDWATCH_LIMIT_BYTES}-byte gRPC receive limit",
        devices.vram_unit_mib
    );
    // The device count only falls as the unit grows: bisect for the smallest
    // unit that fits. A unit above the largest shareable pool gives no
    // devices at all, which fits but is useless.
    let largest = lines
        .iter()
        .map(|&(memory, _)| shareable_mib(memory, reserve, fraction))
        .max()
        .unwrap_or(0);
    let (mut lo, mut hi) = (devices.vram_unit_mib, largest.saturating_add(1));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if over_limit(vram_devices(lines, reserve, fraction, mid)) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Some(if lo <= largest {
        format!("{head}; the smallest unit that fits is {lo} MiB")
    } else {
        format!("{head}; no unit fits: the node has too many GPUs for one device each")
    })
}

/// Why `devices.slots_per_gpu` makes the slot ListAndWatch response too large
/// for kubelet, or `None`. Slot IDs are shorter than vram IDs, so the vram
/// estimate per device is an upper bound.
pub(crate) fn slot_listandwatch_problem(
    gpus: &GpuConfig,
    devices: &DevicesConfig,
) -> Option<String> {
    node_gpus(gpus).into_iter().find_map(|(lines, assumption)| {
        let gpu_count: u64 = lines.iter().map(|(_, n)| n).sum();
        let count = u128::from(devices.slots_per_gpu) * u128::from(gpu_count);
        over_limit(count)
            .then(|| slot_message(devices.slots_per_gpu, count, gpu_count, &assumption))
    })
}

fn slot_message(slots_per_gpu: u32, count: u128, gpu_count: u64, assumption: &str) -> String {
    let most = LISTANDWATCH_LIMIT_BYTES / VRAM_DEVICE_WIRE_BYTES / gpu_count.max(1);
    format!(
        "{slots_per_gpu} slots per GPU gives {count} slot devices {assumption}, over kubelet's \
         {LISTANDWATCH_LIMIT_BYTES}-byte ListAndWatch limit (at ~{VRAM_DEVICE_WIRE_BYTES} bytes \
         per device); use at most {most}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(memory_mib: u64, count: u32) -> SimulatedGpu {
        SimulatedGpu {
            name: "G".into(),
            memory_mib,
            count,
        }
    }

    fn gpus(backend: GpuBackend, simulated: Vec<SimulatedGpu>) -> GpuConfig {
        GpuConfig {
            backend,
            reserve_mib: 512,
            simulated,
            nvml_library: None,
        }
    }

    fn devices(vram_unit_mib: u64, fraction: f64) -> DevicesConfig {
        DevicesConfig {
            slots_per_gpu: 8,
            vram_unit_mib,
            vram_shareable_fraction: fraction,
            ..crate::config::Config::dev().devices
        }
    }

    #[test]
    fn the_default_devices_fit_easily_on_the_worst_case_node() {
        let g = gpus(GpuBackend::Auto, vec![]);
        assert_eq!(vram_listandwatch_problem(&g, &devices(1024, 0.5)), None);
        assert_eq!(slot_listandwatch_problem(&g, &devices(1024, 0.5)), None);
    }

    #[test]
    fn one_mib_units_on_the_worst_case_node_are_rejected_with_the_smallest_fitting_unit() {
        let g = gpus(GpuBackend::Auto, vec![]);
        let message = vram_listandwatch_problem(&g, &devices(1, 0.5)).expect("over the limit");
        // 8 × floor((196608 − 512) × 0.5) = 784384 devices; 8 × floor(98048 / 15) × 80 fits.
        assert!(message.contains("784384 vram devices"), "{message}");
        assert!(
            message.contains("worst-case node of 8 GPUs × 196608 MiB"),
            "{message}"
        );
        assert!(
            message.ends_with("the smallest unit that fits is 15 MiB"),
            "{message}"
        );
        assert_eq!(vram_listandwatch_problem(&g, &devices(15, 0.5)), None);
    }

    #[test]
    fn simulated_gpus_are_checked_as_configured() {
        let small = gpus(GpuBackend::Simulated, vec![gpu(24576, 2)]);
        // 2 × 24064 devices × 80 bytes = 3.85 MB: fits.
        assert_eq!(vram_listandwatch_problem(&small, &devices(1, 1.0)), None);
        let big = gpus(GpuBackend::Simulated, vec![gpu(81920, 1)]);
        let message = vram_listandwatch_problem(&big, &devices(1, 1.0)).expect("over");
        assert!(
            message.contains("81408 vram devices on the 1 simulated GPUs"),
            "{message}"
        );
        assert!(
            message.ends_with("the smallest unit that fits is 2 MiB"),
            "{message}"
        );
    }

    #[test]
    fn too_many_gpus_for_one_device_each_is_said_plainly() {
        let g = gpus(GpuBackend::Simulated, vec![gpu(2048, 60_000)]);
        let message = vram_listandwatch_problem(&g, &devices(1, 1.0)).expect("over");
        assert!(message.ends_with("no unit fits: the node has too many GPUs for one device each"));
    }

    #[test]
    fn too_many_slots_are_rejected_with_the_largest_that_fits() {
        let g = gpus(GpuBackend::Nvml, vec![]);
        let mut d = devices(1024, 0.5);
        d.slots_per_gpu = 6553;
        assert_eq!(slot_listandwatch_problem(&g, &d), None);
        d.slots_per_gpu = 6554;
        let message = slot_listandwatch_problem(&g, &d).expect("over");
        assert!(message.ends_with("use at most 6553"), "{message}");
    }

    #[test]
    fn a_reserve_at_least_a_gpus_memory_is_a_problem() {
        assert_eq!(reserve_problem(512, &[gpu(24576, 1)]), None);
        let message = reserve_problem(4096, &[gpu(24576, 1), gpu(4096, 1)]).expect("problem");
        assert!(message.contains("gpus.simulated[1]"), "{message}");
    }

    #[test]
    fn a_model_fits_if_the_largest_simulated_gpu_holds_weights_plus_working_memory() {
        let sims = [gpu(8192, 1), gpu(24576, 1)];
        assert_eq!(unfit_model_problem(20000, 4064, 512, &sims), None);
        let message = unfit_model_problem(20000, 4065, 512, &sims).expect("too big");
        assert!(message.contains("needs 24065 MiB"), "{message}");
        assert!(
            message.contains("the largest pool is 24064 MiB"),
            "{message}"
        );
    }
}
