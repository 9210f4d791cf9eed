//! One HTTP port: `/metrics`, `/healthz`, `/readyz`, and the status page
//! (`/`, its live updates `/events`, and `/status.json`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use super::page::{self, PageView};

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

/// What the status page shows, and when it changed.
pub(crate) trait PageSource: Send + Sync + 'static {
    /// A fresh view of the node.
    fn view(&self) -> PageView;
    /// Changes (its value counts them) whenever the node's state changed.
    fn changes(&self) -> watch::Receiver<u64>;
}

/// After a change, the page waits this long for more before it re-renders,
/// so that a burst of events is one update.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(200);
/// Idle times and lease expiries move without events: re-render this often.
const REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

struct AppState {
    registry: Registry,
    ready: Box<dyn Readiness>,
    page: Arc<dyn PageSource>,
    shutdown: shutdown::Signal,
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
    page: Arc<dyn PageSource>,
    mut shutdown: shutdown::Signal,
) -> JoinHandle<()> {
    let state = Arc::new(AppState {
        registry,
        ready,
        page,
        shutdown: shutdown.clone(),
    });
    let app = Router::new()
        .route("/", get(status_page))
        .route("/status.json", get(status_json))
        .route("/events", get(status_events))
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

const NO_STORE: (header::HeaderName, &str) = (header::CACHE_CONTROL, "no-store");

/// The whole page, rendered now: complete without JavaScript.
async fn status_page(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    ([NO_STORE], Html(page::html::page(&state.page.view())))
}

/// The page's view for scripts.
async fn status_json(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match serde_json::to_string_pretty(&state.page.view()) {
        Ok(body) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [
                (header::CONTENT_TYPE, "text/plain"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            format!("cannot encode the status: {e}\n"),
        ),
    }
}

/// Server-sent events: a `status` event carrying the re-rendered live part
/// of the page at once, after each change (bursts coalesced), and every few
/// seconds. Ends when the daemon shuts down or the browser goes away.
async fn status_events(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let (tx, rx) = mpsc::channel::<Result<SseEvent, std::convert::Infallible>>(4);
    let source = Arc::clone(&state.page);
    let mut changes = source.changes();
    let mut shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        loop {
            changes.mark_unchanged();
            let html = page::html::live(&source.view());
            let event = SseEvent::default().event("status").data(html);
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(COALESCE) => {}
                        _ = shutdown.fired() => return,
                    }
                }
                _ = tokio::time::sleep(REFRESH) => {}
                _ = shutdown.fired() => return,
                _ = tx.closed() => return,
            }
        }
    });
    (
        [NO_STORE],
        Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default()),
    )
}
