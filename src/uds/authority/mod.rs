//! An I/O shim that makes h2 accept clients sending an invalid `:authority`.
//!
//! hyper's h2 (under tonic) parses `:authority` with `http::uri::Authority`
//! and resets the stream with PROTOCOL_ERROR when that fails (h2 PR 487,
//! still open; tonic issues 243 and 1876; grpc-java issue 12664). Over a Unix
//! socket, mainstream clients with default options send exactly such values:
//! grpcio sends the socket path percent-encoded (`unix:/run/x.sock` →
//! `run%2Fx.sock`; observed from 1.57 to 1.85, while 1.53 still sent
//! `localhost`), and `http` rejects a `%` in a host name; grpc-java sends the
//! path itself. A grpcio client then sees `INTERNAL: Received RST_STREAM with
//! error code 1`. The server cannot be configured out of it, so this shim
//! rewrites such values to `localhost` on the way in, below h2.
//!
//! [`AuthorityShim`] wraps each accepted connection. Reads pass through the
//! sans-I/O [`Rewriter`] (see its module for the HPACK reasoning); writes and
//! the server→client direction are untouched. For a well-behaved client the
//! cost is a 9-byte parse per frame and an HPACK decode per header block
//! (our own `hpack` decoder: about 1.6 % of the daemon's CPU with 16
//! callers, `cargo bench --bench admission`);
//! frames other than header blocks are handed to h2 in the buffer they were
//! read into, without a copy.

mod frame;
mod hpack;
mod rewriter;
#[cfg(test)]
mod tests;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

pub use rewriter::{
    MAX_HEADER_BLOCK, MAX_HEADER_LIST, REPLACEMENT_AUTHORITY, RewriteError, Rewriter,
    SERVER_HEADER_TABLE_SIZE, is_valid_authority,
};

/// A server-side connection whose client→server bytes have invalid
/// `:authority` values replaced (see the module docs).
#[derive(Debug)]
pub struct AuthorityShim<S> {
    inner: S,
    rewriter: Rewriter,
    /// Rewriter output not yet handed to the reader, from `pending_pos` on.
    pending: Vec<u8>,
    pending_pos: usize,
}

impl<S> AuthorityShim<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            rewriter: Rewriter::new(),
            pending: Vec::new(),
            pending_pos: 0,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The first invalid `:authority` this connection replaced, if any.
    pub fn rewritten_authority(&self) -> Option<&[u8]> {
        self.rewriter.rewritten_authority()
    }

    /// Copies pending rewriter output into `buf`; true if anything was copied.
    fn drain_pending(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let rest = &self.pending[self.pending_pos..];
        if rest.is_empty() || buf.remaining() == 0 {
            return false;
        }
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        self.pending_pos += n;
        if self.pending_pos == self.pending.len() {
            self.pending.clear();
            self.pending_pos = 0;
        }
        true
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityShim<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.drain_pending(buf) || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            // Read straight into the caller's buffer; what the rewriter does
            // not pass unchanged is taken back out and replaced by its output.
            let start = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            if buf.filled().len() == start {
                // End of stream: release anything held back, then EOF.
                this.rewriter.finish(&mut this.pending);
                this.drain_pending(buf);
                return Poll::Ready(Ok(()));
            }
            let unchanged = this
                .rewriter
                .feed(&buf.filled()[start..], &mut this.pending)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            buf.set_filled(start + unchanged);
            if unchanged > 0 {
                this.drain_pending(buf);
                return Poll::Ready(Ok(()));
            }
            // Everything was held back (e.g. half a header block) or
            // rewritten: serve the output, or read on until the inner
            // stream is pending (which registers the waker).
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityShim<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Handlers see the inner stream's connect info: for a `UnixStream`, tonic's
/// `UdsConnectInfo` (peer credentials), exactly as without the shim.
impl<S: Connected> Connected for AuthorityShim<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
