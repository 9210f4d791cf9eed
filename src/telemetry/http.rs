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
    shutdown: shutdown::Signal,
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
    tokio::spawn(serve_guarded(listener, app, LIMITS, shutdown))
}

/// What clients of the HTTP port may hold of the daemon (issue 16's caps
/// for the Unix sockets, here for the TCP port).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Open connections at once; one over it is closed at once. A
    /// Prometheus, a few status pages (each holds one for its live
    /// updates) and probes need a handful.
    pub max_connections: usize,
    /// How long a connection may take to send its first byte, and then each
    /// request's headers (from their first byte): without it a client that
    /// sends nothing, or a header a byte at a time, holds its connection
    /// forever, and enough of them take every place under the cap.
    pub header_timeout: std::time::Duration,
    /// How long the daemon's writes to a client may stay blocked (it reads
    /// nothing) before the connection is closed: a status page whose reader
    /// stopped, or a scraper that hung mid-response, would otherwise hold
    /// its place, and hold up shutdown, for good.
    pub write_stall: std::time::Duration,
}

pub(crate) const LIMITS: Limits = Limits {
    // Inside the descriptors the daemon reserves beside the task socket's
    // cap (`crate::daemon`).
    max_connections: 64,
    header_timeout: std::time::Duration::from_secs(10),
    write_stall: std::time::Duration::from_secs(30),
};

/// Serves `app` on `listener` within `limits` until `shutdown` fires, then
/// lets each connection finish its response (the status page's live
/// updates end on the same signal) and returns when all have ended.
pub(crate) async fn serve_guarded(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut shutdown: shutdown::Signal,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;

    let places = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.fired() => break,
            accepted = listener.accept() => accepted,
            // Reap finished connections as they end.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, most likely: wait for some to close
                // rather than spin.
                tracing::warn!(error = %e, "HTTP port: accept failed");
                tokio::select! {
                    _ = shutdown.fired() => break,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => continue,
                }
            }
        };
        let Ok(place) = Arc::clone(&places).try_acquire_owned() else {
            tracing::debug!(
                limit = limits.max_connections,
                "HTTP port: connection over the cap closed"
            );
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let mut stop = shutdown.clone();
        // hyper's header timeout starts at a request's first byte: until
        // then the guard's deadline holds (and the guard holds the place).
        let stream =
            crate::uds::guard::Guarded::with_handshake(stream, place, 1, limits.header_timeout)
                .with_write_stall(limits.write_stall);
        connections.spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new()).http1_only();
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                // One request per connection: an idle kept-alive connection
                // would hold its place with no deadline (hyper's header
                // timeout waits for a first byte). Scrapers reconnect.
                .keep_alive(false);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.fired() => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    while connections.join_next().await.is_some() {}
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// A generous bound on "at once" and "at the timeout": nothing here
    /// waits for it unless the server fails to close.
    const BOUND: Duration = Duration::from_secs(10);

    async fn closed(conn: &mut TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        tokio::time::timeout(BOUND, conn.read_to_end(&mut got))
            .await
            .expect("the server closes the connection")
            .ok();
        got
    }

    /// A request that asks to keep the connection: the server closes it
    /// after the response all the same (`closed` would time out otherwise).
    async fn fetch(addr: SocketAddr) -> String {
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8_lossy(&closed(&mut conn).await).into_owned()
    }

    #[tokio::test]
    async fn silent_and_slow_clients_cannot_hold_the_port() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        // More than the loopback socket buffers hold, so that a client that
        // does not read blocks the server's writes.
        let app = Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/big", get(|| async { vec![b'x'; 64 << 20] }));
        let trigger = shutdown::Trigger::new();
        let limits = Limits {
            max_connections: 2,
            header_timeout: Duration::from_millis(300),
            write_stall: Duration::from_millis(300),
        };
        let server = tokio::spawn(serve_guarded(listener, app, limits, trigger.signal()));
        assert!(fetch(addr).await.ends_with("ok\n"), "a request is served");

        // Two clients take both places: one says nothing, one sends half a
        // request line and stalls.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /heal").await.unwrap();
        // Served once both are accepted: a third is refused at once.
        let mut third = TcpStream::connect(addr).await.unwrap();
        let refused = closed(&mut third).await;
        assert!(refused.is_empty(), "over the cap: closed without an answer");

        // The header deadline closes both, and their places come back.
        closed(&mut slow).await;
        closed(&mut silent).await;
        assert!(
            fetch(addr).await.ends_with("ok\n"),
            "served again after the timeout"
        );

        // A client asks for a large response and never reads it. Graceful
        // shutdown waits for responses in flight: without the write stall
        // limit this one would never finish, and neither would the server.
        let mut stalled = TcpStream::connect(addr).await.unwrap();
        stalled
            .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(fetch(addr).await.ends_with("ok\n"), "one place left");
        trigger.fire();
        tokio::time::timeout(BOUND, server)
            .await
            .expect("the server stops on shutdown")
            .unwrap();
    }
}
