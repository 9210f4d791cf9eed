//! A fake kubelet for integration tests, over real Unix sockets.
//!
//! [`FakeKubelet`] serves `Registration` on `<dir>/kubelet.sock` and, for
//! each plugin that registers, does what kubelet's device manager does: dial
//! `<dir>/<endpoint>` (with `:authority` `localhost`, like kubelet ≥ 1.26),
//! ask `GetDevicePluginOptions`, then read `ListAndWatch` with gRPC's 4 MiB
//! receive limit. [`FakeKubelet::restart`] removes every socket in the
//! directory and serves a new `kubelet.sock`, as a restarted kubelet does.
//! [`FakePodResources`] serves the PodResources API.
//!
//! Waiting is always on a channel with a deadline, never a sleep: a test
//! fails with a message naming what did not arrive.
// Each test crate uses a different subset.

mod pod_resources;

#[allow(unused_imports)]
pub use pod_resources::{FakePodResources, pod};

use std::collections::HashMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};
use vision_node_daemon::kubelet;
pub use vision_node_daemon::proto::k8s::deviceplugin::v1beta1 as dp;
use vision_node_daemon::uds;

use dp::device_plugin_client::DevicePluginClient;
use dp::registration_server::{Registration, RegistrationServer};

/// Default deadline for anything a test waits on.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How long kubelet gives a plugin's socket to answer after Register (its
/// blocking dial has a 10 s timeout).
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// When kubelet answers `Register` relative to dialling the plugin back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RegisterMode {
    /// Kubelet ≥ 1.25: `Register` dials the plugin and asks
    /// `GetDevicePluginOptions` before it answers, and fails if either
    /// fails, so a plugin must serve its socket before registering.
    /// `ListAndWatch` is opened afterwards, in the background.
    #[default]
    ConnectFirst,
    /// Kubelet ≤ 1.24: `Register` answers at once and a background task
    /// dials; a dial failure only shows in the watch ([`Watch::Ended`]).
    AnswerFirst,
}

/// One event of a resource's `ListAndWatch` stream, as kubelet sees it.
#[derive(Debug)]
pub enum Watch {
    Devices(Vec<dp::Device>),
    /// The stream ended: `Ok` when the plugin closed it, otherwise the
    /// status (e.g. RESOURCE_EXHAUSTED for a message over 4 MiB, or the
    /// dial failure in [`RegisterMode::AnswerFirst`]).
    Ended(Result<(), Status>),
}

/// Kubelet's side of one resource's plugin.
#[derive(Clone)]
struct Conn {
    client: DevicePluginClient<Channel>,
    options: dp::DevicePluginOptions,
}

/// Per-resource state. Created by whichever comes first, the plugin's
/// registration or a test waiting on the resource, so nothing is missed.
struct Resource {
    events_tx: mpsc::UnboundedSender<Watch>,
    /// Behind an async mutex so `&FakeKubelet` methods can wait on it.
    events_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Watch>>,
    /// The connection of the latest registration; `None` until dialled.
    conn: watch::Sender<Option<Conn>>,
    /// The task that reads `ListAndWatch` (and dials, in `AnswerFirst`).
    /// A new registration of the resource replaces — aborts — it.
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Resource {
    fn new() -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Self {
            events_tx,
            events_rx: tokio::sync::Mutex::new(events_rx),
            conn: watch::Sender::new(None),
            task: Mutex::new(None),
        }
    }

    fn replace_task(&self, task: JoinHandle<()>) {
        let old = self.task.lock().expect("task lock").replace(task);
        // In `AnswerFirst` the dialling task installs its own successor: it
        // ends by itself and must not abort itself.
        if let Some(old) = old.filter(|t| Some(t.id()) != tokio::task::try_id()) {
            old.abort();
        }
    }

    /// Installs a fresh connection and starts reading its `ListAndWatch`.
    fn attach(self: &Arc<Self>, conn: Conn) {
        self.conn.send_replace(Some(conn.clone()));
        let task = tokio::spawn(read_watch(conn.client, self.events_tx.clone()));
        self.replace_task(task);
    }

    fn disconnect(&self) {
        if let Some(task) = self.task.lock().expect("task lock").take() {
            task.abort();
        }
        self.conn.send_replace(None);
    }
}

/// What the Registration service and the test handle share.
struct State {
    dir: PathBuf,
    mode: RegisterMode,
    registrations: mpsc::UnboundedSender<dp::RegisterRequest>,
    /// Registrations accepted, counted across restarts of this kubelet.
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    resources: Mutex<HashMap<String, Arc<Resource>>>,
}

impl State {
    fn resource(&self, name: &str) -> Arc<Resource> {
        let mut map = self.resources.lock().expect("resources lock");
        Arc::clone(
            map.entry(name.to_owned())
                .or_insert_with(|| Arc::new(Resource::new())),
        )
    }
}

/// A tonic server on a Unix socket that stops on drop.
pub struct Served {
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Served {
    /// Binds `path` (0600, a real socket) and serves `routes` on it.
    pub async fn start(path: &Path, routes: Routes) -> Self {
        let listener = uds::UdsListener::bind(path, uds::ADMIN_SOCKET_MODE)
            .await
            .unwrap_or_else(|e| panic!("cannot bind {}: {e}", path.display()));
        Self::serve(listener, routes)
    }

    /// Serves `routes` on an already bound listener.
    pub fn serve(listener: uds::UdsListener, routes: Routes) -> Self {
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = Server::builder()
                .add_routes(routes)
                .serve_with_incoming_shutdown(listener.incoming(), async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                eprintln!("test server failed: {e}");
            }
        });
        Self {
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Stops accepting, closes connections (GOAWAY) and waits until the
    /// socket file is gone; a server still busy after 5 s is killed, as a
    /// dying kubelet would be.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A kubelet's device manager: `Registration` on `<dir>/kubelet.sock`, and a
/// client per registered resource.
pub struct FakeKubelet {
    dir: PathBuf,
    state: Arc<State>,
    registrations: tokio::sync::Mutex<mpsc::UnboundedReceiver<dp::RegisterRequest>>,
    server: Served,
}

impl FakeKubelet {
    /// Serves `Registration` on `<dir>/kubelet.sock` like kubelet ≥ 1.25.
    pub async fn start(dir: &Path) -> Self {
        Self::start_with(dir, RegisterMode::default()).await
    }

    pub async fn start_with(dir: &Path, mode: RegisterMode) -> Self {
        Self::start_counting(dir, mode, Arc::default()).await
    }

    async fn start_counting(
        dir: &Path,
        mode: RegisterMode,
        accepted: Arc<std::sync::atomic::AtomicUsize>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            dir: dir.to_owned(),
            mode,
            registrations: tx,
            accepted,
            resources: Mutex::new(HashMap::new()),
        });
        let svc = RegistrationServer::new(RegistrationService {
            state: Arc::clone(&state),
        });
        let server = Served::start(&dir.join(kubelet::KUBELET_SOCKET), Routes::new(svc)).await;
        Self {
            dir: dir.to_owned(),
            state,
            registrations: tokio::sync::Mutex::new(rx),
            server,
        }
    }

    /// `<dir>/kubelet.sock`.
    pub fn socket(&self) -> PathBuf {
        self.dir.join(kubelet::KUBELET_SOCKET)
    }

    /// Every `Register` call accepted so far, by this kubelet and the ones it
    /// was restarted from: what a test counts to prove there was no
    /// spurious second registration.
    pub fn registrations_accepted(&self) -> usize {
        self.state
            .accepted
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The next accepted-for-processing `Register` call (version and
    /// resource name valid), in arrival order.
    pub async fn next_registration(&self, timeout: Duration) -> dp::RegisterRequest {
        let wait = async { self.registrations.lock().await.recv().await };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or_else(|_| panic!("no registration at the fake kubelet within {timeout:?}"))
            .expect("the fake kubelet holds the sender")
    }

    /// The next `ListAndWatch` event for `resource`.
    pub async fn next_watch(&self, resource: &str, timeout: Duration) -> Watch {
        let res = self.state.resource(resource);
        let wait = async { res.events_rx.lock().await.recv().await };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or_else(|_| panic!("no ListAndWatch event for {resource} within {timeout:?}"))
            .expect("the resource holds the sender")
    }

    /// The next device list `resource`'s plugin sent; fails if the stream
    /// ends instead.
    pub async fn devices(&self, resource: &str, timeout: Duration) -> Vec<dp::Device> {
        match self.next_watch(resource, timeout).await {
            Watch::Devices(devices) => devices,
            Watch::Ended(end) => {
                panic!("ListAndWatch for {resource} ended ({end:?}) while waiting for devices")
            }
        }
    }

    /// Skips device lists until `resource`'s stream ends; how it ended.
    pub async fn watch_ended(&self, resource: &str, timeout: Duration) -> Result<(), Status> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Watch::Ended(end) = self.next_watch(resource, left).await {
                return end;
            }
        }
    }

    async fn conn(&self, resource: &str) -> Conn {
        let mut rx = self.state.resource(resource).conn.subscribe();
        let conn = tokio::time::timeout(DEADLINE, rx.wait_for(Option::is_some))
            .await
            .unwrap_or_else(|_| {
                panic!("kubelet has not connected to {resource} within {DEADLINE:?}")
            })
            .expect("the resource holds the sender");
        conn.clone().expect("waited for Some")
    }

    /// The client kubelet holds for `resource`'s plugin (waits for the
    /// dial), to drive `GetPreferredAllocation`/`Allocate` as kubelet does.
    pub async fn plugin(&self, resource: &str) -> DevicePluginClient<Channel> {
        self.conn(resource).await.client
    }

    /// The options `resource`'s plugin answered when kubelet dialled it.
    pub async fn options(&self, resource: &str) -> dp::DevicePluginOptions {
        self.conn(resource).await.options
    }

    /// `Allocate` for one container, as kubelet calls it (one container
    /// request per call), and kubelet's check that an answer came back.
    pub async fn allocate(
        &self,
        resource: &str,
        device_ids: &[&str],
    ) -> Result<dp::ContainerAllocateResponse, Status> {
        let req = dp::AllocateRequest {
            container_requests: vec![dp::ContainerAllocateRequest {
                devices_ids: strings(device_ids),
            }],
        };
        let resp = self
            .plugin(resource)
            .await
            .allocate(req)
            .await?
            .into_inner();
        match <[_; 1]>::try_from(resp.container_responses) {
            Ok([one]) => Ok(one),
            Err(all) => Err(Status::internal(format!(
                "kubelet expects 1 container response, got {}",
                all.len()
            ))),
        }
    }

    /// `GetPreferredAllocation` for one container; `None` when the plugin's
    /// options say it has none, in which case kubelet does not call it.
    pub async fn preferred_allocation(
        &self,
        resource: &str,
        available: &[&str],
        must_include: &[&str],
        size: i32,
    ) -> Result<Option<Vec<String>>, Status> {
        let Conn {
            mut client,
            options,
        } = self.conn(resource).await;
        if !options.get_preferred_allocation_available {
            return Ok(None);
        }
        let req = dp::PreferredAllocationRequest {
            container_requests: vec![dp::ContainerPreferredAllocationRequest {
                available_device_i_ds: strings(available),
                must_include_device_i_ds: strings(must_include),
                allocation_size: size,
            }],
        };
        let resp = client.get_preferred_allocation(req).await?.into_inner();
        let ids = resp
            .container_responses
            .into_iter()
            .next()
            .map(|r| r.device_i_ds)
            .unwrap_or_default();
        Ok(Some(ids))
    }

    /// Simulates a kubelet restart the way the real one behaves: the process
    /// goes (its server and its connections to plugins close), the new one
    /// deletes every socket in the device-plugin directory at startup, then
    /// serves a new `kubelet.sock` and knows no plugin.
    ///
    /// The new socket is a new file, but the filesystem may give it the old
    /// inode number (tmpfs here does, at once; so can a real node): a daemon
    /// must not detect kubelet restarts by comparing inode numbers alone.
    pub async fn restart(mut self) -> Self {
        self.stop().await;
        remove_sockets(&self.dir);
        Self::start_counting(&self.dir, self.state.mode, Arc::clone(&self.state.accepted)).await
    }

    async fn stop(&mut self) {
        self.server.stop().await;
        let resources: Vec<_> = self
            .state
            .resources
            .lock()
            .expect("resources lock")
            .values()
            .cloned()
            .collect();
        for res in resources {
            res.disconnect();
        }
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        for res in self
            .state
            .resources
            .lock()
            .expect("resources lock")
            .values()
        {
            res.disconnect();
        }
    }
}

/// Deletes every socket file in `dir` (what kubelet does at startup). A
/// socket that vanishes meanwhile (its plugin removed it on noticing the
/// first deletions) is fine, as it is for kubelet.
pub fn remove_sockets(dir: &Path) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.expect("directory entry");
        if entry.file_type().is_ok_and(|t| t.is_socket()) {
            match std::fs::remove_file(entry.path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    panic!("cannot remove {}: {e}", entry.path().display())
                }
                _ => {}
            }
        }
    }
}

fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// A unary call on a literal gRPC path, bypassing generated clients: proves
/// that a server answers on the path kubelet (or a plugin) really uses.
pub async fn raw_unary<Req, Resp>(
    channel: Channel,
    path: &'static str,
    req: Req,
) -> Result<Resp, Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    grpc.unary(
        Request::new(req),
        http::uri::PathAndQuery::from_static(path),
        codec,
    )
    .await
    .map(Response::into_inner)
}

/// Kubelet's `Registration` service.
struct RegistrationService {
    state: Arc<State>,
}

#[tonic::async_trait]
impl Registration for RegistrationService {
    async fn register(
        &self,
        req: Request<dp::RegisterRequest>,
    ) -> Result<Response<dp::Empty>, Status> {
        let req = req.into_inner();
        // Kubelet answers these with plain Go errors: gRPC code UNKNOWN.
        if req.version != kubelet::VERSION {
            return Err(Status::unknown(format!(
                "requested API version {:?} is not supported by kubelet. Supported versions are [\"{}\"]",
                req.version,
                kubelet::VERSION
            )));
        }
        if !is_extended_resource_name(&req.resource_name) {
            return Err(Status::unknown(format!(
                "the ResourceName {:?} is invalid",
                req.resource_name
            )));
        }
        let _ = self.state.registrations.send(req.clone());
        let res = self.state.resource(&req.resource_name);
        let path = self.state.dir.join(&req.endpoint);
        match self.state.mode {
            RegisterMode::ConnectFirst => {
                let conn = dial(&path).await.map_err(Status::unknown)?;
                // Counted before the stream starts: a test that has seen
                // the devices must find the registration counted.
                self.state
                    .accepted
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                res.attach(conn);
            }
            RegisterMode::AnswerFirst => {
                self.state
                    .accepted
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let background = Arc::clone(&res);
                res.replace_task(tokio::spawn(async move {
                    match dial(&path).await {
                        Ok(conn) => background.attach(conn),
                        Err(e) => {
                            let _ = background
                                .events_tx
                                .send(Watch::Ended(Err(Status::unavailable(e))));
                        }
                    }
                }));
            }
        }
        Ok(Response::new(dp::Empty {}))
    }
}

/// Kubelet's plugin dial: connect (authority `localhost`), then
/// `GetDevicePluginOptions`, within [`DIAL_TIMEOUT`].
async fn dial(path: &Path) -> Result<Conn, String> {
    let connect = async {
        let channel = uds::client::connect(path)
            .await
            .map_err(|e| format!("failed to dial device plugin {}: {e}", path.display()))?;
        let mut client = DevicePluginClient::new(channel)
            .max_decoding_message_size(kubelet::LIST_AND_WATCH_MAX_BYTES);
        let options = client
            .get_device_plugin_options(dp::Empty {})
            .await
            .map_err(|s| format!("failed to get device plugin options: {s}"))?
            .into_inner();
        Ok(Conn { client, options })
    };
    tokio::time::timeout(DIAL_TIMEOUT, connect)
        .await
        .map_err(|_| format!("failed to dial device plugin {}: timed out", path.display()))?
}

/// Reads one `ListAndWatch` stream into the resource's channel.
async fn read_watch(mut client: DevicePluginClient<Channel>, events: mpsc::UnboundedSender<Watch>) {
    let end = match client.list_and_watch(dp::Empty {}).await {
        Err(status) => Err(status),
        Ok(resp) => {
            let mut stream = resp.into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(msg)) => {
                        if events.send(Watch::Devices(msg.devices)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => break Ok(()),
                    Err(status) => break Err(as_grpc_go(status)),
                }
            }
        }
    };
    let _ = events.send(Watch::Ended(end));
}

/// tonic reports a message over the receive limit as OUT_OF_RANGE; kubelet
/// (grpc-go) reports RESOURCE_EXHAUSTED, "received message larger than
/// max", which is what operators see in its log. Speak like kubelet.
fn as_grpc_go(status: Status) -> Status {
    if status.code() == tonic::Code::OutOfRange && status.message().contains("too large") {
        Status::resource_exhausted(format!(
            "grpc: received message larger than max ({} vs. {})",
            status.message(),
            kubelet::LIST_AND_WATCH_MAX_BYTES
        ))
    } else {
        status
    }
}

/// Kubelet's `IsExtendedResourceName`: `<domain>/<name>`, outside
/// `kubernetes.io`, and a valid qualified name once `requests.` is prefixed.
pub fn is_extended_resource_name(name: &str) -> bool {
    let Some((prefix, local)) = name.split_once('/') else {
        return false;
    };
    if name.contains("kubernetes.io/") || name.starts_with("requests.") {
        return false;
    }
    let dns_subdomain = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    };
    let qualified_local = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    dns_subdomain(&format!("requests.{prefix}")) && qualified_local(local)
}
