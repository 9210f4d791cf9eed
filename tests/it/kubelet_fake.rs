//! The fake kubelet behaves like the real one towards a device plugin: a
//! tiny in-test plugin registers, is dialled back, streams devices, is
//! allocated from, and is made to re-register by a kubelet restart.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::pin::Pin;

use crate::kubelet_support::{
    DEADLINE, FakeKubelet, FakePodResources, RegisterMode, Served, Watch,
    is_extended_resource_name, pod, raw_unary,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::{Stream, StreamExt, wrappers::WatchStream};
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use vision_node_daemon::kubelet;
use vision_node_daemon::proto::k8s::deviceplugin::v1beta1 as dp;
use vision_node_daemon::proto::k8s::podresources::v1 as pr;
use vision_node_daemon::uds;

use dp::device_plugin_server::{DevicePlugin, DevicePluginServer};
use dp::registration_client::RegistrationClient;

const RESOURCE: &str = "example.com/widget";
const ENDPOINT: &str = "test.sock";

fn device(id: &str, health: &str) -> dp::Device {
    dp::Device {
        id: id.into(),
        health: health.into(),
        topology: None,
    }
}

fn two_devices() -> Vec<dp::Device> {
    vec![
        device("dev-0", kubelet::HEALTHY),
        device("dev-1", kubelet::HEALTHY),
    ]
}

/// A device plugin whose ListAndWatch sends the current list, then again on
/// every change of `devices`; records the RPCs kubelet makes.
struct TestPlugin {
    devices: watch::Receiver<Vec<dp::Device>>,
    calls: mpsc::UnboundedSender<&'static str>,
}

#[tonic::async_trait]
impl DevicePlugin for TestPlugin {
    type ListAndWatchStream =
        Pin<Box<dyn Stream<Item = Result<dp::ListAndWatchResponse, Status>> + Send>>;

    async fn get_device_plugin_options(
        &self,
        _: Request<dp::Empty>,
    ) -> Result<Response<dp::DevicePluginOptions>, Status> {
        let _ = self.calls.send("GetDevicePluginOptions");
        Ok(Response::new(options()))
    }

    async fn list_and_watch(
        &self,
        _: Request<dp::Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let _ = self.calls.send("ListAndWatch");
        let stream = WatchStream::new(self.devices.clone())
            .map(|devices| Ok(dp::ListAndWatchResponse { devices }));
        Ok(Response::new(Box::pin(stream)))
    }

    /// must_include first, then the other available devices, in order.
    async fn get_preferred_allocation(
        &self,
        req: Request<dp::PreferredAllocationRequest>,
    ) -> Result<Response<dp::PreferredAllocationResponse>, Status> {
        let _ = self.calls.send("GetPreferredAllocation");
        let container_responses = req
            .into_inner()
            .container_requests
            .into_iter()
            .map(|c| {
                let rest = c
                    .available_device_i_ds
                    .iter()
                    .filter(|id| !c.must_include_device_i_ds.contains(id))
                    .cloned();
                let size = usize::try_from(c.allocation_size).unwrap_or(0);
                let device_i_ds = c
                    .must_include_device_i_ds
                    .clone()
                    .into_iter()
                    .chain(rest)
                    .take(size)
                    .collect();
                dp::ContainerPreferredAllocationResponse { device_i_ds }
            })
            .collect();
        Ok(Response::new(dp::PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        req: Request<dp::AllocateRequest>,
    ) -> Result<Response<dp::AllocateResponse>, Status> {
        let _ = self.calls.send("Allocate");
        let container_responses = req
            .into_inner()
            .container_requests
            .into_iter()
            .map(|c| dp::ContainerAllocateResponse {
                envs: [("TEST_DEVICES".to_owned(), c.devices_ids.join(","))].into(),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(dp::AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        _: Request<dp::PreStartContainerRequest>,
    ) -> Result<Response<dp::PreStartContainerResponse>, Status> {
        let _ = self.calls.send("PreStartContainer");
        Ok(Response::new(dp::PreStartContainerResponse {}))
    }
}

fn options() -> dp::DevicePluginOptions {
    dp::DevicePluginOptions {
        pre_start_required: false,
        get_preferred_allocation_available: true,
    }
}

/// The test's side of a running [`TestPlugin`].
struct Plugin {
    devices: watch::Sender<Vec<dp::Device>>,
    calls: mpsc::UnboundedReceiver<&'static str>,
    _server: Served,
}

impl Plugin {
    /// Serves a plugin with `devices` on a listener bound beforehand.
    fn serve(listener: uds::UdsListener, devices: Vec<dp::Device>) -> Self {
        let (devices_tx, devices_rx) = watch::channel(devices);
        let (calls_tx, calls) = mpsc::unbounded_channel();
        let svc = DevicePluginServer::new(TestPlugin {
            devices: devices_rx,
            calls: calls_tx,
        });
        Self {
            devices: devices_tx,
            calls,
            _server: Served::serve(listener, Routes::new(svc)),
        }
    }

    async fn start(dir: &Path, devices: Vec<dp::Device>) -> Self {
        Self::serve(bind_plugin_socket(dir).await, devices)
    }

    async fn next_call(&mut self) -> &'static str {
        tokio::time::timeout(DEADLINE, self.calls.recv())
            .await
            .expect("the plugin is called within the deadline")
            .expect("the plugin holds the sender")
    }
}

async fn bind_plugin_socket(dir: &Path) -> uds::UdsListener {
    uds::UdsListener::bind(dir.join(ENDPOINT), uds::ADMIN_SOCKET_MODE)
        .await
        .expect("bind the plugin socket")
}

fn register_request(version: &str, resource: &str) -> dp::RegisterRequest {
    dp::RegisterRequest {
        version: version.into(),
        endpoint: ENDPOINT.into(),
        resource_name: resource.into(),
        options: Some(options()),
    }
}

async fn registration(kubelet: &FakeKubelet) -> RegistrationClient<Channel> {
    RegistrationClient::new(
        uds::client::connect(kubelet.socket())
            .await
            .expect("kubelet.sock"),
    )
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registered_plugin_is_dialled_back_before_register_answers_and_streams_its_devices() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubelet = FakeKubelet::start(dir.path()).await;
    let mut plugin = Plugin::start(dir.path(), two_devices()).await;

    registration(&kubelet)
        .await
        .register(register_request(kubelet::VERSION, RESOURCE))
        .await
        .expect("registered");
    assert_eq!(
        plugin.calls.try_recv(),
        Ok("GetDevicePluginOptions"),
        "kubelet ≥ 1.25 asks the options before Register answers"
    );

    let reg = kubelet.next_registration(DEADLINE).await;
    assert_eq!(reg, register_request(kubelet::VERSION, RESOURCE));
    assert_eq!(kubelet.options(RESOURCE).await, options());
    assert_eq!(kubelet.devices(RESOURCE, DEADLINE).await, two_devices());
    assert_eq!(plugin.next_call().await, "ListAndWatch");

    plugin
        .devices
        .send_modify(|d| d[1].health = kubelet::UNHEALTHY.into());
    let update = kubelet.devices(RESOURCE, DEADLINE).await;
    assert_eq!(update[0].health, kubelet::HEALTHY);
    assert_eq!(update[1].health, kubelet::UNHEALTHY);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_old_kubelet_answers_register_before_the_plugin_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubelet = FakeKubelet::start_with(dir.path(), RegisterMode::AnswerFirst).await;
    // Bound, so connections queue, but nobody answers them yet.
    let listener = bind_plugin_socket(dir.path()).await;

    registration(&kubelet)
        .await
        .register(register_request(kubelet::VERSION, RESOURCE))
        .await
        .expect("answered without the plugin serving");

    let mut plugin = Plugin::serve(listener, two_devices());
    assert_eq!(kubelet.devices(RESOURCE, DEADLINE).await, two_devices());
    assert_eq!(plugin.next_call().await, "GetDevicePluginOptions");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_current_kubelet_refuses_a_plugin_that_does_not_serve_its_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubelet = FakeKubelet::start(dir.path()).await;

    let err = registration(&kubelet)
        .await
        .register(register_request(kubelet::VERSION, RESOURCE))
        .await
        .expect_err("nothing at test.sock");
    assert_eq!(err.code(), Code::Unknown, "{err:?}");
    assert!(err.message().contains("failed to dial"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kubelet_drives_preferred_allocation_and_allocate_through_its_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubelet = FakeKubelet::start(dir.path()).await;
    let mut plugin = Plugin::start(dir.path(), two_devices()).await;
    registration(&kubelet)
        .await
        .register(register_request(kubelet::VERSION, RESOURCE))
        .await
        .expect("registered");

    let preferred = kubelet
        .preferred_allocation(RESOURCE, &["dev-0", "dev-1"], &["dev-1"], 1)
        .await
        .expect("GetPreferredAllocation");
    assert_eq!(preferred, Some(vec!["dev-1".to_owned()]));

    let resp = kubelet
        .allocate(RESOURCE, &["dev-0", "dev-1"])
        .await
        .expect("Allocate");
    assert_eq!(resp.envs["TEST_DEVICES"], "dev-0,dev-1");

    kubelet
        .plugin(RESOURCE)
        .await
        .pre_start_container(dp::PreStartContainerRequest {
            devices_ids: vec!["dev-0".into()],
        })
        .await
        .expect("PreStartContainer");

    let mut calls = Vec::new();
    while calls.len() < 5 {
        calls.push(plugin.next_call().await);
    }
    calls.sort_unstable();
    assert_eq!(
        calls,
        [
            "Allocate",
            "GetDevicePluginOptions",
            "GetPreferredAllocation",
            "ListAndWatch",
            "PreStartContainer"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_deletes_every_socket_and_serves_a_new_kubelet_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubelet = FakeKubelet::start(dir.path()).await;
    let _plugin = Plugin::start(dir.path(), two_devices()).await;
    registration(&kubelet)
        .await
        .register(register_request(kubelet::VERSION, RESOURCE))
        .await
        .expect("registered");
    assert_eq!(kubelet.devices(RESOURCE, DEADLINE).await, two_devices());
    let checkpoint = dir.path().join(kubelet::KUBELET_CHECKPOINT);
    std::fs::write(&checkpoint, b"{}").expect("checkpoint");

    let kubelet = kubelet.restart().await;

    assert!(!dir.path().join(ENDPOINT).exists(), "plugin socket deleted");
    assert!(checkpoint.exists(), "only sockets are deleted");
    // A new file; its inode number may be the old one's (see `restart`).
    assert!(is_socket(&kubelet.socket()), "a new kubelet.sock");

    // The plugin comes back the way a correct one must: serve anew, register
    // again.
    let _plugin = Plugin::start(dir.path(), vec![device("dev-9", kubelet::HEALTHY)]).await;
    registration(&kubelet)
        .await
        .register(register_request(kubelet::VERSION, RESOURCE))
        .await
        .expect("registered again");
    assert_eq!(kubelet.next_registration(DEADLINE).await.endpoint, ENDPOINT);
    assert_eq!(
        kubelet.devices(RESOURCE, DEADLINE).await,
        [device("dev-9", kubelet::HEALTHY)]
    );
}

/// Issue 16, item 7: what the daemon registers through. A channel from
/// `uds::client::connect` redials the path once its connection ends, so a
/// registration meant for one kubelet reaches its successor; one from
/// `uds::client::over` fails instead (and the daemon registers again,
/// knowingly, with a pin on the new kubelet).
#[tokio::test(flavor = "multi_thread")]
async fn a_channel_over_one_connection_never_reaches_a_restarted_kubelet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubelet = FakeKubelet::start(dir.path()).await;
    let stream = tokio::net::UnixStream::connect(kubelet.socket())
        .await
        .expect("kubelet.sock");
    let mut pinned = RegistrationClient::new(uds::client::over(stream).await.expect("channel"));
    let mut redialling = registration(&kubelet).await;

    let kubelet = kubelet.restart().await;
    let _plugin = Plugin::start(dir.path(), two_devices()).await;

    for _ in 0..2 {
        let err = pinned
            .register(register_request(kubelet::VERSION, RESOURCE))
            .await
            .expect_err("the first kubelet is gone");
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    }
    assert_eq!(
        kubelet.registrations_accepted(),
        0,
        "nothing reached the new kubelet"
    );

    // The control: the first call may still meet the dead connection; the
    // next redials and is answered by the new kubelet.
    let mut answered = false;
    for _ in 0..2 {
        answered = redialling
            .register(register_request(kubelet::VERSION, RESOURCE))
            .await
            .is_ok();
        if answered {
            break;
        }
    }
    assert!(
        answered,
        "a channel that dials by path reaches the new kubelet"
    );
    assert_eq!(kubelet.registrations_accepted(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registration_with_a_wrong_version_is_refused_and_not_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubelet = FakeKubelet::start(dir.path()).await;
    let _plugin = Plugin::start(dir.path(), two_devices()).await;
    let mut client = registration(&kubelet).await;

    let err = client
        .register(register_request("v1alpha1", "example.com/old"))
        .await
        .expect_err("v1alpha1 is not supported");
    assert_eq!(err.code(), Code::Unknown, "{err:?}");
    assert!(err.message().contains("not supported"), "{err:?}");

    client
        .register(register_request(kubelet::VERSION, RESOURCE))
        .await
        .expect("registered");
    // The first registration recorded is the valid one.
    assert_eq!(
        kubelet.next_registration(DEADLINE).await.resource_name,
        RESOURCE
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resource_name_that_is_not_an_extended_resource_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubelet = FakeKubelet::start(dir.path()).await;
    let mut client = registration(&kubelet).await;
    for bad in ["widget", "kubernetes.io/widget", "Example.com/widget"] {
        let err = client
            .register(register_request(kubelet::VERSION, bad))
            .await
            .expect_err(bad);
        assert!(err.message().contains("is invalid"), "{bad}: {err:?}");
    }
    assert!(is_extended_resource_name("vision.ai/vram"));
    assert!(is_extended_resource_name("nvidia.com/gpu"));
    assert!(!is_extended_resource_name("vision.ai/"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_list_over_4_mib_ends_the_watch_with_resource_exhausted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubelet = FakeKubelet::start(dir.path()).await;
    // ~53 bytes per device on the wire: 100k devices is about 5.3 MB.
    let devices = (0..100_000)
        .map(|i| {
            device(
                &format!("GPU-00000000-0000-0000-0000-{i:012}"),
                kubelet::HEALTHY,
            )
        })
        .collect();
    let _plugin = Plugin::start(dir.path(), devices).await;
    registration(&kubelet)
        .await
        .register(register_request(kubelet::VERSION, RESOURCE))
        .await
        .expect("registered");

    let err = kubelet
        .watch_ended(RESOURCE, DEADLINE)
        .await
        .expect_err("over kubelet's limit");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("larger than max"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_answers_on_the_paths_kubelet_calls() {
    assert_eq!(
        <DevicePluginServer<TestPlugin> as NamedService>::NAME,
        "v1beta1.DevicePlugin"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let _plugin = Plugin::start(dir.path(), two_devices()).await;
    let channel = uds::client::connect(dir.path().join(ENDPOINT))
        .await
        .expect("plugin socket");

    let got: dp::DevicePluginOptions = raw_unary(
        channel.clone(),
        "/v1beta1.DevicePlugin/GetDevicePluginOptions",
        dp::Empty {},
    )
    .await
    .expect("GetDevicePluginOptions");
    assert_eq!(got, options());

    let got: dp::AllocateResponse = raw_unary(
        channel,
        "/v1beta1.DevicePlugin/Allocate",
        dp::AllocateRequest {
            container_requests: vec![dp::ContainerAllocateRequest {
                devices_ids: vec!["dev-1".into()],
            }],
        },
    )
    .await
    .expect("Allocate");
    assert_eq!(got.container_responses[0].envs["TEST_DEVICES"], "dev-1");
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_resources_answer_like_kubelet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = FakePodResources::start(&dir.path().join("pod-resources/kubelet.sock")).await;
    let mut client = fake.client().await;

    let empty = client
        .list(pr::ListPodResourcesRequest {})
        .await
        .expect("List");
    assert!(empty.into_inner().pod_resources.is_empty());

    let a = pod("a", "ns", "main", RESOURCE, &["dev-0"]);
    fake.set_pods(vec![
        a.clone(),
        pod("b", "ns", "main", RESOURCE, &["dev-1"]),
    ]);
    let listed = client
        .list(pr::ListPodResourcesRequest {})
        .await
        .expect("List")
        .into_inner()
        .pod_resources;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0], a);
    assert_eq!(
        listed[1].containers[0].devices[0].device_ids,
        ["dev-1".to_owned()]
    );
    assert_eq!(fake.wait_list_calls(2, DEADLINE).await, 2);

    let got = client
        .get(pr::GetPodResourcesRequest {
            pod_name: "a".into(),
            pod_namespace: "ns".into(),
        })
        .await
        .expect("Get")
        .into_inner();
    assert_eq!(got.pod_resources, Some(a));

    let err = client
        .get(pr::GetPodResourcesRequest {
            pod_name: "gone".into(),
            pod_namespace: "ns".into(),
        })
        .await
        .expect_err("unknown pod");
    assert_eq!(err.code(), Code::Unknown, "kubelet's plain Go error");
    assert!(err.message().contains("not found"), "{err:?}");

    let alloc = pr::ContainerDevices {
        resource_name: RESOURCE.into(),
        device_ids: vec!["dev-0".into(), "dev-1".into()],
        topology: None,
    };
    fake.set_allocatable(vec![alloc.clone()]);
    let got = client
        .get_allocatable_resources(pr::AllocatableResourcesRequest {})
        .await
        .expect("GetAllocatableResources")
        .into_inner();
    assert_eq!(got.devices, [alloc]);

    fake.disable_get();
    let err = client
        .get(pr::GetPodResourcesRequest {
            pod_name: "a".into(),
            pod_namespace: "ns".into(),
        })
        .await
        .expect_err("Get disabled");
    assert!(err.message().contains("disabled"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_ends_its_stream_is_seen_by_kubelet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubelet = FakeKubelet::start(dir.path()).await;
    let plugin = Plugin::start(dir.path(), two_devices()).await;
    registration(&kubelet)
        .await
        .register(register_request(kubelet::VERSION, RESOURCE))
        .await
        .expect("registered");
    assert!(matches!(
        kubelet.next_watch(RESOURCE, DEADLINE).await,
        Watch::Devices(_)
    ));

    // The plugin keeps serving but ends ListAndWatch (its watch sender goes).
    let Plugin {
        devices, _server, ..
    } = plugin;
    drop(devices);
    kubelet
        .watch_ended(RESOURCE, DEADLINE)
        .await
        .expect("the plugin closed the stream cleanly");
}
