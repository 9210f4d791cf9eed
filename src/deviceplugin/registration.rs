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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::devices::Resource;
use super::server::{PluginService, Shared};
use crate::kubelet;
use crate::proto::k8s::deviceplugin::v1beta1 as pb;
use crate::proto::vision::v1::KubeletEvent;
use crate::proto::vision::v1::watch_event::Event as Body;
use crate::service::stopped;
use crate::uds::{self, UdsListener};

/// How often the directory is checked when no notification came.
const FALLBACK_CHECK: Duration = Duration::from_secs(5);
/// Registration retry backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);

/// What changed in the kubelet directory, as counters that only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    /// `kubelet.sock` was (re)created: kubelet (re)started.
    pub kubelet: u64,
    /// Each of our sockets (in the order given) disappeared.
    pub sockets: [u64; 2],
}

/// Watches the kubelet device-plugin directory (inotify, plus a slow
/// fallback check) and counts the changes that call for serving and
/// registering again.
pub fn spawn_kubelet_watch(
    dir: PathBuf,
    ours: [PathBuf; 2],
    mut shutdown: watch::Receiver<bool>,
) -> (watch::Receiver<Changes>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(Changes::default());
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
        let mut last_ours: [bool; 2] = [ours[0].exists(), ours[1].exists()];
        // The first check waits a period: at start our sockets are being bound.
        let mut check =
            tokio::time::interval_at(tokio::time::Instant::now() + FALLBACK_CHECK, FALLBACK_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let (kubelet_new, gone) = tokio::select! {
                Some(ev) = ev_rx.recv() => {
                    use notify::EventKind::{Create, Remove};
                    let kubelet_new = matches!(ev.kind, Create(_)) && ev.paths.iter().any(|p| p == &kubelet_sock);
                    if kubelet_new {
                        last_kubelet = inode(&kubelet_sock);
                    }
                    let removed = matches!(ev.kind, Remove(_));
                    (kubelet_new, [0, 1].map(|i| removed && ev.paths.iter().any(|p| p == &ours[i])))
                }
                _ = check.tick() => {
                    // Missed notifications: a kubelet.sock that appeared or
                    // changed (inode numbers can be reused, so this is only
                    // the fallback), or one of our sockets that was there and
                    // is gone.
                    let now = inode(&kubelet_sock);
                    let kubelet_new = now.is_some() && now != last_kubelet;
                    last_kubelet = now;
                    let exists = [ours[0].exists(), ours[1].exists()];
                    let gone = [0, 1].map(|i| last_ours[i] && !exists[i]);
                    last_ours = exists;
                    (kubelet_new, gone)
                }
                _ = stopped(&mut shutdown) => return,
            };
            if kubelet_new || gone.iter().any(|g| *g) {
                tx.send_modify(|c| {
                    c.kubelet += u64::from(kubelet_new);
                    for (count, g) in c.sockets.iter_mut().zip(gone) {
                        *count += u64::from(g);
                    }
                });
            }
        }
    });
    (rx, handle)
}

fn inode(p: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

/// Waits until kubelet restarted, or our socket at `socket` (bound as
/// `mine`) is really gone, since `since` (the changes already acted on, kept
/// by the caller across calls so that nothing that happened meanwhile is
/// lost). A removal of our previous socket file — our own server removing it
/// on restart — arrives late and is not a reason.
async fn restart_needed(
    changes: &mut watch::Receiver<Changes>,
    since: &mut Changes,
    slot: usize,
    socket: &Path,
    mine: Option<(u64, u64)>,
) {
    loop {
        let now = *changes.borrow_and_update();
        if now.kubelet != since.kubelet {
            return;
        }
        if now.sockets[slot] != since.sockets[slot] {
            if inode(socket) != mine {
                return;
            }
            since.sockets[slot] = now.sockets[slot];
        }
        if changes.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Serves one plugin and keeps it registered until shutdown.
pub fn spawn_plugin(
    shared: Arc<Shared>,
    resource: Resource,
    slot: usize,
    dir: PathBuf,
    mut changes: watch::Receiver<Changes>,
    registered: Arc<AtomicBool>,
) -> JoinHandle<()> {
    let mut shutdown = shared.node.shutdown_signal();
    tokio::spawn(async move {
        let socket = dir.join(resource.socket_file());
        let mut waiting_logged = false;
        loop {
            // What this incarnation of the server has taken into account.
            let mut since = *changes.borrow_and_update();
            let (stop_tx, stop_rx) = watch::channel(false);
            let listener = match UdsListener::bind(&socket, 0o600).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(%resource, error = %e, "cannot serve the device plugin socket; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(BACKOFF_MAX) => continue,
                        _ = changes.changed() => continue,
                        _ = stopped(&mut shutdown) => return,
                    }
                }
            };
            let mine = inode(&socket);
            let svc = PluginService {
                resource,
                shared: Arc::clone(&shared),
                stop: stop_rx.clone(),
            };
            let mut stop_serving = stop_rx.clone();
            let server = tokio::spawn(async move {
                let result = tonic::transport::Server::builder()
                    .add_service(pb::device_plugin_server::DevicePluginServer::new(svc))
                    .serve_with_incoming_shutdown(listener.incoming(), async move {
                        stopped(&mut stop_serving).await
                    })
                    .await;
                if let Err(e) = result {
                    tracing::error!(%resource, error = %e, "device plugin server failed");
                }
            });

            // Serve first, then register; retry with backoff, waking early when kubelet appears.
            let mut delay = BACKOFF_MIN;
            let mut restart = false;
            loop {
                match register(&dir, resource, &shared.domain).await {
                    Ok(()) => {
                        registered.store(true, Ordering::SeqCst);
                        waiting_logged = false;
                        tracing::info!(%resource, resource_name = %resource.name(&shared.domain), "registered with kubelet");
                        shared
                            .node
                            .metrics()
                            .kubelet_registrations
                            .get_or_create(&crate::telemetry::metrics::ResourceLabel {
                                resource: resource.name(&shared.domain),
                            })
                            .inc();
                        shared.node.publish(Body::Kubelet(KubeletEvent {
                            resource: resource.name(&shared.domain),
                            registered: true,
                            message: format!(
                                "registered with kubelet (endpoint {})",
                                resource.socket_file()
                            ),
                        }));
                        break;
                    }
                    Err(e) => {
                        registered.store(false, Ordering::SeqCst);
                        if waiting_logged {
                            tracing::debug!(%resource, error = %e, "kubelet registration failed; retrying");
                        } else {
                            tracing::info!(%resource, dir = %dir.display(), error = %e,
                                "waiting for kubelet to accept registration; admissions are served meanwhile");
                            waiting_logged = true;
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = restart_needed(&mut changes, &mut since, slot, &socket, mine) => { restart = true; break; }
                            _ = stopped(&mut shutdown) => {
                                let _ = stop_tx.send(true);
                                let _ = server.await;
                                return;
                            }
                        }
                        delay = (delay * 2).min(BACKOFF_MAX);
                    }
                }
            }
            if !restart {
                tokio::select! {
                    _ = restart_needed(&mut changes, &mut since, slot, &socket, mine) => {
                        registered.store(false, Ordering::SeqCst);
                        tracing::info!(%resource, "kubelet restarted or our socket vanished; serving and registering again");
                    }
                    _ = stopped(&mut shutdown) => {
                        let _ = stop_tx.send(true);
                        let _ = server.await;
                        return;
                    }
                }
            }
            let _ = stop_tx.send(true);
            let _ = server.await;
        }
    })
}

async fn register(dir: &Path, resource: Resource, domain: &str) -> Result<(), String> {
    let call = async {
        let channel = uds::client::connect(dir.join(kubelet::KUBELET_SOCKET))
            .await
            .map_err(|e| e.to_string())?;
        pb::registration_client::RegistrationClient::new(channel)
            .register(pb::RegisterRequest {
                version: kubelet::VERSION.to_owned(),
                endpoint: resource.socket_file().to_owned(),
                resource_name: resource.name(domain),
                options: Some(pb::DevicePluginOptions {
                    pre_start_required: false,
                    get_preferred_allocation_available: true,
                }),
            })
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
        Ok(())
    };
    tokio::time::timeout(REGISTER_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| Err("kubelet did not answer Register".into()))
}
