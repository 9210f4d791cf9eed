//! HPACK (RFC 7541), the two halves the shim needs and nothing more.
//!
//! - [`Decoder`] mirrors the client's encoder: it decodes every header block
//!   of a connection, in order, keeping the dynamic table in step. It does
//!   per block what h2 does (and is as strict, see [`decode`]), without
//!   allocating for the common block: names and values are handed to a
//!   callback as slices of the block, of a table entry or of a scratch
//!   buffer for Huffman-coded strings.
//! - [`encode_field`] writes the fields of a rewritten block as literals that
//!   never touch the server's dynamic table (see [`encode`]).
//!
//! Why our own and not a crate: the shim decodes every request's header
//! block, so the decoder is on the hot path of every call. `loona-hpack`
//! (like `hpack`, which it forks) builds a 257-entry `HashMap` tree for each
//! Huffman-coded string and walks it bit by bit; every tonic or grpc-go
//! request carries at least one such string (h2 never indexes `:path`), and
//! that was a quarter of the daemon's CPU under load (issue 11). h2's own
//! decoder is private (its `unstable` feature exposes it without any
//! stability promise). The code below is small and checked against
//! `loona-hpack` as an independent oracle in the tests.

mod decode;
mod encode;
mod huffman;
mod table;

pub(crate) use decode::Decoder;
pub(crate) use encode::encode_field;
#[cfg(test)]
pub(crate) use encode::{encode_int, encode_str};

/// The static table (RFC 7541 Appendix A): index = position + 1.
pub(crate) const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];
