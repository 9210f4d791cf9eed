//! `/metrics`, `/healthz` and `/readyz` on one HTTP port.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;

use crate::service::{Node, stopped};

/// Whether the daemon should receive traffic: `Err(reason)` while not.
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

struct AppState {
    registry: Registry,
    ready: Readiness,
}

/// Binds `addr` (so a taken port fails start-up) and serves until shutdown.
pub async fn serve(
    addr: SocketAddr,
    node: Arc<Node>,
    ready: Readiness,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on --http-addr {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let state = Arc::new(AppState {
        registry: super::metrics::registry(Arc::clone(&node)),
        ready,
    });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    let mut shutdown = node.shutdown_signal();
    let handle = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopped(&mut shutdown).await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    Ok((local, handle))
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
    match (state.ready)() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}
