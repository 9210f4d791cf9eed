//! One device plugin: everything about one extended resource in one value.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use super::devices::{DeviceView, Resource};

/// One kubelet device plugin: one extended resource, served on its own
/// socket in kubelet's device-plugin directory.
#[derive(Debug)]
pub(crate) struct Plugin {
    resource: Resource,
    /// The extended resource name, e.g. `vision.ai/slot`.
    name: String,
    /// Our socket in kubelet's device-plugin directory.
    socket: PathBuf,
    /// Registered with the kubelet running now.
    registered: AtomicBool,
    /// The device list kubelet is streamed (ListAndWatch); only changes wake it.
    devices: watch::Sender<Vec<DeviceView>>,
    /// How many times our socket was seen to disappear, counting up.
    socket_gone: watch::Sender<u64>,
}

impl Plugin {
    pub(crate) fn new(
        resource: Resource,
        domain: &str,
        kubelet_dir: &Path,
        devices: Vec<DeviceView>,
    ) -> Plugin {
        Plugin {
            resource,
            name: resource.name(domain),
            socket: kubelet_dir.join(resource.socket_file()),
            registered: AtomicBool::new(false),
            devices: watch::channel(devices).0,
            socket_gone: watch::channel(0).0,
        }
    }

    pub(crate) fn resource(&self) -> Resource {
        self.resource
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    pub(crate) fn is_registered(&self) -> bool {
        self.registered.load(Ordering::SeqCst)
    }

    pub(crate) fn set_registered(&self, registered: bool) {
        self.registered.store(registered, Ordering::SeqCst);
    }

    /// Publishes a device list; kubelet hears of it only if it changed.
    pub(crate) fn publish_devices(&self, list: Vec<DeviceView>) {
        self.devices.send_if_modified(|cur| {
            let changed = *cur != list;
            if changed {
                *cur = list;
            }
            changed
        });
    }

    /// The device list, now and on every change.
    pub(crate) fn devices(&self) -> watch::Receiver<Vec<DeviceView>> {
        self.devices.subscribe()
    }

    /// Our socket was seen to disappear.
    pub(crate) fn note_socket_gone(&self) {
        self.socket_gone.send_modify(|n| *n += 1);
    }

    /// Counts disappearances of our socket.
    pub(crate) fn socket_gone(&self) -> watch::Receiver<u64> {
        self.socket_gone.subscribe()
    }
}
