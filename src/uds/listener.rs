//! Binding a Unix socket to serve gRPC on, and removing it afterwards.
//!
//! `bind(2)` fails on an existing path, and a daemon that crashed leaves its
//! socket file behind. Deleting whatever is there would let a second daemon
//! silently steal the socket of a live one (whose clients would then hang on
//! an orphaned listener), so [`UdsListener::bind`] asks the file first: a
//! socket nobody listens on (connect → ECONNREFUSED) is stale and replaced; a
//! live one is refused with [`BindError::InUse`]; anything else at the path
//! is not ours to delete.
//!
//! The socket file is removed when the `SocketGuard` drops — with the
//! [`Incoming`] stream, which tonic drops as soon as its shutdown signal
//! fires — but only if the path still names our inode: a successor that has
//! already replaced the file keeps its socket.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use std::sync::Arc;
use tokio::net::{UnixListener, UnixStream};

use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tokio_stream::Stream;

use super::authority::AuthorityShim;
use super::guard::Guarded;

/// Mode of the task socket: every pod that mounts its directory may connect;
/// the token in each request says who it is.
pub const TASK_SOCKET_MODE: u32 = 0o666;
/// Mode of the admin socket: only the daemon's user; the file mode is the
/// access control.
pub const ADMIN_SOCKET_MODE: u32 = 0o600;

/// Connections one socket serves at once unless told otherwise
/// ([`UdsListener::max_connections`]); one more is closed at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// How long accepting pauses after an error such as EMFILE, which would
/// otherwise repeat at once (tonic logs the error and polls again).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Why a socket could not be bound. Carries `io::Error`s, hence no `PartialEq`.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// A server accepts connections on the path: another daemon runs.
    #[error("{} is in use: a server is accepting connections on it (another daemon?); not replacing it", path.display())]
    InUse { path: PathBuf },
    /// Something other than a socket is at the path.
    #[error("{} exists and is a {kind}, not a socket; not removing it", path.display())]
    NotASocket { path: PathBuf, kind: &'static str },
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BindError + 'a {
    move |source| BindError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// A bound, listening Unix socket, not yet serving.
#[derive(Debug)]
pub struct UdsListener {
    listener: UnixListener,
    guard: SocketGuard,
    max_connections: usize,
}

impl UdsListener {
    /// Binds `path` (creating its parent directory) and sets the socket
    /// file's mode ([`TASK_SOCKET_MODE`], [`ADMIN_SOCKET_MODE`]). Connections
    /// are queued from the moment this returns. Needs a tokio runtime.
    ///
    /// Between `bind` and `chmod` the file has the mode the umask gives it;
    /// the admin socket lives outside the directory mounted into pods, so no
    /// pod can reach it in that window.
    pub async fn bind(path: impl Into<PathBuf>, mode: u32) -> Result<Self, BindError> {
        let path = path.into();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
        }
        clear_stale(&path).await?;
        let listener = UnixListener::bind(&path).map_err(|e| match e.kind() {
            // Someone bound it between our check and our bind.
            io::ErrorKind::AddrInUse => BindError::InUse { path: path.clone() },
            _ => BindError::Io {
                op: "bind",
                path: path.clone(),
                source: e,
            },
        })?;
        let meta = std::fs::symlink_metadata(&path).map_err(io_err("inspect", &path))?;
        // From here on, dropping the guard (on any error too) removes the file.
        let guard = SocketGuard {
            path,
            dev: meta.dev(),
            ino: meta.ino(),
        };
        std::fs::set_permissions(&guard.path, std::fs::Permissions::from_mode(mode))
            .map_err(io_err("set the mode of", &guard.path))?;
        Ok(Self {
            listener,
            guard,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        })
    }

    /// Serves at most `max` connections at once (at least 1); a connection
    /// over the cap is accepted and closed at once, so its client fails
    /// fast instead of waiting in the backlog.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    pub fn path(&self) -> &Path {
        self.guard.path()
    }

    /// The (device, inode) of the socket file this listener bound: the one
    /// its path names for as long as the file is ours. Taken at bind time,
    /// so a removal right after binding still reads as "not ours".
    pub fn file_id(&self) -> (u64, u64) {
        (self.guard.dev, self.guard.ino)
    }

    /// The stream of accepted connections for
    /// `tonic::transport::Server::serve_with_incoming_shutdown`, each wrapped
    /// in the [`AuthorityShim`]. Owns the guard: the socket file goes when
    /// the stream is dropped.
    pub fn incoming(self) -> Incoming {
        Incoming {
            listener: self.listener,
            guard: self.guard,
            places: Arc::new(Semaphore::new(self.max_connections)),
            max: self.max_connections,
            refused: 0,
            backoff: None,
        }
    }
}

/// Replaces a stale socket at `path`; refuses a live one or a non-socket.
async fn clear_stale(path: &Path) -> Result<(), BindError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("inspect", path)(e)),
    };
    let ft = meta.file_type();
    if !ft.is_socket() {
        let kind = if ft.is_dir() {
            "directory"
        } else if ft.is_symlink() {
            "symbolic link"
        } else if ft.is_file() {
            "regular file"
        } else {
            "special file"
        };
        return Err(BindError::NotASocket {
            path: path.to_owned(),
            kind,
        });
    }
    // A non-blocking connect: succeeds or fails at once, even when a live
    // server's backlog is full (EAGAIN, i.e. WouldBlock).
    match UnixStream::connect(path).await {
        Ok(_) => Err(BindError::InUse {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(BindError::InUse {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "replacing stale socket left by a previous run");
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    Err(io_err("remove stale socket", path)(e))
                }
                _ => Ok(()),
            }
        }
        // Vanished since we looked.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("probe", path)(e)),
    }
}

/// Removes the socket file on drop, if the path still names the inode we
/// created.
#[derive(Debug)]
pub(crate) struct SocketGuard {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketGuard {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot remove own socket");
                }
            }
            Ok(_) => tracing::debug!(
                path = %self.path.display(),
                "socket path now belongs to another server; leaving it"
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot inspect own socket")
            }
        }
    }
}

/// Accepted connections, shimmed; see [`UdsListener::incoming`].
#[derive(Debug)]
pub struct Incoming {
    listener: UnixListener,
    guard: SocketGuard,
    /// One permit per connection served (see `guard`).
    places: Arc<Semaphore>,
    max: usize,
    /// Connections closed for being over the cap.
    refused: u64,
    /// Armed after an accept error that is not about one connection.
    backoff: Option<Pin<Box<Sleep>>>,
}

impl Incoming {
    pub fn path(&self) -> &Path {
        self.guard.path()
    }
}

impl Stream for Incoming {
    type Item = io::Result<AuthorityShim<Guarded<UnixStream>>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(delay) = this.backoff.as_mut() {
            ready!(delay.as_mut().poll(cx));
            this.backoff = None;
        }
        loop {
            match ready!(this.listener.poll_accept(cx)) {
                Ok((stream, _)) => match Arc::clone(&this.places).try_acquire_owned() {
                    Ok(place) => {
                        return Poll::Ready(Some(Ok(AuthorityShim::new(Guarded::new(
                            stream, place,
                        )))));
                    }
                    Err(_) => {
                        // Over the cap: closed here, before it costs more than
                        // the accept; its client sees the connection reset.
                        drop(stream);
                        this.refused += 1;
                        if this.refused.is_power_of_two() {
                            tracing::warn!(path = %this.guard.path.display(), max = this.max,
                                refused = this.refused,
                                "connection cap reached; closing new connections until some end");
                        }
                    }
                },
                Err(e) => return Poll::Ready(Some(Err(this.accept_failed(e)))),
            }
        }
    }
}

impl Incoming {
    fn accept_failed(&mut self, e: io::Error) -> io::Error {
        let per_connection = matches!(
            e.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::Interrupted
                | io::ErrorKind::WouldBlock
        );
        if !per_connection {
            tracing::warn!(path = %self.guard.path.display(), error = %e, "accept failed; pausing");
            self.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
        }
        e
    }
}
