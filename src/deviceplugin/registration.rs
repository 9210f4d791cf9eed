//! Serving and registering each plugin, and coming back after a kubelet
//! restart.
//!
//! A restarted kubelet deletes the sockets in its device-plugin directory and
//! serves a new `kubelet.sock`; plugins must serve again and re-register.
//! File-system notifications (inotify, via `notify`) wake us within
//! milliseconds; a slow check every few seconds covers missed events.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::allocations::Allocations;
use super::plugin::Plugin;
use super::server::PluginService;
use crate::kubelet;
use crate::node::{Node, Registration};
use crate::proto::k8s::deviceplugin::v1beta1 as pb;
use crate::shutdown;
use crate::uds::{self, UdsListener};

/// How often the directory is checked when no notification came.
const FALLBACK_CHECK: Duration = Duration::from_secs(5);
/// Registration retry backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a registration with kubelet failed.
#[derive(Debug, thiserror::Error)]
enum RegisterError {
    #[error("cannot connect to kubelet: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("kubelet refused: {:?}: {}", .0.code(), .0.message())]
    Refused(#[from] tonic::Status),
    #[error("kubelet did not answer Register")]
    TimedOut,
}

/// Watches the kubelet device-plugin directory (inotify, plus a slow
/// fallback check). Returns a counter of kubelet (re)starts —
/// `kubelet.sock` (re)created — and tells each plugin when its own socket
/// disappears.
pub(super) fn spawn_kubelet_watch(
    dir: PathBuf,
    plugins: Vec<Arc<Plugin>>,
    mut shutdown: shutdown::Signal,
) -> (watch::Receiver<u64>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(0u64);
    let handle = tokio::spawn(async move {
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let _ = std::fs::create_dir_all(&dir);
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                let _ = ev_tx.send(ev);
            }
        })
        .and_then(|mut w| {
            notify::Watcher::watch(&mut w, &dir, notify::RecursiveMode::NonRecursive)?;
            Ok(w)
        });
        let _watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e,
                    "no file-system notifications for the kubelet directory; checking every {} s", FALLBACK_CHECK.as_secs());
                None
            }
        };
        let kubelet_sock = dir.join(kubelet::KUBELET_SOCKET);
        let mut last_kubelet = inode(&kubelet_sock);
        // Each plugin with whether its socket existed at the last check.
        let mut ours: Vec<(Arc<Plugin>, bool)> = plugins
            .into_iter()
            .map(|p| {
                let exists = p.socket().exists();
                (p, exists)
            })
            .collect();
        // The first check waits a period: at start our sockets are being bound.
        let mut check =
            tokio::time::interval_at(tokio::time::Instant::now() + FALLBACK_CHECK, FALLBACK_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(ev) = ev_rx.recv() => {
                    use notify::EventKind::{Create, Remove};
                    if matches!(ev.kind, Create(_)) && ev.paths.iter().any(|p| p == &kubelet_sock) {
                        last_kubelet = inode(&kubelet_sock);
                        tx.send_modify(|n| *n += 1);
                    }
                    if matches!(ev.kind, Remove(_)) {
                        for (plugin, _) in &ours {
                            if ev.paths.iter().any(|p| p == plugin.socket()) {
                                plugin.note_socket_gone();
                            }
                        }
                    }
                }
                _ = check.tick() => {
                    // Missed notifications: a kubelet.sock that appeared or
                    // changed (inode numbers can be reused, so this is only
                    // the fallback), or one of our sockets that was there and
                    // is gone.
                    let now = inode(&kubelet_sock);
                    if now.is_some() && now != last_kubelet {
                        tx.send_modify(|n| *n += 1);
                    }
                    last_kubelet = now;
                    for (plugin, existed) in &mut ours {
                        let exists = plugin.socket().exists();
                        if *existed && !exists {
                            plugin.note_socket_gone();
                        }
                        *existed = exists;
                    }
                }
                _ = shutdown.fired() => return,
            }
        }
    });
    (rx, handle)
}

fn inode(p: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

/// What one incarnation of a plugin's server has taken into account, so
/// that nothing that happens meanwhile is lost.
#[derive(Debug, Clone, Copy)]
struct Seen {
    kubelet_starts: u64,
    socket_gone: u64,
}

/// Why a plugin's server stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Kubelet restarted or our socket is gone: serve and register again.
    Restart,
    Shutdown,
}

/// One plugin's serve-and-register loop.
struct Runner {
    plugin: Arc<Plugin>,
    allocations: Arc<Allocations>,
    node: Arc<Node>,
    dir: PathBuf,
    changes: Changes,
    shutdown: shutdown::Signal,
    /// "Waiting for kubelet" is logged once per wait, then at debug.
    waiting_logged: bool,
}

/// Serves one plugin and keeps it registered until shutdown.
pub(super) fn spawn_plugin(
    plugin: Arc<Plugin>,
    allocations: Arc<Allocations>,
    dir: PathBuf,
    kubelet_starts: watch::Receiver<u64>,
) -> JoinHandle<()> {
    let node = Arc::clone(allocations.node());
    let runner = Runner {
        changes: Changes {
            kubelet_starts,
            socket_gone: plugin.socket_gone(),
        },
        shutdown: node.shutdown_signal(),
        plugin,
        allocations,
        node,
        dir,
        waiting_logged: false,
    };
    tokio::spawn(runner.run())
}

impl Runner {
    async fn run(mut self) {
        loop {
            let seen = self.changes.now();
            let listener = match UdsListener::bind(self.plugin.socket(), 0o600).await {
                Ok(l) => l,
                Err(e) => {
                    let resource = self.plugin.resource();
                    tracing::warn!(%resource, error = %e, "cannot serve the device plugin socket; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(BACKOFF_MAX) => continue,
                        _ = self.changes.changed() => continue,
                        _ = self.shutdown.fired() => return,
                    }
                }
            };
            let mine = inode(self.plugin.socket());
            let server = Serving::start(listener, &self.plugin, &self.allocations);
            let next = self.register_and_hold(seen, mine).await;
            server.stop().await;
            if next == Next::Shutdown {
                return;
            }
        }
    }

    /// Registers (serving already), retrying with backoff, then holds the
    /// registration until kubelet restarts, our socket goes, or shutdown.
    async fn register_and_hold(&mut self, mut seen: Seen, mine: Option<(u64, u64)>) -> Next {
        let resource = self.plugin.resource();
        let mut delay = BACKOFF_MIN;
        loop {
            match register(&self.dir, &self.plugin).await {
                Ok(()) => {
                    self.plugin.set_registered(true);
                    self.waiting_logged = false;
                    tracing::info!(%resource, resource_name = %self.plugin.name(), "registered with kubelet");
                    self.node.kubelet_registration(Registration {
                        resource: self.plugin.name().to_owned(),
                        endpoint: resource.socket_file().to_owned(),
                        registered: true,
                    });
                    break;
                }
                Err(e) => {
                    self.plugin.set_registered(false);
                    if self.waiting_logged {
                        tracing::debug!(%resource, error = %e, "kubelet registration failed; retrying");
                    } else {
                        tracing::info!(%resource, dir = %self.dir.display(), error = %e,
                            "waiting for kubelet to accept registration; admissions are served meanwhile");
                        self.waiting_logged = true;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.changes.restart_needed(self.plugin.socket(), &mut seen, mine) => return Next::Restart,
                        _ = self.shutdown.fired() => return Next::Shutdown,
                    }
                    delay = (delay * 2).min(BACKOFF_MAX);
                }
            }
        }
        tokio::select! {
            _ = self.changes.restart_needed(self.plugin.socket(), &mut seen, mine) => {
                self.plugin.set_registered(false);
                tracing::info!(%resource, "kubelet restarted or our socket vanished; serving and registering again");
                Next::Restart
            }
            _ = self.shutdown.fired() => Next::Shutdown,
        }
    }
}

/// What calls for serving and registering again, as counters that only grow.
struct Changes {
    /// Kubelet (re)starts.
    kubelet_starts: watch::Receiver<u64>,
    /// Disappearances of this plugin's socket.
    socket_gone: watch::Receiver<u64>,
}

impl Changes {
    fn now(&mut self) -> Seen {
        Seen {
            kubelet_starts: *self.kubelet_starts.borrow_and_update(),
            socket_gone: *self.socket_gone.borrow_and_update(),
        }
    }

    /// Resolves on the next change of either; never once they are gone.
    async fn changed(&mut self) {
        let open = tokio::select! {
            r = self.kubelet_starts.changed() => r.is_ok(),
            r = self.socket_gone.changed() => r.is_ok(),
        };
        if !open {
            std::future::pending::<()>().await;
        }
    }

    /// Waits until kubelet restarted, or our socket at `socket` (bound as
    /// `mine`) is really gone, since `seen` (kept by the caller across
    /// calls, so that nothing that happened meanwhile is lost). A removal of
    /// our previous socket file — our own server removing it on restart —
    /// arrives late and is not a reason.
    async fn restart_needed(&mut self, socket: &Path, seen: &mut Seen, mine: Option<(u64, u64)>) {
        loop {
            let now = self.now();
            if now.kubelet_starts != seen.kubelet_starts {
                return;
            }
            if now.socket_gone != seen.socket_gone {
                if inode(socket) != mine {
                    return;
                }
                seen.socket_gone = now.socket_gone;
            }
            self.changed().await;
        }
    }
}

/// One incarnation of a plugin's gRPC server.
struct Serving {
    stop: shutdown::Trigger,
    server: JoinHandle<()>,
}

impl Serving {
    fn start(
        listener: UdsListener,
        plugin: &Arc<Plugin>,
        allocations: &Arc<Allocations>,
    ) -> Serving {
        let stop = shutdown::Trigger::new();
        let svc = PluginService {
            plugin: Arc::clone(plugin),
            allocations: Arc::clone(allocations),
            stop: stop.signal(),
        };
        let mut stop_serving = stop.signal();
        let resource = plugin.resource();
        let server = tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(pb::device_plugin_server::DevicePluginServer::new(svc))
                .serve_with_incoming_shutdown(listener.incoming(), async move {
                    stop_serving.fired().await
                })
                .await;
            if let Err(e) = result {
                tracing::error!(%resource, error = %e, "device plugin server failed");
            }
        });
        Serving { stop, server }
    }

    /// Stops serving (ending ListAndWatch streams) and waits for the server,
    /// which removes our socket.
    async fn stop(self) {
        self.stop.fire();
        let _ = self.server.await;
    }
}

async fn register(dir: &Path, plugin: &Plugin) -> Result<(), RegisterError> {
    let call = async {
        let channel = uds::client::connect(dir.join(kubelet::KUBELET_SOCKET)).await?;
        pb::registration_client::RegistrationClient::new(channel)
            .register(pb::RegisterRequest {
                version: kubelet::VERSION.to_owned(),
                endpoint: plugin.resource().socket_file().to_owned(),
                resource_name: plugin.name().to_owned(),
                options: Some(pb::DevicePluginOptions {
                    pre_start_required: false,
                    get_preferred_allocation_available: true,
                }),
            })
            .await?;
        Ok(())
    };
    tokio::time::timeout(REGISTER_TIMEOUT, call)
        .await
        .unwrap_or(Err(RegisterError::TimedOut))
}
