//! The kubelet device plugins: `<domain>/slot` and `<domain>/vram`.
//!
//! Each resource is one [`Plugin`] value — name, socket, registration state,
//! device list, socket-gone counter — served on its own socket in the
//! kubelet device-plugin directory; each serves first, then registers, and
//! does it again when kubelet restarts (`registration`). Device lists are
//! pure functions of the GPUs (`devices`); health goes Unhealthy at once and
//! Healthy after a recovery period (`health`, `publisher`); vram is packed
//! onto one GPU (`preferred`); Allocate records the allocation in the node,
//! which mints its token, and persists it (`allocate`, `allocations`,
//! `store`); allocations of gone pods are released through PodResources
//! (`podresources`).
//!
//! Set up in two steps, like the daemon: [`Built::new`] restores saved
//! allocations and spawns nothing; [`Built::spawn`] starts serving.

mod allocate;
mod allocations;
mod devices;
mod health;
mod plugin;
mod podresources;
mod preferred;
mod publisher;
mod registration;
mod server;
mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use self::allocations::{Allocations, Mounts};
use self::devices::{Layout, Resource};
use self::plugin::Plugin;
#[cfg(test)]
pub(crate) use self::registration::PLUGIN_MAX_CONNECTIONS;
use crate::config::Config;
use crate::kubelet;
use crate::node::Node;

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

/// Why the device plugins could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    #[error("cannot read the saved allocations: {0}")]
    Saved(#[source] store::Error),
}

/// Which plugins are registered with kubelet right now.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    plugins: Vec<Arc<Plugin>>,
}

impl Registration {
    pub(crate) fn all_registered(&self) -> bool {
        self.plugins.iter().all(|p| p.is_registered())
    }

    /// (resource name, registered now), per plugin.
    pub(crate) fn each(&self) -> Vec<(String, bool)> {
        self.plugins
            .iter()
            .map(|p| (p.name().to_owned(), p.is_registered()))
            .collect()
    }
}

/// The plugins, set up (saved allocations restored into the node) but not
/// yet serving: dropping this leaves nothing behind.
pub(crate) struct Built {
    allocations: Arc<Allocations>,
    plugins: Vec<Arc<Plugin>>,
    opts: Options,
    health_recovery: Duration,
    release_grace: Duration,
}

impl Built {
    /// Lays out the devices and restores saved allocations into the node.
    /// `host_pods_dir` is the task socket's directory, which Allocate mounts
    /// into containers.
    pub(crate) fn new(
        node: &Arc<Node>,
        cfg: &Config,
        state_dir: &Path,
        host_pods_dir: &Path,
        opts: Options,
    ) -> Result<Built, BuildError> {
        let gpus: Vec<(String, u64)> = node
            .gpus()
            .into_iter()
            .map(|g| (g.uuid, g.total_mib))
            .collect();
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
        let saved = store.load().map_err(BuildError::Saved)?;
        let healthy = node.gpu_healthy();
        let plugins: Vec<Arc<Plugin>> = Resource::ALL
            .into_iter()
            .map(|r| {
                let plugin = Plugin::new(r, &cfg.domain, &opts.dir, layout.devices(r, &healthy));
                tracing::info!(resource = %plugin.name(), devices = layout.devices(r, &healthy).len(),
                    unit_mib = layout.vram_unit_mib, "device plugin");
                Arc::new(plugin)
            })
            .collect();
        let mounts = Mounts {
            domain: cfg.domain.clone(),
            host_pods_dir: host_pods_dir.to_owned(),
            container_socket_dir: d.container_socket_dir.clone(),
            cdi: d.cdi,
            slot: allocate::SlotSetup {
                runtime_endpoint: node.runtime().client_endpoint().map(str::to_owned),
                gpus: d.slot_gpu_visibility,
            },
        };
        let allocations = Arc::new(Allocations::new(Arc::clone(node), layout, mounts, store));
        let saved_count = saved.len();
        let restored = allocations.restore(saved);
        if saved_count > 0 {
            tracing::info!(
                restored,
                saved = saved_count,
                "restored allocations of running pods"
            );
        }
        Ok(Built {
            allocations,
            plugins,
            opts,
            health_recovery: d.health_recovery,
            release_grace: d.release_grace,
        })
    }

    /// What readiness and `/metrics` read.
    pub(crate) fn registration(&self) -> Registration {
        Registration {
            plugins: self.plugins.clone(),
        }
    }

    /// Serves and registers every plugin, watches kubelet's directory,
    /// publishes health and releases gone pods' allocations; all of it ends
    /// when the node shuts down.
    pub(crate) fn spawn(self) -> DevicePlugins {
        let node = Arc::clone(self.allocations.node());
        let (kubelet_changes, watch_handle) = registration::spawn_kubelet_watch(
            self.opts.dir.clone(),
            self.plugins.clone(),
            node.shutdown_signal(),
        );
        let mut handles = vec![
            watch_handle,
            publisher::spawn_health_publisher(
                Arc::clone(&node),
                self.allocations.layout().clone(),
                self.plugins.clone(),
                self.health_recovery,
            ),
            podresources::spawn_reconciler(
                Arc::clone(&self.allocations),
                podresources::PodResources {
                    socket: self.opts.pod_resources_socket.clone(),
                },
                self.opts.reconcile_interval,
                self.release_grace,
            ),
        ];
        for plugin in &self.plugins {
            handles.push(registration::spawn_plugin(
                Arc::clone(plugin),
                Arc::clone(&self.allocations),
                self.opts.dir.clone(),
                kubelet_changes.clone(),
            ));
        }
        DevicePlugins { handles }
    }
}

/// The running plugins.
pub(crate) struct DevicePlugins {
    handles: Vec<JoinHandle<()>>,
}

impl DevicePlugins {
    /// Waits for the plugin tasks after the node began shutting down.
    pub(crate) async fn join(self) {
        for h in self.handles {
            let _ = h.await;
        }
    }
}
