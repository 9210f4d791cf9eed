//! The kubelet device plugins: `<domain>/slot` and `<domain>/vram`.
//!
//! Each resource is its own plugin on its own socket in the kubelet
//! device-plugin directory; each serves first, then registers, and does it
//! again when kubelet restarts ([`registration`]). Device lists are pure
//! functions of the GPUs ([`devices`]); health goes Unhealthy at once and
//! Healthy after a recovery period ([`health`], [`publisher`]); vram is
//! packed onto one GPU ([`preferred`]); Allocate records the allocation in
//! the engine under a fresh token and persists it ([`allocate`], [`store`]);
//! allocations of gone pods are released through PodResources
//! ([`podresources`]).

pub mod allocate;
pub mod devices;
pub mod health;
mod podresources;
pub mod preferred;
mod publisher;
mod registration;
mod server;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;

pub use devices::{DeviceView, Layout, Resource};
pub use server::Shared;

use crate::config::Config;
use crate::engine::GpuId;
use crate::kubelet;
use crate::service::Node;

/// Where kubelet is.
#[derive(Debug, Clone)]
pub struct Options {
    /// kubelet's device-plugin directory: `kubelet.sock` and our sockets.
    pub dir: PathBuf,
    /// kubelet's PodResources socket.
    pub pod_resources_socket: PathBuf,
    /// How often PodResources is listed (akri uses 10 s).
    pub reconcile_interval: Duration,
}

impl Options {
    /// kubelet's standard paths.
    pub fn standard() -> Options {
        Options {
            dir: PathBuf::from(kubelet::DEVICE_PLUGIN_PATH),
            pod_resources_socket: PathBuf::from(kubelet::POD_RESOURCES_SOCKET),
            reconcile_interval: Duration::from_secs(10),
        }
    }
}

/// Which plugins are registered with kubelet right now.
#[derive(Debug)]
pub struct Registration {
    names: [String; 2],
    flags: [Arc<AtomicBool>; 2],
}

impl Registration {
    pub fn all_registered(&self) -> bool {
        self.flags.iter().all(|f| f.load(Ordering::SeqCst))
    }
}

impl crate::telemetry::metrics::PluginState for Registration {
    fn registered(&self) -> Vec<(String, bool)> {
        self.names
            .iter()
            .cloned()
            .zip(self.flags.iter().map(|f| f.load(Ordering::SeqCst)))
            .collect()
    }
}

/// The running plugins.
pub struct DevicePlugins {
    shared: Arc<Shared>,
    registered: [Arc<AtomicBool>; 2],
    handles: Vec<JoinHandle<()>>,
}

impl DevicePlugins {
    /// Restores saved allocations into the engine, then serves and registers
    /// both plugins. `host_pods_dir` is the task socket's directory, which
    /// Allocate mounts into containers.
    pub fn start(
        node: Arc<Node>,
        cfg: &Config,
        state_dir: &Path,
        host_pods_dir: &Path,
        opts: Options,
    ) -> anyhow::Result<DevicePlugins> {
        let gpus: Vec<(String, u64)> = node.read(|e| {
            (0..e.gpu_count())
                .filter_map(|i| {
                    e.gpu(GpuId(i as u32))
                        .map(|g| (g.uuid.clone(), g.total_mib))
                })
                .collect()
        });
        let d = &cfg.devices;
        let layout = Layout::new(
            &gpus,
            cfg.gpus.reserve_mib,
            d.slots_per_gpu,
            d.vram_unit_mib,
            d.vram_shareable_fraction,
        );
        if layout.vram_unit_mib != d.vram_unit_mib {
            tracing::warn!(
                configured_mib = d.vram_unit_mib,
                used_mib = layout.vram_unit_mib,
                "vram unit raised so that the device list fits kubelet's 4 MiB ListAndWatch limit"
            );
        }
        let store = store::Store::new(state_dir);
        let saved = store.load().context("cannot read the saved allocations")?;
        let healthy = node.read(|e| e.gpu_healthy());
        let mounts = server::Mounts {
            domain: cfg.domain.clone(),
            host_pods_dir: host_pods_dir.to_owned(),
            container_socket_dir: d.container_socket_dir.clone(),
            cdi: d.cdi,
        };
        let shared = Arc::new(Shared::new(
            Arc::clone(&node),
            layout,
            mounts,
            store,
            &healthy,
        ));
        let saved_count = saved.len();
        let restored = shared.restore(saved);
        if saved_count > 0 {
            tracing::info!(
                restored,
                saved = saved_count,
                "restored allocations of running pods"
            );
        }
        for r in Resource::ALL {
            let devices = shared.layout.devices(r, &healthy).len();
            tracing::info!(resource = %r.name(&cfg.domain), devices, unit_mib = shared.layout.vram_unit_mib, "device plugin");
        }
        let ours: [PathBuf; 2] = Resource::ALL.map(|r| opts.dir.join(r.socket_file()));
        let (changes, watch_handle) =
            registration::spawn_kubelet_watch(opts.dir.clone(), ours, node.shutdown_signal());
        let registered = [
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        ];
        let mut handles = vec![
            watch_handle,
            publisher::spawn_health_publisher(Arc::clone(&shared), d.health_recovery),
            podresources::spawn_reconciler(
                Arc::clone(&shared),
                opts.pod_resources_socket.clone(),
                opts.reconcile_interval,
                d.release_grace,
            ),
        ];
        for (i, r) in Resource::ALL.into_iter().enumerate() {
            handles.push(registration::spawn_plugin(
                Arc::clone(&shared),
                r,
                i,
                opts.dir.clone(),
                changes.clone(),
                Arc::clone(&registered[i]),
            ));
        }
        Ok(DevicePlugins {
            shared,
            registered,
            handles,
        })
    }

    /// Whether both plugins are registered with kubelet right now.
    pub fn registered(&self) -> bool {
        self.state().all_registered()
    }

    /// A shareable view of the registration state (readiness, metrics).
    pub fn state(&self) -> Arc<Registration> {
        Arc::new(Registration {
            names: Resource::ALL.map(|r| r.name(&self.shared.domain)),
            flags: self.registered.clone(),
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Waits for the plugin tasks after the node began shutting down.
    pub async fn join(self) {
        for h in self.handles {
            let _ = h.await;
        }
    }
}
