//! Allocate: from the device IDs kubelet picked to what the engine records
//! and what the container gets. Self-contained: the IDs name the GPU, so no
//! guessing which pod is allocating (HAMi/gpushare read pod annotations).

use std::collections::BTreeMap;
use std::path::Path;

use super::devices::{Layout, Resource};
use crate::config::SlotGpuVisibility;

/// What one container's devices amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    Slots(u32),
    Vram { gpu: usize, mib: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PlanError {
    #[error("no devices in the request")]
    Empty,
    #[error("unknown {resource} device IDs: {}", ids.join(", "))]
    Unknown {
        resource: Resource,
        ids: Vec<String>,
    },
    #[error(
        "vram devices from more than one GPU ({}): a pod's vram must come from one GPU; \
         kubelet should use GetPreferredAllocation, or request fewer units",
        gpus.join(", ")
    )]
    SpansGpus { gpus: Vec<String> },
    #[error("device {0} listed twice")]
    Duplicate(String),
}

/// Checks one container's device IDs and says what they amount to.
pub(crate) fn plan(layout: &Layout, resource: Resource, ids: &[String]) -> Result<Plan, PlanError> {
    if ids.is_empty() {
        return Err(PlanError::Empty);
    }
    let mut unknown = Vec::new();
    let mut gpus: BTreeMap<usize, u32> = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        if ids[..i].contains(id) {
            return Err(PlanError::Duplicate(id.clone()));
        }
        match layout.parse(id).filter(|p| p.resource == resource) {
            Some(p) => *gpus.entry(p.gpu).or_default() += 1,
            None => unknown.push(id.clone()),
        }
    }
    if !unknown.is_empty() {
        return Err(PlanError::Unknown {
            resource,
            ids: unknown,
        });
    }
    match resource {
        Resource::Slot => Ok(Plan::Slots(ids.len() as u32)),
        Resource::Vram => {
            if gpus.len() > 1 {
                return Err(PlanError::SpansGpus {
                    gpus: gpus.keys().map(|g| layout.gpus[*g].uuid.clone()).collect(),
                });
            }
            let (gpu, n) = gpus.into_iter().next().expect("non-empty, all known");
            Ok(Plan::Vram {
                gpu,
                mib: u64::from(n) * layout.vram_unit_mib,
            })
        }
    }
}

/// The environment, mounts and CDI names one container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerSetup {
    pub(crate) envs: BTreeMap<String, String>,
    /// (container path, host path), read-only.
    pub(crate) mount: (String, String),
    pub(crate) cdi_devices: Vec<String>,
}

/// Env var names. A container asking for both resources gets one Allocate
/// per plugin, so the vram plugin's token has its own name.
pub(crate) const ENV_SOCKET: &str = "VISION_SOCKET";
pub(crate) const ENV_TOKEN: &str = "VISION_TOKEN";
pub(crate) const ENV_VRAM_TOKEN: &str = "VISION_VRAM_TOKEN";
pub(crate) const ENV_SLOTS: &str = "VISION_SLOTS";
pub(crate) const ENV_GPU_UUIDS: &str = "VISION_GPU_UUIDS";
pub(crate) const ENV_VRAM_MIB: &str = "VISION_VRAM_MIB";
/// Where the node's model runtime serves inference (slot containers, with
/// a serving runtime that has one endpoint for the node).
pub(crate) const ENV_RUNTIME_ENDPOINT: &str = "VISION_RUNTIME_ENDPOINT";
const ENV_NVIDIA_VISIBLE_DEVICES: &str = "NVIDIA_VISIBLE_DEVICES";

/// What a slot container gets besides its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotSetup {
    /// The model runtime's client endpoint, when it has one.
    pub(crate) runtime_endpoint: Option<String>,
    pub(crate) gpus: SlotGpuVisibility,
}

/// What a container is given for `plan`: the task socket's directory
/// mounted read-only (the admin socket lives outside it), the token; for
/// vram the GPU it may use; for slots the runtime's endpoint and the GPUs
/// `slot` says it sees.
pub(crate) fn setup(
    layout: &Layout,
    plan: &Plan,
    token: &str,
    host_pods_dir: &Path,
    container_socket_dir: &Path,
    cdi: bool,
    slot: &SlotSetup,
) -> ContainerSetup {
    let mut envs = BTreeMap::new();
    envs.insert(
        ENV_SOCKET.to_owned(),
        container_socket_dir
            .join("agent.sock")
            .display()
            .to_string(),
    );
    let mut cdi_devices = Vec::new();
    match plan {
        Plan::Slots(n) => {
            envs.insert(ENV_TOKEN.to_owned(), token.to_owned());
            envs.insert(ENV_SLOTS.to_owned(), n.to_string());
            if let Some(endpoint) = &slot.runtime_endpoint {
                envs.insert(ENV_RUNTIME_ENDPOINT.to_owned(), endpoint.clone());
            }
            // `void`, not unset: CUDA base images set `all` themselves.
            let visible = match slot.gpus {
                SlotGpuVisibility::All => "all",
                SlotGpuVisibility::None => "void",
            };
            envs.insert(ENV_NVIDIA_VISIBLE_DEVICES.to_owned(), visible.to_owned());
        }
        Plan::Vram { gpu, mib } => {
            let uuid = &layout.gpus[*gpu].uuid;
            envs.insert(ENV_VRAM_TOKEN.to_owned(), token.to_owned());
            envs.insert(ENV_GPU_UUIDS.to_owned(), uuid.clone());
            envs.insert(ENV_VRAM_MIB.to_owned(), mib.to_string());
            envs.insert(ENV_NVIDIA_VISIBLE_DEVICES.to_owned(), uuid.clone());
            if cdi {
                cdi_devices.push(format!("nvidia.com/gpu={uuid}"));
            }
        }
    }
    ContainerSetup {
        envs,
        mount: (
            container_socket_dir.display().to_string(),
            host_pods_dir.display().to_string(),
        ),
        cdi_devices,
    }
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

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn slots_count_and_vram_sums_units_on_one_gpu() {
        let l = layout();
        assert_eq!(
            plan(&l, Resource::Slot, &ids(&["GPU-a-slot-0", "GPU-b-slot-1"])),
            Ok(Plan::Slots(2))
        );
        assert_eq!(
            plan(
                &l,
                Resource::Vram,
                &ids(&["GPU-b-vram-0", "GPU-b-vram-5", "GPU-b-vram-9"])
            ),
            Ok(Plan::Vram {
                gpu: 1,
                mib: 3 * 1024
            })
        );
    }

    #[test]
    fn vram_from_two_gpus_unknown_ids_and_duplicates_are_refused_with_their_names() {
        let l = layout();
        let e = plan(&l, Resource::Vram, &ids(&["GPU-a-vram-0", "GPU-b-vram-0"])).unwrap_err();
        assert_eq!(
            e,
            PlanError::SpansGpus {
                gpus: ids(&["GPU-a", "GPU-b"])
            }
        );
        assert!(e.to_string().contains("more than one GPU"));
        let e = plan(
            &l,
            Resource::Vram,
            &ids(&["GPU-a-vram-0", "GPU-a-slot-0", "bogus"]),
        )
        .unwrap_err();
        assert_eq!(
            e,
            PlanError::Unknown {
                resource: Resource::Vram,
                ids: ids(&["GPU-a-slot-0", "bogus"])
            }
        );
        let e = plan(&l, Resource::Slot, &ids(&["GPU-a-slot-0", "GPU-a-slot-0"])).unwrap_err();
        assert_eq!(e, PlanError::Duplicate("GPU-a-slot-0".into()));
        assert_eq!(plan(&l, Resource::Slot, &[]), Err(PlanError::Empty));
    }

    fn slot(runtime_endpoint: Option<&str>, gpus: SlotGpuVisibility) -> SlotSetup {
        SlotSetup {
            runtime_endpoint: runtime_endpoint.map(str::to_owned),
            gpus,
        }
    }

    #[test]
    fn a_vram_container_sees_its_gpu_and_a_slot_container_its_token() {
        let l = layout();
        let s = setup(
            &l,
            &Plan::Vram { gpu: 1, mib: 4096 },
            "tok",
            Path::new("/var/lib/v/pods"),
            Path::new("/var/run/vision"),
            true,
            &slot(Some("10.0.0.7:8001"), SlotGpuVisibility::None),
        );
        assert_eq!(s.envs["NVIDIA_VISIBLE_DEVICES"], "GPU-b");
        assert_eq!(s.envs[ENV_VRAM_MIB], "4096");
        assert_eq!(s.envs[ENV_VRAM_TOKEN], "tok");
        assert_eq!(s.envs[ENV_SOCKET], "/var/run/vision/agent.sock");
        assert!(
            !s.envs.contains_key(ENV_RUNTIME_ENDPOINT),
            "a vram pod runs its own model"
        );
        assert_eq!(
            s.mount,
            ("/var/run/vision".into(), "/var/lib/v/pods".into())
        );
        assert_eq!(s.cdi_devices, vec!["nvidia.com/gpu=GPU-b"]);
        let s = setup(
            &l,
            &Plan::Slots(2),
            "tok",
            Path::new("/h"),
            Path::new("/c"),
            true,
            &slot(None, SlotGpuVisibility::All),
        );
        assert_eq!(s.envs[ENV_TOKEN], "tok");
        assert_eq!(s.envs[ENV_SLOTS], "2");
        assert_eq!(s.envs["NVIDIA_VISIBLE_DEVICES"], "all");
        assert!(!s.envs.contains_key(ENV_RUNTIME_ENDPOINT));
        assert!(s.cdi_devices.is_empty());
    }

    #[test]
    fn a_slot_container_of_a_serving_runtime_gets_its_endpoint_and_no_gpu() {
        let s = setup(
            &layout(),
            &Plan::Slots(1),
            "tok",
            Path::new("/h"),
            Path::new("/c"),
            false,
            &slot(Some("10.0.0.7:8001"), SlotGpuVisibility::None),
        );
        assert_eq!(s.envs[ENV_RUNTIME_ENDPOINT], "10.0.0.7:8001");
        assert_eq!(
            s.envs["NVIDIA_VISIBLE_DEVICES"], "void",
            "void overrides a CUDA image's own `all`"
        );
    }
}
