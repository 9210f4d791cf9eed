//! What one connection may hold of the daemon (issue 16, item 2): a place
//! under its socket's connection cap, for as long as it lives, and a
//! deadline for the HTTP/2 handshake (and, for the HTTP port, a bound on how
//! long a peer may leave the daemon's writes blocked).
//!
//! Nothing else times out a connection that says nothing: hyper waits for
//! the client preface forever. 1 100 such connections on the task socket
//! took every file descriptor the daemon had, and the admin socket and the
//! kubelet plugin sockets could no longer accept. So each socket has its own
//! cap (a semaphore; a connection over it is closed at once, before it costs
//! anything but the accept), the caps fit under the open-files limit with
//! room to spare (`crate::daemon`), and a connection that has not sent the
//! client preface and a SETTINGS frame header within [`HANDSHAKE_TIMEOUT`]
//! is closed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;
use tonic::transport::server::Connected;

/// How long a new connection has to send the HTTP/2 client preface and its
/// first SETTINGS frame. Every gRPC client sends both at once on connecting.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The client preface (`PRI * HTTP/2.0…`, 24 bytes) and a frame header (9).
const HANDSHAKE_BYTES: usize = 24 + 9;

/// A connection with its place under the cap and its handshake deadline.
#[derive(Debug)]
pub struct Guarded<S> {
    inner: S,
    /// Released when the connection goes.
    _place: OwnedSemaphorePermit,
    /// Until the handshake bytes have come; `None` after.
    deadline: Option<Pin<Box<Sleep>>>,
    read: usize,
    /// How many bytes make the handshake.
    handshake: usize,
    /// How long a write may stay blocked (the peer reads nothing) before
    /// the connection is closed; `None`: forever.
    write_stall: Option<Duration>,
    /// Armed while a write is blocked.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> Guarded<S> {
    pub(crate) fn new(inner: S, place: OwnedSemaphorePermit) -> Guarded<S> {
        Guarded::with_handshake(inner, place, HANDSHAKE_BYTES, HANDSHAKE_TIMEOUT)
    }

    /// A connection that must send `bytes` bytes within `timeout` (the HTTP
    /// port asks for its first byte; hyper's header timeout takes it from
    /// there).
    pub(crate) fn with_handshake(
        inner: S,
        place: OwnedSemaphorePermit,
        bytes: usize,
        timeout: Duration,
    ) -> Guarded<S> {
        Guarded {
            inner,
            _place: place,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            read: 0,
            handshake: bytes,
            write_stall: None,
            stalled: None,
        }
    }

    /// Also closes the connection when the peer has read nothing for
    /// `limit` while the daemon had something to send it: a client that
    /// asks for a response, or a stream of them, and stops reading would
    /// otherwise hold its place (and its buffered response) for good, and
    /// hold up a graceful shutdown waiting for that response to finish.
    pub(crate) fn with_write_stall(mut self, limit: Duration) -> Guarded<S> {
        self.write_stall = Some(limit);
        self
    }

    /// Passes on a write's outcome, timing how long writes stay blocked.
    fn watch_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let Some(limit) = self.write_stall else {
            return polled;
        };
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer read nothing within the write stall limit; closing",
            )));
        }
        Poll::Pending
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let start = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Some(deadline) = this.deadline.as_mut() {
            if let Poll::Ready(Ok(())) = polled {
                this.read += buf.filled().len() - start;
                if this.read >= this.handshake {
                    this.deadline = None;
                }
                return polled;
            }
            if polled.is_pending() && deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no handshake within the handshake timeout; closing",
                )));
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch_write(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch_write(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: Connected> Connected for Guarded<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::Semaphore;

    use super::*;

    fn place(cap: &Arc<Semaphore>) -> OwnedSemaphorePermit {
        Arc::clone(cap).try_acquire_owned().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_at_the_handshake_deadline_and_frees_its_place() {
        let cap = Arc::new(Semaphore::new(1));
        let (_client, server) = tokio::io::duplex(64);
        let mut conn = Guarded::new(server, place(&cap));
        assert_eq!(cap.available_permits(), 0);
        let started = tokio::time::Instant::now();
        let mut byte = [0u8; 1];
        let e = conn.read(&mut byte).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(
            started.elapsed(),
            HANDSHAKE_TIMEOUT,
            "at the deadline, not later"
        );
        drop(conn);
        assert_eq!(cap.available_permits(), 1, "its place is back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_is_closed_at_the_write_stall_limit() {
        let cap = Arc::new(Semaphore::new(1));
        let (mut client, server) = tokio::io::duplex(64);
        let limit = Duration::from_secs(30);
        let mut conn = Guarded::with_handshake(server, place(&cap), 1, HANDSHAKE_TIMEOUT)
            .with_write_stall(limit);
        // A reading peer: far more than the pipe holds goes through, however
        // long it takes in all, as long as each wait is under the limit.
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = [0u8; 16];
            while got < 1024 {
                tokio::time::sleep(limit / 2).await;
                got += client.read(&mut buf).await.unwrap();
            }
            client
        });
        conn.write_all(&[1u8; 1024]).await.unwrap();
        let _client = reader.await.unwrap();
        // Now it stops reading: the pipe fills, and the write that blocks
        // fails at the limit, not before and not later.
        let started = tokio::time::Instant::now();
        let e = tokio::time::timeout(limit * 2, conn.write_all(&[2u8; 1024]))
            .await
            .expect("closed at the limit")
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), limit);
        drop(conn);
        assert_eq!(cap.available_permits(), 1, "its place is back");
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_write_stall_limit_a_blocked_write_waits() {
        let cap = Arc::new(Semaphore::new(1));
        let (_client, server) = tokio::io::duplex(64);
        let mut conn = Guarded::new(server, place(&cap));
        let write = tokio::spawn(async move { conn.write_all(&[0u8; 1024]).await });
        tokio::time::advance(HANDSHAKE_TIMEOUT * 100).await;
        tokio::task::yield_now().await;
        assert!(
            !write.is_finished(),
            "the gRPC sockets keep their flow control"
        );
        write.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_half_sent_preface_is_closed_too() {
        let cap = Arc::new(Semaphore::new(1));
        let (mut client, server) = tokio::io::duplex(64);
        let mut conn = Guarded::new(server, place(&cap));
        client.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(conn.read(&mut buf).await.unwrap(), 16);
        let e = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_handshake_a_quiet_connection_is_left_alone() {
        let cap = Arc::new(Semaphore::new(1));
        let (mut client, server) = tokio::io::duplex(64);
        let mut conn = Guarded::new(server, place(&cap));
        client.write_all(&[0u8; HANDSHAKE_BYTES]).await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(conn.read(&mut buf).await.unwrap(), HANDSHAKE_BYTES);
        // Quiet for far longer than the handshake timeout, then a byte.
        let read = tokio::spawn(async move {
            let mut b = [0u8; 1];
            conn.read(&mut b).await.map(|_| b[0])
        });
        tokio::time::advance(HANDSHAKE_TIMEOUT * 100).await;
        client.write_all(&[7]).await.unwrap();
        assert_eq!(read.await.unwrap().unwrap(), 7);
    }
}
