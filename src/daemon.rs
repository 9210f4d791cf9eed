//! Wiring: config → inventory → engine → node → sockets → background
//! tasks, and the designed shutdown. `main` only parses flags and waits for
//! a signal; tests start and stop a [`Daemon`] in-process.
//!
//! Start is two steps, as linkerd2-proxy's `Config::build() → App::spawn()`:
//! `Built::new` does everything that can fail — opening the GPUs, binding
//! every socket and port, reading saved allocations, writing the dev token —
//! and spawns nothing, so a start that fails part-way drops what it made
//! (bound sockets remove themselves) and leaves nothing running.
//! `Built::spawn` cannot fail: it starts the servers and the tasks, each of
//! which ends when the node shuts down.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::{Config, MeasureMemory, Publish};
use crate::deviceplugin::{self, DevicePlugins, Registration};
use crate::engine::{AllocKind, Engine, GpuSpec, Settings};
use crate::gpu::{self, FaultHandle, HealthWatch, Inventory};
use crate::node::{Node, NodeInfo, WatchIntervals, Workers};
use crate::service::{Access, AdmissionService};
use crate::telemetry::http::{self as http_server, Readiness};
use crate::telemetry::metrics::{self, Scrape, Snapshot};
use crate::uds::{self, UdsListener};
use crate::{cluster, runtime};

mod status_page;

pub use crate::deviceplugin::{Options as KubeletOptions, Presence as KubeletPresence};

/// Where the daemon keeps its sockets and state.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: Config,
    /// Default `/var/lib/vision-node-daemon`; `./.vision-dev` with `--dev`.
    pub state_dir: PathBuf,
    /// Write a dev token with slots for every GPU (no kubelet hands out tokens).
    pub dev_token: bool,
    /// Where kubelet's device-plugin directory and PodResources socket are.
    pub kubelet: KubeletOptions,
    /// `/metrics`, `/healthz`, `/readyz`; `None` serves none.
    pub http_addr: Option<SocketAddr>,
    /// `/readyz` also requires both device plugins to be registered with
    /// kubelet (off in `--dev`, where there is no kubelet).
    pub ready_needs_kubelet: bool,
}

/// The daemon's files under the state dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// `<state>/pods/agent.sock`, mode 0666: its directory is what Allocate mounts into pods.
    pub task_socket: PathBuf,
    /// `<state>/admin.sock`, mode 0600, outside the mounted directory.
    pub admin_socket: PathBuf,
    /// `<state>/dev-token` (dev mode only).
    pub dev_token: PathBuf,
}

impl Paths {
    pub fn under(state_dir: &Path) -> Paths {
        Paths {
            task_socket: state_dir.join("pods").join("agent.sock"),
            admin_socket: state_dir.join("admin.sock"),
            dev_token: state_dir.join("dev-token"),
        }
    }
}

/// How long shutdown waits for runtime unloads and open calls to finish.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A running daemon.
pub struct Daemon {
    node: Arc<Node>,
    paths: Paths,
    faults: Option<FaultHandle>,
    dev_token: Option<DevToken>,
    /// One per GPU; they finish the unloads that shutdown queues.
    workers: Vec<JoinHandle<()>>,
    /// The gRPC and HTTP servers, the timer, the GPU reconciler, the
    /// cluster publisher.
    tasks: Vec<JoinHandle<()>>,
    plugins: DevicePlugins,
    registration: Registration,
    /// NVML's event thread; stopped last (it blocks for up to one wait).
    health_watch: Option<HealthWatch>,
    http: Option<SocketAddr>,
}

impl Daemon {
    /// Starts everything; when this returns, both sockets accept calls. On
    /// an error nothing is left running and no socket is left bound.
    pub async fn start(opts: Options) -> anyhow::Result<Daemon> {
        Ok(Built::new(opts).await?.spawn().await)
    }

    /// Where `/metrics` is served (the bound address, e.g. for port 0).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// Whether both device plugins are registered with kubelet right now.
    pub fn registered_with_kubelet(&self) -> bool {
        self.registration.all_registered()
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// Fault injection when the GPUs are simulated.
    pub fn faults(&self) -> Option<&FaultHandle> {
        self.faults.as_ref()
    }

    /// The token written in dev mode.
    pub fn dev_token(&self) -> Option<&str> {
        self.dev_token.as_ref().map(|t| t.token.as_str())
    }

    /// Stops accepting, answers every queued admission UNAVAILABLE, unloads
    /// through the runtime, removes every socket.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.node.begin_shutdown();
        let all = async {
            for h in self.workers.into_iter().chain(self.tasks) {
                let _ = h.await;
            }
            self.plugins.join().await;
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
            tracing::warn!(
                grace_s = SHUTDOWN_GRACE.as_secs(),
                "shutdown grace period over; exiting anyway"
            );
        }
        if let Some(w) = self.health_watch {
            // Joining the watcher thread blocks for up to one NVML wait.
            let _ = tokio::task::spawn_blocking(move || w.stop()).await;
        }
        tracing::info!("stopped");
    }
}

/// A daemon set up and bound, with nothing running yet. Dropping it undoes
/// it: the sockets remove themselves, the node and its engine go.
pub(crate) struct Built {
    config: Config,
    node: Arc<Node>,
    workers: Workers,
    inventory: Arc<dyn Inventory>,
    faults: Option<FaultHandle>,
    paths: Paths,
    task: UdsListener,
    admin: UdsListener,
    plugins: deviceplugin::Built,
    /// The bound HTTP port and its address (port 0 resolved).
    http: Option<(TcpListener, SocketAddr)>,
    ready_needs_kubelet: bool,
    dev_token: Option<DevToken>,
}

impl Built {
    /// Everything that can fail, in the order that lets it fail earliest:
    /// the GPUs, the engine and the runtime, both sockets (a live daemon on
    /// either path stops us here), the saved allocations, the HTTP port,
    /// and last the dev token.
    pub(crate) async fn new(opts: Options) -> anyhow::Result<Built> {
        let cfg = opts.config;
        let gpu_cfg = cfg.gpus.clone();
        let opened = tokio::task::spawn_blocking(move || gpu::open(&gpu_cfg))
            .await?
            .map_err(|e| anyhow::anyhow!(gpu::error_chain(&e)))
            .context("cannot open the GPU inventory")?;
        let inventory = Arc::clone(&opened.inventory);
        let inv = Arc::clone(&inventory);
        let snapshot = tokio::task::spawn_blocking(move || inv.snapshot())
            .await?
            .map_err(|e| anyhow::anyhow!(gpu::error_chain(&e)))
            .context("cannot read the GPUs")?;
        for g in &snapshot {
            tracing::info!(index = g.index, uuid = %g.uuid, name = %g.name, total_mib = g.total_mib,
                used_mib = g.used_mib, backend = %inventory.backend(), "GPU");
        }
        let specs: Vec<GpuSpec> = snapshot
            .into_iter()
            .map(|g| GpuSpec {
                uuid: g.uuid,
                name: g.name,
                total_mib: g.total_mib,
            })
            .collect();
        let runtime_gpus = runtime::Gpus {
            backend: inventory.backend(),
            uuids: specs.iter().map(|g| g.uuid.clone()).collect(),
        };
        let mut engine = Engine::new(specs, cfg.models.clone(), Settings::from_config(&cfg))?;
        // The state dir first: the epoch file is written into it.
        private_state_dir(&opts.state_dir)?;
        let epoch = crate::node::epoch::advance(&opts.state_dir)?;
        engine.start_lease_ids_at(crate::node::epoch::first_lease_id(epoch));
        tracing::info!(epoch, "lease epoch");
        warn_unfittable_models(&engine);

        let runtime: Arc<dyn runtime::ModelRuntime> =
            Arc::from(runtime::from_config(&cfg, &runtime_gpus).context("model runtime")?);
        let paths = Paths::under(&opts.state_dir);
        let info = NodeInfo {
            node_name: cfg.node_name.clone(),
            gpu_backend: inventory.backend().to_string(),
            load_timeout: cfg.runtime.load_timeout,
            admin_socket: paths.admin_socket.display().to_string(),
        };
        let measure = match cfg.runtime.measure_memory {
            MeasureMemory::Auto => inventory.backend() == gpu::Backend::Nvml,
            MeasureMemory::On => true,
            MeasureMemory::Off => false,
        } && runtime.holds_copies();
        let (node, workers) = Node::new(engine, info, runtime);
        node.set_watch_streams_per_pod(cfg.admission.watch_streams_per_pod);
        let workers = if measure {
            tracing::info!("measuring what model loads take in GPU memory");
            workers.measuring(Arc::clone(&inventory))
        } else {
            workers
        };
        node.connect_runtime().await;

        // Bind both sockets before anything is announced, each with its cap.
        let task_cap = task_connection_cap(raise_open_files_limit());
        tracing::info!(
            task = task_cap,
            admin = ADMIN_MAX_CONNECTIONS,
            "connection caps"
        );
        let task = UdsListener::bind(&paths.task_socket, uds::TASK_SOCKET_MODE)
            .await?
            .max_connections(task_cap);
        let admin = UdsListener::bind(&paths.admin_socket, uds::ADMIN_SOCKET_MODE)
            .await?
            .max_connections(ADMIN_MAX_CONNECTIONS);

        let pods_dir = paths
            .task_socket
            .parent()
            .unwrap_or(&opts.state_dir)
            .to_owned();
        let plugins =
            deviceplugin::Built::new(&node, &cfg, &opts.state_dir, &pods_dir, opts.kubelet)?;
        let http = match opts.http_addr {
            Some(addr) => {
                let listener = http_server::bind(addr).await?;
                let local = listener.local_addr()?;
                Some((listener, local))
            }
            None => None,
        };
        let dev_token = if opts.dev_token {
            Some(DevToken {
                token: write_dev_token(&node, &cfg, &paths.dev_token)?,
                path: paths.dev_token.clone(),
            })
        } else {
            None
        };
        Ok(Built {
            config: cfg,
            node,
            workers,
            inventory,
            faults: opened.faults,
            paths,
            task,
            admin,
            plugins,
            http,
            ready_needs_kubelet: opts.ready_needs_kubelet,
            dev_token,
        })
    }

    /// Starts serving and every background task; cannot fail.
    pub(crate) async fn spawn(self) -> Daemon {
        let Built {
            config: cfg,
            node,
            workers,
            inventory,
            faults,
            paths,
            task,
            admin,
            plugins,
            http,
            ready_needs_kubelet,
            dev_token,
        } = self;
        let workers = workers.spawn(&node);
        let mut tasks = Vec::new();
        for (listener, access) in [(task, Access::Task), (admin, Access::Admin)] {
            // Fault injection (simulated GPUs) is an operator call: admin socket only.
            let faults = (access == Access::Admin).then(|| faults.clone()).flatten();
            tasks.push(serve_admission(&node, listener, access, faults));
        }

        let (health_watch, health_rx) = watch_gpu_health(&inventory).await;
        tasks.push(node.spawn_timer());
        tasks.push(node.spawn_gpu_reconciler(inventory, health_rx));
        let intervals = WatchIntervals {
            check: cfg.runtime.health_interval,
            reconcile: cfg.runtime.reconcile_interval,
        };
        tasks.extend(node.spawn_runtime_watch(intervals));

        let registration = plugins.registration();
        let holders = plugins.holders();
        let plugins = plugins.spawn();

        let cluster_stats = match cfg.cluster.publish {
            Publish::Auto => publish_to_cluster(&node, &cfg, &mut tasks).await,
            Publish::Off => {
                tracing::info!("cluster publishing is off (cluster.publish: off)");
                None
            }
        };

        let http_addr = http.as_ref().map(|(_, addr)| *addr);
        if let Some((listener, addr)) = http {
            let sources = Arc::new(Sources {
                node: Arc::clone(&node),
                registration: registration.clone(),
                cluster: cluster_stats,
            });
            let ready = Box::new(Ready {
                node: Arc::clone(&node),
                registration: registration.clone(),
                needs_kubelet: ready_needs_kubelet,
            });
            let registry = metrics::registry(node.metrics(), sources);
            let (page, follower) = status_page::StatusPage::spawn(&node, holders);
            tasks.push(follower);
            tasks.push(http_server::serve(
                listener,
                registry,
                ready,
                page,
                node.shutdown_signal(),
            ));
            tracing::info!(%addr, "serving the status page (/), /metrics, /healthz, /readyz");
        }
        tracing::info!(
            node = %cfg.node_name,
            task_socket = %paths.task_socket.display(),
            admin_socket = %paths.admin_socket.display(),
            runtime = %node.runtime().kind(),
            "ready"
        );
        Daemon {
            node,
            paths,
            faults,
            dev_token,
            workers,
            tasks,
            plugins,
            registration,
            health_watch,
            http: http_addr,
        }
    }
}

/// Starts the inventory's health events (NVML Xids, simulated faults);
/// without them the GPU reconciler's polling still sees health.
async fn watch_gpu_health(
    inventory: &Arc<dyn Inventory>,
) -> (
    Option<HealthWatch>,
    tokio::sync::mpsc::UnboundedReceiver<gpu::HealthEvent>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let sink: gpu::HealthSink = Arc::new(move |ev| {
        let _ = tx.send(ev);
    });
    let inv = Arc::clone(inventory);
    let watch = match tokio::task::spawn_blocking(move || inv.watch_health(sink)).await {
        Ok(Ok(w)) => Some(w),
        Ok(Err(e)) => {
            tracing::warn!(error = %gpu::error_chain(&e), "no GPU health events; relying on polling");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "GPU health watch task failed; relying on polling");
            None
        }
    };
    (watch, rx)
}

/// Starts the cluster publisher when a Kubernetes API is configured; its
/// figures, for `/metrics`.
async fn publish_to_cluster(
    node: &Arc<Node>,
    cfg: &Config,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Option<Arc<cluster::Stats>> {
    let client = cluster::client_from_env().await?;
    let stats = Arc::new(cluster::Stats::default());
    let settings = cluster::Settings::from_config(cfg);
    tasks.push(cluster::spawn(
        Arc::clone(node),
        client,
        settings,
        Arc::clone(&stats),
    ));
    tracing::info!(node = %cfg.node_name, "publishing node labels, residency annotations and Events");
    Some(stats)
}

/// Serves the admission API on one socket until the node shuts down; the
/// socket file goes with the server.
fn serve_admission(
    node: &Arc<Node>,
    listener: UdsListener,
    access: Access,
    faults: Option<FaultHandle>,
) -> JoinHandle<()> {
    let svc = AdmissionService::new(Arc::clone(node), access)
        .with_faults(faults)
        .into_server();
    let mut stop = node.shutdown_signal();
    let path = listener.path().display().to_string();
    tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            // A peer that stopped answering (gone without a FIN, or stalled)
            // is closed; one that answers pings but holds a connection with
            // nothing to say is asked to go (GOAWAY) after
            // CONNECTION_MAX_AGE, once its calls and Watch streams are done.
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .max_connection_age(CONNECTION_MAX_AGE)
            .add_service(svc)
            .serve_with_incoming_shutdown(listener.incoming(), async move { stop.fired().await })
            .await;
        if let Err(e) = result {
            tracing::error!(socket = %path, error = %e, "gRPC server failed");
        }
    })
}

/// What `/metrics` reads at scrape time: the engine through the node, the
/// plugins' registration, the cluster publisher's errors.
struct Sources {
    node: Arc<Node>,
    registration: Registration,
    cluster: Option<Arc<cluster::Stats>>,
}

impl Scrape for Sources {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            engine: self.node.engine_status(),
            kubelet_registered: self.registration.each(),
            cluster_publish_errors: self
                .cluster
                .as_ref()
                .map_or(0, |s| s.publish_errors.load(Ordering::Relaxed)),
            runtime: (self.node.runtime().kind(), self.node.runtime_reachable()),
            model_memory: self
                .node
                .model_memory()
                .into_iter()
                .map(|m| (m.model, m.catalog_mib, m.measured_mib))
                .collect(),
        }
    }
}

/// `/readyz`: not ready until both plugins are registered (when kubelet is
/// expected), nor while the model runtime is unreachable.
struct Ready {
    node: Arc<Node>,
    registration: Registration,
    needs_kubelet: bool,
}

impl Readiness for Ready {
    fn not_ready(&self) -> Option<&'static str> {
        if self.needs_kubelet && !self.registration.all_registered() {
            return Some("the device plugins are not registered with kubelet yet");
        }
        (!self.node.runtime_reachable())
            .then_some("the model runtime is unreachable; admissions are refused until it answers")
    }
}

/// Logs models that fit no GPU of this node: they will be refused with
/// FAILED_PRECONDITION, but the others still work.
fn warn_unfittable_models(engine: &Engine) {
    let largest = engine
        .status()
        .gpus
        .iter()
        .map(|g| g.usable_mib)
        .max()
        .unwrap_or(0);
    for m in engine.models() {
        let need = m.weights_mib + m.working_mib;
        if need > largest {
            tracing::warn!(model = %m.name, need_mib = need, largest_usable_mib = largest,
                "model fits on no GPU of this node; admissions for it will be refused");
        }
    }
}

/// The dev token, and its file, which goes with it: removed when the
/// daemon stops (or a start fails after writing it), so that a stale token
/// is never left for visionctl to read.
#[derive(Debug)]
struct DevToken {
    token: String,
    path: PathBuf,
}

impl Drop for DevToken {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => tracing::info!(path = %self.path.display(), "dev token removed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the dev token")
            }
        }
    }
}

/// Connections the admin socket serves at once: operators' tools, never
/// taken by pods.
pub const ADMIN_MAX_CONNECTIONS: usize = 32;
/// The most connections the task socket serves at once, open-files limit
/// permitting ([`task_connection_cap`]).
pub const TASK_MAX_CONNECTIONS: usize = 4096;
/// Open files kept for everything but the task socket: the admin socket's
/// cap, kubelet's connections to both plugin sockets and the pod-resources
/// socket, files, the HTTP port, the model server, the API server.
pub const RESERVED_FDS: u64 = 192;
/// The task socket's cap even under a tiny open-files limit.
const MIN_TASK_CONNECTIONS: usize = 16;
/// HTTP/2 pings on a connection that has been quiet this long...
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// ...which close it when not answered within this.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is asked to go (GOAWAY; its open calls and streams finish)
/// after this long; clients reconnect on their next call.
const CONNECTION_MAX_AGE: Duration = Duration::from_secs(600);

/// Raises the soft open-files limit to the hard one (a default 1 024 is
/// far below what the task socket's cap wants); returns the soft limit now.
fn raise_open_files_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "cannot raise the open-files limit");
        }
    }
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    tracing::info!(open_files = now, "open-files limit");
    now
}

/// The task socket's connection cap under an open-files limit: whatever
/// pods do with it, [`RESERVED_FDS`] stay for the admin socket, kubelet and
/// the rest.
pub fn task_connection_cap(open_files: u64) -> usize {
    let room = open_files.saturating_sub(RESERVED_FDS);
    let cap = usize::try_from(room).unwrap_or(usize::MAX);
    if cap < MIN_TASK_CONNECTIONS {
        tracing::warn!(
            open_files,
            cap = MIN_TASK_CONNECTIONS,
            "the open-files limit leaves little room for pods' connections; raise it"
        );
    }
    cap.clamp(MIN_TASK_CONNECTIONS, TASK_MAX_CONNECTIONS)
}

/// The state directory's mode: it holds the allocations (every pod's token)
/// and the admin socket, so only the daemon's user may enter it. Pods reach
/// the task socket through `<state>/pods`, which kubelet bind-mounts into
/// them, and never through this directory.
pub const STATE_DIR_MODE: u32 = 0o700;
/// `<state>/pods`: entered by every pod's user, to reach the task socket.
pub const PODS_DIR_MODE: u32 = 0o755;

/// Creates the state directory 0700, or tightens an existing one (a hostPath
/// `DirectoryOrCreate` is made 0755) before any secret is written into it.
fn private_state_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(STATE_DIR_MODE)
        .create(dir)
        .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(STATE_DIR_MODE))
        .with_context(|| format!("cannot make the state directory {} 0700", dir.display()))?;
    let pods = dir.join("pods");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PODS_DIR_MODE)
        .create(&pods)
        .with_context(|| format!("cannot create {}", pods.display()))?;
    std::fs::set_permissions(&pods, std::fs::Permissions::from_mode(PODS_DIR_MODE))
        .with_context(|| format!("cannot set the mode of {}", pods.display()))?;
    Ok(())
}

/// A fresh token with slots for every GPU, written 0600 for visionctl.
fn write_dev_token(node: &Node, cfg: &Config, path: &Path) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let slots = cfg.devices.slots_per_gpu * (node.gpus().len() as u32).max(1);
    let token = node.allocate(AllocKind::Slots(slots))?;
    // Written beside it and renamed into place: whoever waits for the file
    // (a client, a test) never reads it empty or half written.
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write the dev token to {}", tmp.display()))?;
    writeln!(f, "{token}")?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot write the dev token to {}", path.display()))?;
    tracing::info!(path = %path.display(), slots, "dev token written");
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_sockets_cap_leaves_the_reserve_under_any_open_files_limit() {
        // A common default soft limit: the reserve stays free.
        assert_eq!(task_connection_cap(1024), 1024 - RESERVED_FDS as usize);
        // A container's usual hard limit: the cap itself.
        assert_eq!(task_connection_cap(1 << 20), TASK_MAX_CONNECTIONS);
        // Under a tiny limit pods still get a few, and the daemon says so.
        assert_eq!(task_connection_cap(100), MIN_TASK_CONNECTIONS);
        // Unlimited.
        assert_eq!(task_connection_cap(u64::MAX), TASK_MAX_CONNECTIONS);
        // The reserve covers the admin socket's, both plugin sockets' and
        // the HTTP port's, with room for files.
        assert!(
            ADMIN_MAX_CONNECTIONS
                + 2 * crate::deviceplugin::PLUGIN_MAX_CONNECTIONS
                + crate::telemetry::http::LIMITS.max_connections
                < RESERVED_FDS as usize
        );
    }
}
