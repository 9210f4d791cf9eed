//! GetPreferredAllocation, as a pure function: vram packed onto one GPU,
//! slots spread across GPUs.

use std::collections::BTreeMap;

use super::devices::{Layout, Resource};

/// Picks `size` devices of `resource` from `available` (IDs kubelet offers),
/// starting with `must_include`. `free_mib[gpu]` is each GPU's free pool.
///
/// - vram: the GPU with the most free pool among those that can supply the
///   whole request (including every must-include ID); lower device numbers
///   first. If no single GPU can, the best effort is returned — kubelet
///   treats the answer as a hint, and Allocate refuses a multi-GPU set.
/// - slots: round-robin over the GPUs, most free pool first, so one pod's
///   tasks are not all funnelled through one GPU's slots.
pub(crate) fn preferred(
    layout: &Layout,
    resource: Resource,
    available: &[String],
    must_include: &[String],
    size: usize,
    free_mib: &[u64],
) -> Vec<String> {
    // Devices per GPU, in device-number order.
    let mut by_gpu: BTreeMap<usize, Vec<(u32, &String)>> = BTreeMap::new();
    for id in available {
        if let Some(p) = layout.parse(id).filter(|p| p.resource == resource) {
            by_gpu.entry(p.gpu).or_default().push((p.n, id));
        }
    }
    for ids in by_gpu.values_mut() {
        ids.sort();
    }
    let free = |g: usize| free_mib.get(g).copied().unwrap_or(0);
    let mut chosen: Vec<String> = must_include.to_vec();
    let need = size.saturating_sub(chosen.len());
    let taken = |chosen: &[String], id: &String| chosen.iter().any(|c| c == id);

    match resource {
        Resource::Vram => {
            let pinned: Vec<usize> = must_include
                .iter()
                .filter_map(|id| layout.parse(id).map(|p| p.gpu))
                .collect();
            let mut candidates: Vec<usize> = by_gpu
                .iter()
                .filter(|(g, ids)| {
                    pinned.iter().all(|p| p == *g)
                        && ids.iter().filter(|(_, id)| !taken(&chosen, id)).count() >= need
                })
                .map(|(g, _)| *g)
                .collect();
            if candidates.is_empty() {
                // Best effort: the GPU of the must-include IDs, else the largest offer.
                candidates = pinned.first().copied().into_iter().collect();
                if candidates.is_empty()
                    && let Some((g, _)) =
                        by_gpu.iter().max_by_key(|(g, ids)| (ids.len(), free(**g)))
                {
                    candidates.push(*g);
                }
            }
            candidates.sort_by_key(|g| (std::cmp::Reverse(free(*g)), *g));
            if let Some(g) = candidates.first() {
                let more: Vec<String> = by_gpu[g]
                    .iter()
                    .map(|(_, id)| (*id).clone())
                    .filter(|id| !taken(&chosen, id))
                    .take(need)
                    .collect();
                chosen.extend(more);
            }
        }
        Resource::Slot => {
            let mut order: Vec<usize> = by_gpu.keys().copied().collect();
            order.sort_by_key(|g| (std::cmp::Reverse(free(*g)), *g));
            let mut cursors: Vec<std::slice::Iter<'_, (u32, &String)>> =
                order.iter().map(|g| by_gpu[g].iter()).collect();
            let mut added = 0;
            while added < need {
                let mut progressed = false;
                for it in cursors.iter_mut() {
                    if added == need {
                        break;
                    }
                    if let Some((_, id)) = it.by_ref().find(|(_, id)| !taken(&chosen, id)) {
                        chosen.push((*id).clone());
                        added += 1;
                        progressed = true;
                    }
                }
                if !progressed {
                    break;
                }
            }
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::new(
            &[("GPU-a".into(), 10_752), ("GPU-b".into(), 10_752)],
            512,
            4,
            1024,
            1.0,
        )
    }

    fn all(l: &Layout, r: Resource) -> Vec<String> {
        l.devices(r, &[true, true])
            .into_iter()
            .map(|d| d.id)
            .collect()
    }

    #[test]
    fn vram_goes_to_the_gpu_with_the_most_free_pool_that_holds_all_of_it() {
        let l = layout();
        let got = preferred(
            &l,
            Resource::Vram,
            &all(&l, Resource::Vram),
            &[],
            4,
            &[2_000, 9_000],
        );
        assert_eq!(
            got,
            vec![
                "GPU-b-vram-0",
                "GPU-b-vram-1",
                "GPU-b-vram-2",
                "GPU-b-vram-3"
            ]
        );
    }

    #[test]
    fn vram_stays_on_the_gpu_of_its_must_include_ids() {
        let l = layout();
        let must = vec!["GPU-a-vram-7".to_string()];
        let got = preferred(
            &l,
            Resource::Vram,
            &all(&l, Resource::Vram),
            &must,
            3,
            &[1_000, 9_000],
        );
        assert_eq!(got, vec!["GPU-a-vram-7", "GPU-a-vram-0", "GPU-a-vram-1"]);
    }

    #[test]
    fn vram_skips_a_gpu_that_cannot_hold_the_whole_request() {
        let l = layout();
        // GPU b has more free pool but kubelet only offers 2 of its devices.
        let mut offered: Vec<String> = all(&l, Resource::Vram)
            .into_iter()
            .filter(|id| id.starts_with("GPU-a"))
            .collect();
        offered.extend(["GPU-b-vram-0".to_string(), "GPU-b-vram-1".to_string()]);
        let got = preferred(&l, Resource::Vram, &offered, &[], 3, &[1_000, 9_000]);
        assert!(got.iter().all(|id| id.starts_with("GPU-a")), "{got:?}");
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn slots_are_spread_across_gpus_most_free_first() {
        let l = layout();
        let got = preferred(
            &l,
            Resource::Slot,
            &all(&l, Resource::Slot),
            &[],
            3,
            &[1_000, 9_000],
        );
        assert_eq!(got, vec!["GPU-b-slot-0", "GPU-a-slot-0", "GPU-b-slot-1"]);
    }

    #[test]
    fn a_request_larger_than_the_offer_gets_what_there_is() {
        let l = layout();
        let got = preferred(
            &l,
            Resource::Slot,
            &["GPU-a-slot-2".to_string()],
            &[],
            3,
            &[0, 0],
        );
        assert_eq!(got, vec!["GPU-a-slot-2"]);
    }
}
