//! Facts of the kubelet's device plugin and PodResources APIs that are not in
//! the protos: versions, health strings, paths, limits. The generated types
//! are in [`crate::proto::k8s`]. Each value is part of the contract with a
//! kubelet we do not control; the line above it says where it comes from.

/// The device plugin API version we speak, sent in `RegisterRequest.version`;
/// kubelet's `SupportedVersions` is `["v1beta1"]` and it refuses others.
pub const VERSION: &str = "v1beta1";

/// `Device.health` of a usable device (kubelet's `Healthy` constant).
pub const HEALTHY: &str = "Healthy";

/// `Device.health` of a device kubelet must not hand out (kubelet's
/// `Unhealthy` constant).
pub const UNHEALTHY: &str = "Unhealthy";

/// Directory where kubelet serves `Registration` and dials plugins
/// (kubelet's `DevicePluginPath`, without its trailing slash). A plugin's
/// `RegisterRequest.endpoint` is a file name in it.
pub const DEVICE_PLUGIN_PATH: &str = "/var/lib/kubelet/device-plugins";

/// File name of kubelet's registration socket in [`DEVICE_PLUGIN_PATH`]
/// (kubelet's `KubeletSocket` is the two joined). Kubelet re-creates it on
/// every start, which is how a plugin learns that it must register again.
pub const KUBELET_SOCKET: &str = "kubelet.sock";

/// Kubelet's device-manager checkpoint in [`DEVICE_PLUGIN_PATH`]; not a
/// socket, and not ours to touch.
pub const KUBELET_CHECKPOINT: &str = "kubelet_internal_checkpoint";

/// How long kubelet waits for `PreStartContainer`
/// (`KubeletPreStartContainerRPCTimeoutInSecs`).
pub const PRE_START_CONTAINER_TIMEOUT_SECS: u64 = 30;

/// The PodResources API socket (podresources v1 constants); serve-side it is
/// kubelet's, so a pod mounts its directory, not the file, to survive
/// kubelet restarts.
pub const POD_RESOURCES_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";

/// The PodResources API version (podresources v1 `Version`).
pub const POD_RESOURCES_VERSION: &str = "v1";

/// Largest `ListAndWatchResponse` kubelet accepts: it reads the stream with
/// gRPC's default 4 MiB receive limit (kubernetes#109304; the PR to raise it,
/// #127049, was closed). A larger message fails with RESOURCE_EXHAUSTED and
/// kubelet marks every device of the resource Unhealthy.
pub const LIST_AND_WATCH_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Longest `Device.ID` (KUBELET_API.md §1.1, "max 63 chars").
pub const MAX_DEVICE_ID_LEN: usize = 63;
