//! `/metrics`, `/healthz` and `/readyz` on one HTTP port.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::shutdown;

/// Whether the daemon should receive traffic.
pub(crate) trait Readiness: Send + Sync + 'static {
    /// Why not, while it should not; `None` when ready.
    fn not_ready(&self) -> Option<&'static str>;
}

/// The HTTP port could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on --http-addr {addr}: {source}")]
pub(crate) struct BindError {
    addr: SocketAddr,
    source: std::io::Error,
}

struct AppState {
    registry: Registry,
    ready: Box<dyn Readiness>,
}

/// Binds `addr`, so that a taken port fails start-up before anything runs.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// Serves on `listener` until `shutdown` fires.
pub(crate) fn serve(
    listener: TcpListener,
    registry: Registry,
    ready: Box<dyn Readiness>,
    mut shutdown: shutdown::Signal,
) -> JoinHandle<()> {
    let state = Arc::new(AppState { registry, ready });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.fired().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP server failed");
        }
    })
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        super::metrics::encode(&state.registry),
    )
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match state.ready.not_ready() {
        None => (StatusCode::OK, "ready\n".to_owned()),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}
