//! The HTTP server: `POST /filter`, `POST /prioritize`, `GET /healthz`,
//! `GET /readyz`, `GET /metrics`. A thin adapter over [`Extender`]'s calls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::registry::Registry;

use super::{Answer, Extender, metrics};

struct AppState {
    extender: Arc<Extender>,
    registry: Registry,
}

/// The routes, with the body limit applied (bodies over it get a 413 whose
/// JSON `Error` says so).
pub fn router(extender: Arc<Extender>) -> Router {
    let limit = extender.max_body_bytes;
    let state = Arc::new(AppState {
        registry: extender.registry(),
        extender,
    });
    Router::new()
        .route("/filter", post(filter))
        .route("/prioritize", post(prioritize))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Binds `addr` (a taken port fails start-up) and serves until `shutdown`
/// completes, finishing the calls in flight.
pub async fn serve(
    addr: SocketAddr,
    extender: Arc<Extender>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on --listen {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let app = router(extender);
    let handle = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });
    Ok((local, handle))
}

async fn filter(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    call(&state, "filter", body, |e, b| {
        e.filter(b, SystemTime::now())
    })
}

async fn prioritize(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    call(&state, "prioritize", body, |e, b| {
        e.prioritize(b, SystemTime::now())
    })
}

/// Runs one call on the request's body. The work is a few milliseconds at
/// most (5 000 names in cache mode take well under one), so it runs on the
/// runtime's worker rather than paying for a blocking-pool hop.
fn call(
    state: &AppState,
    verb: &'static str,
    body: Result<Bytes, BytesRejection>,
    f: impl FnOnce(&Extender, &[u8]) -> Answer,
) -> Response {
    let answer = match body {
        Ok(bytes) => f(&state.extender, &bytes),
        Err(rejection) => {
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "the request body is over {} bytes (--max-body-bytes); with many nodes use nodeCacheCapable: true",
                    state.extender.max_body_bytes
                )
            } else {
                format!("cannot read the request body: {}", rejection.body_text())
            };
            tracing::warn!(verb, %message, "bad extender request");
            let result = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "too_large"
            } else {
                "bad_request"
            };
            state
                .extender
                .metrics
                .requests
                .get_or_create(&metrics::Request { verb, result })
                .inc();
            Answer::error(status.as_u16(), &message)
        }
    };
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        answer.body,
    )
        .into_response()
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match state.extender.ready() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics::encode(&state.registry),
    )
}
