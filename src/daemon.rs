//! Wiring: config → inventory → engine → runtime → sockets → background
//! tasks, and the designed shutdown. `main` only parses flags and waits for
//! a signal; tests start and stop a [`Daemon`] in-process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::deviceplugin::{self, DevicePlugins};
use crate::engine::{Engine, GpuSpec, Settings};
use crate::gpu::{self, FaultHandle, HealthWatch};
use crate::service::{self, Access, AdmissionService, Clock, Node, NodeInfo};
use crate::uds::{self, UdsListener};

/// Where the daemon keeps its sockets and state.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: Config,
    /// Default `/var/lib/vision-node-daemon`; `./.vision-dev` with `--dev`.
    pub state_dir: PathBuf,
    /// Write a dev token with slots for every GPU (no kubelet hands out tokens).
    pub dev_token: bool,
    /// Where kubelet's device-plugin directory and PodResources socket are.
    pub kubelet: deviceplugin::Options,
    /// `/metrics`, `/healthz`, `/readyz`; `None` serves none.
    pub http_addr: Option<std::net::SocketAddr>,
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

/// A running daemon.
pub struct Daemon {
    node: Arc<Node>,
    paths: Paths,
    faults: Option<FaultHandle>,
    dev_token: Option<String>,
    servers: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    health_watch: Option<HealthWatch>,
    plugins: DevicePlugins,
    http: Option<std::net::SocketAddr>,
}

/// How long shutdown waits for runtime unloads and open calls to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long start-up waits for the model runtime's ListLoaded.
const LIST_LOADED_TIMEOUT: Duration = Duration::from_secs(10);

impl Daemon {
    /// Starts everything; when this returns, both sockets accept calls.
    pub async fn start(opts: Options) -> anyhow::Result<Daemon> {
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
        let specs: Vec<GpuSpec> = snapshot
            .iter()
            .map(|g| GpuSpec {
                uuid: g.uuid.clone(),
                name: g.name.clone(),
                total_mib: g.total_mib,
            })
            .collect();
        for g in &snapshot {
            tracing::info!(index = g.index, uuid = %g.uuid, name = %g.name, total_mib = g.total_mib,
                used_mib = g.used_mib, backend = %inventory.backend(), "GPU");
        }
        let engine = Engine::new(specs, cfg.models.clone(), Settings::from_config(&cfg))?;
        warn_unfittable_models(&engine);

        let runtime_gpus = crate::runtime::Gpus {
            backend: inventory.backend(),
            uuids: snapshot.iter().map(|g| g.uuid.clone()).collect(),
        };
        let runtime: Arc<dyn crate::runtime::ModelRuntime> =
            Arc::from(crate::runtime::from_config(&cfg, &runtime_gpus).context("model runtime")?);
        let clock = Clock::start();
        let paths = Paths::under(&opts.state_dir);
        let info = NodeInfo {
            node_name: cfg.node_name.clone(),
            gpu_backend: inventory.backend().to_string(),
            load_timeout: cfg.runtime.load_timeout,
            admin_socket: paths.admin_socket.display().to_string(),
        };
        let (node, queues) = Node::new(engine, info, Arc::clone(&runtime), clock);
        restore_residency(&node).await;

        // Bind both sockets before anything is announced; a live daemon on
        // either path stops us here.
        let task = UdsListener::bind(&paths.task_socket, uds::TASK_SOCKET_MODE).await?;
        let admin = UdsListener::bind(&paths.admin_socket, uds::ADMIN_SOCKET_MODE).await?;

        let dev_token = if opts.dev_token {
            Some(write_dev_token(&node, &cfg, &paths.dev_token)?)
        } else {
            None
        };

        let mut servers = Vec::new();
        for (listener, access) in [(task, Access::Task), (admin, Access::Admin)] {
            // Fault injection (simulated GPUs) is an operator call: admin socket only.
            let faults = (access == Access::Admin)
                .then(|| opened.faults.clone())
                .flatten();
            let svc = AdmissionService::new(Arc::clone(&node), access)
                .with_faults(faults)
                .into_server();
            let mut stop = node.shutdown_signal();
            let path = listener.path().display().to_string();
            servers.push(tokio::spawn(async move {
                let result = tonic::transport::Server::builder()
                    .add_service(svc)
                    .serve_with_incoming_shutdown(listener.incoming(), async move {
                        service::stopped(&mut stop).await;
                    })
                    .await;
                if let Err(e) = result {
                    tracing::error!(socket = %path, error = %e, "gRPC server failed");
                }
            }));
        }
        let workers = service::tasks::spawn_runtime_workers(Arc::clone(&node), queues);
        let (health_tx, health_rx) = tokio::sync::mpsc::unbounded_channel();
        let inv = Arc::clone(&inventory);
        let sink: gpu::HealthSink = Arc::new(move |ev| {
            let _ = health_tx.send(ev);
        });
        let health_watch = match tokio::task::spawn_blocking(move || inv.watch_health(sink)).await?
        {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %gpu::error_chain(&e), "no GPU health events; relying on polling");
                None
            }
        };
        let pods_dir = paths
            .task_socket
            .parent()
            .unwrap_or(&opts.state_dir)
            .to_owned();
        let plugins = DevicePlugins::start(
            Arc::clone(&node),
            &cfg,
            &opts.state_dir,
            &pods_dir,
            opts.kubelet.clone(),
        )?;
        let registration = plugins.state();
        let _ = node.metrics().plugins.set(registration.clone());
        let http = match opts.http_addr {
            Some(addr) => {
                let needs_kubelet = opts.ready_needs_kubelet;
                let ready: crate::telemetry::http::Readiness = Arc::new(move || {
                    if needs_kubelet && !registration.all_registered() {
                        return Err("the device plugins are not registered with kubelet yet".into());
                    }
                    Ok(())
                });
                let (local, handle) =
                    crate::telemetry::http::serve(addr, Arc::clone(&node), ready).await?;
                tracing::info!(addr = %local, "serving /metrics, /healthz, /readyz");
                servers.push(handle);
                Some(local)
            }
            None => None,
        };
        let mut cluster_task = None;
        if cfg.cluster.publish == crate::config::Publish::Auto {
            if let Some(client) = crate::cluster::client_from_env().await {
                let stats = Arc::new(crate::cluster::Stats::default());
                let _ = node.metrics().cluster.set(stats.clone());
                cluster_task = Some(crate::cluster::spawn(
                    Arc::clone(&node),
                    client,
                    crate::cluster::Settings::from_config(&cfg),
                    stats,
                ));
                tracing::info!(node = %cfg.node_name, "publishing node labels, residency annotations and Events");
            }
        } else {
            tracing::info!("cluster publishing is off (cluster.publish: off)");
        }
        let mut background = vec![
            service::tasks::spawn_timer(Arc::clone(&node)),
            service::tasks::spawn_gpu_reconciler(Arc::clone(&node), inventory, health_rx),
        ];
        background.extend(cluster_task);
        tracing::info!(
            node = %cfg.node_name,
            task_socket = %paths.task_socket.display(),
            admin_socket = %paths.admin_socket.display(),
            runtime = %runtime.kind(),
            "ready"
        );
        Ok(Daemon {
            node,
            paths,
            faults: opened.faults,
            dev_token,
            servers,
            workers,
            background,
            health_watch,
            plugins,
            http,
        })
    }

    /// Where `/metrics` is served (the bound address, e.g. for port 0).
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http
    }

    /// The kubelet device plugins.
    pub fn plugins(&self) -> &DevicePlugins {
        &self.plugins
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
        self.dev_token.as_deref()
    }

    /// Stops accepting, answers every queued admission UNAVAILABLE, unloads
    /// through the runtime, removes both sockets.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.node.begin_shutdown();
        let all = async {
            for h in self.workers {
                let _ = h.await;
            }
            for h in self.servers {
                let _ = h.await;
            }
            for h in self.background {
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

/// Rebuilds residency from the runtime's ListLoaded, so a restart keeps
/// serving warm copies the model server still holds.
async fn restore_residency(node: &Node) {
    let runtime = Arc::clone(node.runtime());
    let listed = match tokio::time::timeout(LIST_LOADED_TIMEOUT, runtime.list_loaded()).await {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "model runtime ListLoaded failed; starting with nothing resident");
            return;
        }
        Err(_) => {
            tracing::warn!("model runtime ListLoaded timed out; starting with nothing resident");
            return;
        }
    };
    for copy in listed {
        match node.restore_resident(&copy) {
            Some(()) => {
                tracing::info!(model = %copy.model, gpu = %copy.gpu_uuid, "restored resident model")
            }
            None => tracing::warn!(model = %copy.model, gpu = %copy.gpu_uuid,
                "model runtime holds a copy this daemon does not know (model or GPU not in its config); ignoring it"),
        }
    }
}

/// A fresh random token with slots for every GPU, written 0600 for visionctl.
fn write_dev_token(node: &Node, cfg: &Config, path: &Path) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let token = new_token()?;
    let slots = cfg.devices.slots_per_gpu * node.read(|e| e.gpu_count() as u32).max(1);
    node.with_engine(|e, now| e.allocate_slots(&token, slots, now))?;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write the dev token to {}", path.display()))?;
    writeln!(f, "{token}")?;
    tracing::info!(path = %path.display(), slots, "dev token written");
    Ok(token)
}

/// 128 random bits, hex: what Allocate hands each container.
pub fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
