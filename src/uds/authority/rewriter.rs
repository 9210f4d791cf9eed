//! The sans-I/O core of the shim: bytes in, bytes out, no tokio.
//!
//! [`Rewriter::feed`] consumes the client→server byte stream in whatever
//! pieces the socket delivers and produces the bytes the h2 server should see.
//! Two modes, because HPACK state is shared between the two ends:
//!
//! - **Passthrough** (the start, and forever for well-behaved clients such as
//!   tonic, grpc-go and kubelet): every frame goes out byte for byte. Header
//!   blocks are still decoded, because only a decoder that has seen every
//!   block knows what the client's dynamic table holds when a later block
//!   refers to it.
//! - **Rewriting** (from the first block whose `:authority` h2 would reject):
//!   that block and every later one is re-encoded by [`super::hpack`] without
//!   indexing (or never indexed, as the client sent it). The server's table stays as it was before the first rewrite,
//!   the client's keeps evolving in our decoder, and nothing we write refers
//!   to either.
//!
//! Inspection never stops, though it could soundly: once we forward a
//! connection's bytes unchanged for good, h2's table stays equal to the
//! client's, so stopping after the first acceptable `:authority` would keep
//! HPACK consistent. But a later block could still carry a bad authority (a
//! per-call authority override; two grpc-core channels sharing one
//! subchannel), and h2 would reset it. Our decoder costs as much as not
//! decoding, within the noise of `cargo bench --bench admission`
//! (benches/README.md), so the guarantee holds for the whole connection.
//!
//! A client that does not speak HTTP/2, or breaks HPACK or framing while we
//! are still in passthrough, is passed through untouched from then on
//! (`Opaque`): h2 sees exactly what the client sent and rejects it with the
//! right error. After a rewrite we cannot do that (the tables differ), so
//! such a client gets an error and the connection closes.

use super::frame::{self, FrameHeader};
use super::hpack;

/// What an invalid `:authority` becomes: what kubelet (since 1.26), grpc-go
/// and our own client send over Unix sockets.
pub const REPLACEMENT_AUTHORITY: &str = "localhost";

/// The most header-block bytes (frames of one block, as received) buffered
/// for a single block. gRPC metadata is limited to 8 KiB by default; h2
/// would refuse far less than this. Beyond it the connection is closed rather
/// than buffered without bound.
pub const MAX_HEADER_BLOCK: usize = 1 << 20;

/// The most decoded header-list bytes (RFC 9113 §6.5.2 accounting: name +
/// value + 32 per field) kept for one block. HPACK lets a 1-byte reference
/// expand to a 4 KiB table entry, so decoded size needs its own bound; hyper's
/// server refuses lists over 16 KiB anyway.
pub const MAX_HEADER_LIST: usize = 1 << 20;

/// The dynamic-table size the server lets the client use: the default
/// SETTINGS_HEADER_TABLE_SIZE, which h2 advertises unless told otherwise and
/// tonic's server builder has no knob for. A client's size update above it is
/// an HPACK error at h2 too.
pub const SERVER_HEADER_TABLE_SIZE: usize = 4096;

/// Why a connection is closed instead of forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// A header block grew past [`MAX_HEADER_BLOCK`].
    #[error("header block on stream {stream_id} exceeds {limit} bytes")]
    HeaderBlockTooLarge { stream_id: u32, limit: usize },
    /// After a rewrite, a header block decoded to more than [`MAX_HEADER_LIST`].
    #[error("header list on stream {stream_id} decodes to more than {limit} bytes")]
    HeaderListTooLarge { stream_id: u32, limit: usize },
    /// After a rewrite, a header block failed to decode (h2 would also fail
    /// it, but can no longer be shown the client's bytes).
    #[error("header block on stream {stream_id} is not valid HPACK: {reason}")]
    Hpack { stream_id: u32, reason: String },
    /// After a rewrite, the client broke HTTP/2 framing.
    #[error("invalid HTTP/2 framing from the client: {what}")]
    Framing { what: &'static str },
}

/// Where in the byte stream we are.
#[derive(Debug)]
enum State {
    /// Matching the 24-byte connection preface; `seen` bytes matched so far.
    Preface { seen: usize },
    /// Collecting a 9-byte frame header.
    FrameHeader {
        buf: [u8; frame::HEADER_LEN],
        len: usize,
    },
    /// Streaming the payload of a frame we do not touch.
    Forward { remaining: usize },
    /// Buffering the payload of a HEADERS or CONTINUATION frame.
    Collect {
        header: FrameHeader,
        remaining: usize,
    },
    /// Not (or no longer) parsed: everything passes through.
    Opaque,
    /// A previous call failed; the connection is being torn down.
    Failed(RewriteError),
}

/// A header block being assembled from HEADERS + CONTINUATION frames.
#[derive(Debug)]
struct Block {
    stream_id: u32,
    end_stream: bool,
    /// The PRIORITY fields of the HEADERS frame, kept when re-encoding.
    priority: Option<[u8; frame::PRIORITY_LEN]>,
    /// The frames as received, forwarded as they are when nothing changes.
    raw: Vec<u8>,
    /// Where the payload of the frame being collected starts in `raw`.
    payload_start: usize,
    /// The header block fragments, padding and priority stripped.
    fragment: Vec<u8>,
}

/// Output of one [`Rewriter::feed`] call: a prefix of the input that goes out
/// unchanged (no copy), followed by whatever was appended to `out`.
struct Out<'a> {
    input: &'a [u8],
    prefix: usize,
    /// Whether the output so far is exactly `input[..prefix]`.
    contiguous: bool,
    out: &'a mut Vec<u8>,
}

impl Out<'_> {
    /// `input[start..end]` goes out unchanged.
    fn pass(&mut self, start: usize, end: usize) {
        if self.contiguous && start == self.prefix {
            self.prefix = end;
        } else {
            self.contiguous = false;
            self.out.extend_from_slice(&self.input[start..end]);
        }
    }

    /// Bytes that are not a contiguous run of this input.
    fn owned(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.contiguous = false;
            self.out.extend_from_slice(bytes);
        }
    }
}

/// The decoded fields of one header block, in one buffer.
#[derive(Debug, Default)]
struct FieldList {
    bytes: Vec<u8>,
    /// (name length, value length, never indexed), in order, packed in `bytes`.
    fields: Vec<(usize, usize, bool)>,
}

/// Field-list capacity kept between blocks; a huge block's is freed.
const KEEP_FIELD_BYTES: usize = 16 * 1024;

impl FieldList {
    fn clear(&mut self) {
        if self.bytes.capacity() > KEEP_FIELD_BYTES {
            *self = FieldList::default();
        }
        self.bytes.clear();
        self.fields.clear();
    }

    fn push(&mut self, name: &[u8], value: &[u8], never_indexed: bool) {
        self.bytes.extend_from_slice(name);
        self.bytes.extend_from_slice(value);
        self.fields.push((name.len(), value.len(), never_indexed));
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8], bool)> {
        let mut at = 0;
        self.fields.iter().map(move |&(n, v, never)| {
            let field = (
                &self.bytes[at..at + n],
                &self.bytes[at + n..at + n + v],
                never,
            );
            at += n + v;
            field
        })
    }
}

/// Per-connection state of the client→server direction.
pub struct Rewriter {
    state: State,
    /// Set by the first rewritten block; from then on every block is re-encoded.
    rewriting: bool,
    block: Option<Block>,
    /// Mirrors the client's HPACK encoder: sees every block, in order.
    decoder: hpack::Decoder,
    /// The current block's fields (kept to reuse the buffers).
    fields: FieldList,
    /// The last `:authority` found acceptable: a client sends the same one on
    /// every call, so it is checked once.
    accepted_authority: Vec<u8>,
    /// The first `:authority` we replaced (logged once, kept for tests).
    first_rewritten: Option<Vec<u8>>,
}

impl Default for Rewriter {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Rewriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rewriter")
            .field("state", &self.state)
            .field("rewriting", &self.rewriting)
            .finish_non_exhaustive()
    }
}

impl Rewriter {
    pub fn new() -> Self {
        Self {
            state: State::Preface { seen: 0 },
            rewriting: false,
            block: None,
            decoder: hpack::Decoder::new(SERVER_HEADER_TABLE_SIZE),
            fields: FieldList::default(),
            accepted_authority: Vec::new(),
            first_rewritten: None,
        }
    }

    /// The first invalid `:authority` this connection replaced, if any.
    pub fn rewritten_authority(&self) -> Option<&[u8]> {
        self.first_rewritten.as_deref()
    }

    /// Consumes `input`. What the server should see next is `input[..n]`
    /// followed by the bytes appended to `out`, where `n` is the returned
    /// length (when `out` was not empty on entry, `n` is 0). Bytes that may
    /// still need rewriting (an incomplete frame header or header block) are
    /// held back until a later call completes them.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, RewriteError> {
        if let State::Failed(e) = &self.state {
            return Err(e.clone());
        }
        let contiguous = out.is_empty();
        let mut o = Out {
            input,
            prefix: 0,
            contiguous,
            out,
        };
        match self.feed_inner(&mut o) {
            Ok(()) => Ok(o.prefix),
            Err(e) => {
                self.state = State::Failed(e.clone());
                Err(e)
            }
        }
    }

    /// The client closed its side: releases what was held back. In
    /// passthrough the server gets the client's truncated bytes as they were
    /// (it fails them as it would have); after a rewrite they are dropped.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.rewriting {
            if let Some(block) = self.block.take() {
                out.extend_from_slice(&block.raw);
            }
            if let State::FrameHeader { buf, len } = &self.state {
                out.extend_from_slice(&buf[..*len]);
            }
        }
        self.block = None;
        self.state = State::Opaque;
    }

    fn feed_inner(&mut self, o: &mut Out<'_>) -> Result<(), RewriteError> {
        let input = o.input;
        let mut pos = 0;
        while pos < input.len() {
            let avail = input.len() - pos;
            match &mut self.state {
                State::Failed(e) => return Err(e.clone()),
                State::Opaque => {
                    o.pass(pos, input.len());
                    pos = input.len();
                }
                State::Preface { seen } => {
                    let n = avail.min(frame::PREFACE.len() - *seen);
                    if input[pos..pos + n] != frame::PREFACE[*seen..*seen + n] {
                        // Not HTTP/2 with prior knowledge: let h2 say so.
                        self.state = State::Opaque;
                        continue;
                    }
                    o.pass(pos, pos + n);
                    pos += n;
                    *seen += n;
                    if *seen == frame::PREFACE.len() {
                        self.state = State::FrameHeader {
                            buf: [0; frame::HEADER_LEN],
                            len: 0,
                        };
                    }
                }
                State::FrameHeader { buf, len } => {
                    let n = avail.min(frame::HEADER_LEN - *len);
                    // Whole header inside this input: it can go out uncopied.
                    let at = (*len == 0 && n == frame::HEADER_LEN).then_some(pos);
                    buf[*len..*len + n].copy_from_slice(&input[pos..pos + n]);
                    *len += n;
                    pos += n;
                    if *len == frame::HEADER_LEN {
                        let raw = *buf;
                        self.on_frame_header(raw, at, o)?;
                    }
                }
                State::Forward { remaining } => {
                    let n = avail.min(*remaining);
                    o.pass(pos, pos + n);
                    pos += n;
                    *remaining -= n;
                    if *remaining == 0 {
                        self.state = next_frame();
                    }
                }
                State::Collect { header, remaining } => {
                    let n = avail.min(*remaining);
                    *remaining -= n;
                    let (header, done) = (*header, *remaining == 0);
                    if let Some(block) = self.block.as_mut() {
                        block.raw.extend_from_slice(&input[pos..pos + n]);
                    }
                    pos += n;
                    if done {
                        self.on_frame_complete(header, o)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A complete frame header: decide whether its frame is forwarded or
    /// collected. `at` is its offset in the current input, when it is there whole.
    fn on_frame_header(
        &mut self,
        raw: [u8; frame::HEADER_LEN],
        at: Option<usize>,
        o: &mut Out<'_>,
    ) -> Result<(), RewriteError> {
        let header = FrameHeader::parse(&raw);
        let continues_block = match (&self.block, header.ty) {
            (None, frame::TYPE_HEADERS) => false,
            (Some(b), frame::TYPE_CONTINUATION) if b.stream_id == header.stream_id => true,
            (None, frame::TYPE_CONTINUATION | frame::TYPE_PUSH_PROMISE) | (Some(_), _) => {
                // RFC 9113 §6.10 / §8.4: a connection error at the server.
                return self.give_up(&raw, at, o, "frame out of place in a header block");
            }
            (None, _) => {
                // DATA, SETTINGS, PING, WINDOW_UPDATE, RST_STREAM, GOAWAY,
                // PRIORITY, unknown types: untouched.
                match at {
                    Some(start) => o.pass(start, start + frame::HEADER_LEN),
                    None => o.owned(&raw),
                }
                self.state = if header.len == 0 {
                    next_frame()
                } else {
                    State::Forward {
                        remaining: header.len,
                    }
                };
                return Ok(());
            }
        };
        let buffered = self.block.as_ref().map_or(0, |b| b.raw.len());
        if buffered + frame::HEADER_LEN + header.len > MAX_HEADER_BLOCK {
            return Err(RewriteError::HeaderBlockTooLarge {
                stream_id: header.stream_id,
                limit: MAX_HEADER_BLOCK,
            });
        }
        let block = match (&mut self.block, continues_block) {
            (Some(block), true) => block,
            _ => self.block.insert(Block {
                stream_id: header.stream_id,
                end_stream: header.has(frame::FLAG_END_STREAM),
                priority: None,
                raw: Vec::new(),
                payload_start: 0,
                fragment: Vec::new(),
            }),
        };
        block.raw.extend_from_slice(&raw);
        block.payload_start = block.raw.len();
        self.state = State::Collect {
            header,
            remaining: header.len,
        };
        if header.len == 0 {
            self.on_frame_complete(header, o)?;
        }
        Ok(())
    }

    /// The payload of a HEADERS or CONTINUATION frame is complete.
    fn on_frame_complete(
        &mut self,
        header: FrameHeader,
        o: &mut Out<'_>,
    ) -> Result<(), RewriteError> {
        self.state = next_frame();
        let Some(block) = self.block.as_mut() else {
            return Ok(());
        };
        let mut payload = &block.raw[block.payload_start..];
        if header.ty == frame::TYPE_HEADERS {
            let mut pad = 0;
            if header.has(frame::FLAG_PADDED) {
                let Some((&n, rest)) = payload.split_first() else {
                    return self.give_up(&[], None, o, "PADDED HEADERS frame without a pad length");
                };
                pad = usize::from(n);
                payload = rest;
            }
            if header.has(frame::FLAG_PRIORITY) {
                let Some((prio, rest)) = payload.split_first_chunk::<{ frame::PRIORITY_LEN }>()
                else {
                    return self.give_up(&[], None, o, "HEADERS frame too short for PRIORITY");
                };
                block.priority = Some(*prio);
                payload = rest;
            }
            if pad > payload.len() {
                return self.give_up(&[], None, o, "HEADERS padding longer than the payload");
            }
            payload = &payload[..payload.len() - pad];
        }
        block.fragment.extend_from_slice(payload);
        if header.has(frame::FLAG_END_HEADERS) {
            self.on_block_complete(o)?;
        }
        Ok(())
    }

    /// A whole header block: decode it (always, to track the client's
    /// table) and forward it as received or re-encoded.
    fn on_block_complete(&mut self, o: &mut Out<'_>) -> Result<(), RewriteError> {
        let Some(block) = self.block.take() else {
            return Ok(());
        };
        let fields = &mut self.fields;
        fields.clear();
        let mut list_size = 0usize;
        let decoded = self
            .decoder
            .decode(&block.fragment, |name, value, never_indexed| {
                // Keep decoding past the bound (the table must stay in step)
                // but stop keeping fields.
                list_size = list_size.saturating_add(name.len() + value.len() + 32);
                if list_size <= MAX_HEADER_LIST {
                    fields.push(name, value, never_indexed);
                }
            });
        if let Err(e) = decoded {
            if !self.rewriting {
                // h2 fails the same bytes with COMPRESSION_ERROR; show it them.
                tracing::debug!(error = %e, "uds: undecodable header block, passing the connection through");
                o.owned(&block.raw);
                self.state = State::Opaque;
                return Ok(());
            }
            return Err(RewriteError::Hpack {
                stream_id: block.stream_id,
                reason: e.to_string(),
            });
        }
        if list_size > MAX_HEADER_LIST {
            if self.rewriting {
                return Err(RewriteError::HeaderListTooLarge {
                    stream_id: block.stream_id,
                    limit: MAX_HEADER_LIST,
                });
            }
            // h2 refuses the stream for its size whatever its authority;
            // the tables are still in step, so let it see the original.
            o.owned(&block.raw);
            return Ok(());
        }
        let mut bad = None;
        for (name, value, _) in self.fields.iter() {
            if name != b":authority" || value == self.accepted_authority.as_slice() {
                continue;
            }
            if is_valid_authority(value) {
                self.accepted_authority.clear();
                self.accepted_authority.extend_from_slice(value);
            } else {
                bad.get_or_insert(value);
            }
        }
        if let Some(original) = bad
            && self.first_rewritten.is_none()
        {
            tracing::debug!(
                original = %String::from_utf8_lossy(original),
                replacement = REPLACEMENT_AUTHORITY,
                stream_id = block.stream_id,
                "uds: client sent an :authority that h2 rejects; re-encoding its header blocks from here on"
            );
            self.first_rewritten = Some(original.to_vec());
        }
        if !self.rewriting && bad.is_none() {
            o.owned(&block.raw);
            return Ok(());
        }
        self.rewriting = true;
        let mut encoded = Vec::with_capacity(block.fragment.len() + 16);
        for (name, value, never_indexed) in self.fields.iter() {
            let replace = name == b":authority"
                && value != self.accepted_authority.as_slice()
                && !is_valid_authority(value);
            let value: &[u8] = if replace {
                REPLACEMENT_AUTHORITY.as_bytes()
            } else {
                value
            };
            hpack::encode_field(&mut encoded, name, value, never_indexed);
        }
        let mut frames = Vec::with_capacity(encoded.len() + 2 * frame::HEADER_LEN);
        frame::write_header_block(
            &mut frames,
            block.stream_id,
            block.end_stream,
            block.priority,
            &encoded,
            frame::DEFAULT_MAX_FRAME_SIZE,
        );
        o.owned(&frames);
        Ok(())
    }

    /// The client broke framing. In passthrough, hand h2 everything as it
    /// came (held bytes first) and stop parsing; after a rewrite, fail.
    fn give_up(
        &mut self,
        raw_header: &[u8],
        at: Option<usize>,
        o: &mut Out<'_>,
        what: &'static str,
    ) -> Result<(), RewriteError> {
        if self.rewriting {
            return Err(RewriteError::Framing { what });
        }
        tracing::debug!(
            what,
            "uds: client broke HTTP/2 framing, passing the connection through"
        );
        if let Some(block) = self.block.take() {
            o.owned(&block.raw);
        }
        match at {
            Some(start) => o.pass(start, start + raw_header.len()),
            None => o.owned(raw_header),
        }
        self.state = State::Opaque;
        Ok(())
    }
}

fn next_frame() -> State {
    State::FrameHeader {
        buf: [0; frame::HEADER_LEN],
        len: 0,
    }
}

/// Whether h2's server would accept `value` as `:authority`: h2 parses it
/// with `http::uri::Authority` and resets the stream with PROTOCOL_ERROR when
/// that fails (h2 `server.rs`, "malformed authority").
pub fn is_valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}
