//! A tonic channel over a Unix socket, for our own clients (visionctl, tests).

use std::io;
use std::path::Path;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Connects to the gRPC server on the Unix socket at `path`.
///
/// The endpoint URI only supplies the `:authority`, `localhost` — what
/// kubelet has sent since 1.26 and what h2 accepts, so our own client never
/// depends on the server-side shim. The connector dials the socket, and
/// dials it again when the channel reconnects.
pub async fn connect(path: impl AsRef<Path>) -> Result<Channel, tonic::transport::Error> {
    let path: Arc<Path> = Arc::from(path.as_ref());
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = Arc::clone(&path);
            async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(&*path).await?)) }
        }))
        .await
}

/// A channel over one already connected `stream` that never dials again:
/// once that connection ends, every call fails (UNAVAILABLE).
///
/// For a caller that must know *which* server it talks to — e.g. the
/// daemon registering with the kubelet it pinned: [`connect`]'s channel
/// would silently redial the path, reaching whatever serves it by then.
pub async fn over(stream: UnixStream) -> Result<Channel, tonic::transport::Error> {
    let once = Arc::new(std::sync::Mutex::new(Some(stream)));
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let stream = once.lock().map(|mut s| s.take()).unwrap_or(None);
            async move {
                stream.map(TokioIo::new).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotConnected,
                        "this channel's one connection has ended",
                    )
                })
            }
        }))
        .await
}
