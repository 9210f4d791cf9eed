//! Serving gRPC on Unix sockets so that every mainstream client works with
//! its default options.
//!
//! The trap (see KUBELET_API.md, "The :authority trap"): over a Unix socket,
//! Python's grpcio (since a release between 1.53 and 1.57: the socket path,
//! percent-encoded) and grpc-java (the path) send an HTTP/2 `:authority` that is not a valid URI authority.
//! hyper's h2, under tonic, resets such streams with PROTOCOL_ERROR — h2 PR
//! 487 is still open, tonic issues 243 and 1876 — and the client sees
//! `INTERNAL: Received RST_STREAM with error code 1`. Our task clients are
//! mostly Python, so:
//!
//! - [`listener`] binds a socket safely (stale vs. live socket, mode, removal
//!   on shutdown) and yields connections wrapped in
//! - [`authority`]'s shim, which rewrites an invalid `:authority` to
//!   `localhost` below h2, keeping the client's and server's HPACK state
//!   consistent;
//! - [`client`] is our own client side, which sends `localhost` itself.
//!
//! ```no_run
//! # async fn run(svc: vision_node_daemon::proto::vision::v1::model_runtime_server::ModelRuntimeServer<impl vision_node_daemon::proto::vision::v1::model_runtime_server::ModelRuntime>) -> anyhow::Result<()> {
//! use vision_node_daemon::uds;
//! let listener = uds::UdsListener::bind("/run/vision/admin.sock", uds::ADMIN_SOCKET_MODE).await?;
//! tonic::transport::Server::builder()
//!     .add_service(svc)
//!     .serve_with_incoming_shutdown(listener.incoming(), async { /* SIGTERM */ })
//!     .await?;
//! # Ok(()) }
//! ```

pub mod authority;
pub mod client;
pub mod guard;
pub mod listener;

pub use authority::AuthorityShim;
pub use listener::{
    ADMIN_SOCKET_MODE, BindError, DEFAULT_MAX_CONNECTIONS, Incoming, TASK_SOCKET_MODE, UdsListener,
};
