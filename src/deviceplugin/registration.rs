//! Serving and registering each plugin, and coming back after a kubelet
//! restart.
//!
//! A restarted kubelet deletes the sockets in its device-plugin directory and
//! serves a new `kubelet.sock`; plugins must serve again and re-register.
//! File-system notifications (inotify, via `notify`) wake us within
//! milliseconds; a slow check every few seconds covers missed events.

use std::os::fd::OwnedFd;
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
/// Connections a plugin socket serves at once (counted in the daemon's
/// reserved open files, `crate::daemon::RESERVED_FDS`).
pub(crate) const PLUGIN_MAX_CONNECTIONS: usize = 16;

/// Why a registration with kubelet failed.
#[derive(Debug, thiserror::Error)]
enum RegisterError {
    #[error("cannot connect to kubelet: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("kubelet refused: {:?}: {}", .0.code(), .0.message())]
    Refused(#[from] tonic::Status),
    #[error("kubelet did not answer Register")]
    TimedOut,
    #[error("kubelet.sock was replaced while connecting")]
    KubeletChanged,
    #[error("no kubelet.sock")]
    NoKubelet,
    #[error("cannot connect to kubelet: {0}")]
    Dial(#[from] std::io::Error),
}

/// Watches the kubelet device-plugin directory (inotify, plus a slow
/// fallback check). Returns a counter that moves whenever `kubelet.sock` may
/// have changed — created or removed, or a fallback check — and tells each
/// plugin when its own socket may be gone. Both only *wake* the plugins:
/// each runner checks for itself whether the kubelet it registered with is
/// still the one serving ([`KubeletPin`]) and whether its socket is still
/// its own, so a notification that arrives late is harmless.
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
        // The first check waits a period: at start our sockets are being bound.
        let mut check =
            tokio::time::interval_at(tokio::time::Instant::now() + FALLBACK_CHECK, FALLBACK_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(ev) = ev_rx.recv() => {
                    use notify::EventKind::{Create, Remove};
                    if matches!(ev.kind, Create(_) | Remove(_)) && ev.paths.iter().any(|p| p == &kubelet_sock) {
                        tx.send_modify(|n| *n += 1);
                    }
                    if matches!(ev.kind, Remove(_)) {
                        for plugin in &plugins {
                            if ev.paths.iter().any(|p| p == plugin.socket()) {
                                plugin.note_socket_gone();
                            }
                        }
                    }
                }
                _ = check.tick() => {
                    // Missed notifications: every runner checks again.
                    tx.send_modify(|n| *n += 1);
                    for plugin in &plugins {
                        if !plugin.socket().exists() {
                            plugin.note_socket_gone();
                        }
                    }
                }
                _ = shutdown.fired() => return,
            }
        }
    });
    (rx, handle)
}

fn inode(p: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(p)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// The `kubelet.sock` a registration was sent to, held open (`O_PATH`: no
/// connection, no read) so that its inode cannot be freed and handed to a
/// new file while we hold it. A restarted kubelet serves a new file at the
/// same path, and filesystems reuse inode numbers at once (tmpfs does), so
/// comparing numbers is only sound while the old inode is pinned.
///
/// This is what tells a kubelet restart *after* our registration from the
/// late notification of the restart that our registration already answered
/// (issue 16, item 7: the watcher's "kubelet.sock created" arrived after the
/// runner had re-registered with the new kubelet, which was then torn down
/// and registered with again).
struct KubeletPin {
    _fd: OwnedFd,
    id: (u64, u64),
}

impl KubeletPin {
    /// Pins the file at `path` now; `None` when there is none.
    fn open(path: &Path) -> Option<KubeletPin> {
        let fd = rustix::fs::open(
            path,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NOFOLLOW,
            rustix::fs::Mode::empty(),
        )
        .ok()?;
        let st = rustix::fs::fstat(&fd).ok()?;
        Some(KubeletPin {
            _fd: fd,
            id: (st.st_dev, st.st_ino),
        })
    }

    /// Whether `path` still names the pinned file.
    fn is_current(&self, path: &Path) -> bool {
        inode(path) == Some(self.id)
    }
}

/// What one incarnation of a plugin's server has taken into account, so
/// that nothing that happens meanwhile is lost.
#[derive(Debug, Clone, Copy)]
struct Seen {
    kubelet: u64,
    socket_gone: u64,
}

/// Why a plugin's server stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Kubelet restarted or our socket is gone: serve and register again.
    Restart,
    Shutdown,
}

/// What woke a runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Our socket is really gone (not merely the late removal of a previous one).
    SocketGone,
    /// `kubelet.sock` may have changed: the caller checks against its pin.
    Kubelet,
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
    kubelet: watch::Receiver<u64>,
) -> JoinHandle<()> {
    let node = Arc::clone(allocations.node());
    let runner = Runner {
        changes: Changes {
            kubelet,
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
                // Only kubelet dials it: a few connections at most.
                Ok(l) => l.max_connections(PLUGIN_MAX_CONNECTIONS),
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
            // The file we bound, as recorded at bind time: reading the path
            // again here would take a removal in between (kubelet deleting
            // every socket as it starts) for "nothing to compare", and the
            // runner would register a dead path until the next restart.
            let mine = listener.file_id();
            let server = Serving::start(listener, &self.plugin, &self.allocations);
            let next = self.register_and_hold(seen, mine).await;
            server.stop().await;
            if next == Next::Shutdown {
                return;
            }
        }
    }

    /// Registers (serving already), retrying with backoff, then holds the
    /// registration until the kubelet it was made with is replaced, our
    /// socket goes, or shutdown. While not registered, a change of
    /// `kubelet.sock` only means "try now": the server keeps serving.
    async fn register_and_hold(&mut self, mut seen: Seen, mine: (u64, u64)) -> Next {
        let resource = self.plugin.resource();
        let kubelet_sock = self.dir.join(kubelet::KUBELET_SOCKET);
        let mut delay = BACKOFF_MIN;
        let pin = loop {
            // Pinned before connecting, and checked once connected: the
            // registration goes to the pinned kubelet or is not sent. If
            // that kubelet goes later, the pin says so and we register
            // with its successor.
            // Kubelet dials back the path we register: if our socket file
            // was removed meanwhile (kubelet deletes every socket when it
            // starts), registering would only announce a dead end, and the
            // removal noticed later would make us register twice.
            if inode(self.plugin.socket()) != Some(mine) {
                self.plugin.set_registered(false);
                tracing::info!(%resource, "our socket vanished before registering; serving again");
                return Next::Restart;
            }
            let attempt = match KubeletPin::open(&kubelet_sock) {
                Some(pin) => register(&kubelet_sock, &self.plugin, &pin)
                    .await
                    .map(|()| pin),
                // Nothing to pin is no kubelet: a kubelet.sock created right
                // after would be registered with unpinned, and its late
                // creation event taken for a restart.
                None => Err(RegisterError::NoKubelet),
            };
            match attempt {
                Ok(pin) => {
                    self.plugin.set_registered(true);
                    self.waiting_logged = false;
                    tracing::info!(%resource, resource_name = %self.plugin.name(), "registered with kubelet");
                    self.node.kubelet_registration(Registration {
                        resource: self.plugin.name().to_owned(),
                        endpoint: resource.socket_file().to_owned(),
                        registered: true,
                    });
                    break pin;
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
                        _ = tokio::time::sleep(delay) => {
                            delay = (delay * 2).min(BACKOFF_MAX);
                        }
                        change = self.changes.next(self.plugin.socket(), &mut seen, mine) => match change {
                            Change::SocketGone => return Next::Restart,
                            Change::Kubelet => delay = BACKOFF_MIN,
                        },
                        _ = self.shutdown.fired() => return Next::Shutdown,
                    }
                }
            }
        };
        loop {
            tokio::select! {
                change = self.changes.next(self.plugin.socket(), &mut seen, mine) => {
                    let why = match change {
                        Change::SocketGone => "our socket vanished",
                        Change::Kubelet if pin.is_current(&kubelet_sock) => continue,
                        Change::Kubelet => "kubelet restarted",
                    };
                    self.plugin.set_registered(false);
                    tracing::info!(%resource, "{why}; serving and registering again");
                    return Next::Restart;
                }
                _ = self.shutdown.fired() => return Next::Shutdown,
            }
        }
    }
}

/// What calls for checking again, as counters that only grow.
struct Changes {
    /// Moves when `kubelet.sock` may have changed.
    kubelet: watch::Receiver<u64>,
    /// Disappearances of this plugin's socket.
    socket_gone: watch::Receiver<u64>,
}

impl Changes {
    fn now(&mut self) -> Seen {
        Seen {
            kubelet: *self.kubelet.borrow_and_update(),
            socket_gone: *self.socket_gone.borrow_and_update(),
        }
    }

    /// Resolves on the next change of either; never once they are gone.
    async fn changed(&mut self) {
        let open = tokio::select! {
            r = self.kubelet.changed() => r.is_ok(),
            r = self.socket_gone.changed() => r.is_ok(),
        };
        if !open {
            std::future::pending::<()>().await;
        }
    }

    /// The next change since `seen` (kept by the caller across calls, so
    /// that nothing that happened meanwhile is lost). A removal of our
    /// previous socket file — our own server removing it on restart —
    /// arrives late and is not a change: the socket at `socket` must really
    /// not be `mine` any more.
    async fn next(&mut self, socket: &Path, seen: &mut Seen, mine: (u64, u64)) -> Change {
        loop {
            let now = self.now();
            if now.socket_gone != seen.socket_gone {
                seen.socket_gone = now.socket_gone;
                if inode(socket) != Some(mine) {
                    return Change::SocketGone;
                }
            }
            if now.kubelet != seen.kubelet {
                seen.kubelet = now.kubelet;
                return Change::Kubelet;
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

/// One `Register` call to the kubelet `pin` holds, at `path`, over one
/// connection that is checked to reach it and never redialled.
async fn register(path: &Path, plugin: &Plugin, pin: &KubeletPin) -> Result<(), RegisterError> {
    let call = async {
        let stream = tokio::net::UnixStream::connect(path).await?;
        // The connection went to the pinned kubelet only if the path still
        // names it now (the pinned inode cannot come back once replaced).
        // Otherwise a registration with the new kubelet would be followed
        // by one more when the stale pin is noticed.
        if !pin.is_current(path) {
            return Err(RegisterError::KubeletChanged);
        }
        // A channel that dials by path would, should this connection drop
        // (a kubelet stopping), redial and carry our Register to whatever
        // serves the path by then: a registration outside the pin, and one
        // more when the pin goes stale.
        let channel = uds::client::over(stream).await?;
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
