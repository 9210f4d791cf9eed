//! The few pieces of HTTP/2 framing (RFC 9113 §4.1, §6) the shim needs.

/// What a client sends first on a prior-knowledge HTTP/2 connection (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Every frame starts with a 9-byte header: length (24 bits), type, flags, stream id.
pub(crate) const HEADER_LEN: usize = 9;

/// The initial SETTINGS_MAX_FRAME_SIZE, which every peer must accept. The
/// client cannot raise what the server accepts, so frames we write stay at or
/// under it whatever the server advertised.
pub(crate) const DEFAULT_MAX_FRAME_SIZE: usize = 16_384;

pub(crate) const TYPE_HEADERS: u8 = 0x1;
pub(crate) const TYPE_PUSH_PROMISE: u8 = 0x5;
pub(crate) const TYPE_CONTINUATION: u8 = 0x9;

pub(crate) const FLAG_END_STREAM: u8 = 0x1;
pub(crate) const FLAG_END_HEADERS: u8 = 0x4;
pub(crate) const FLAG_PADDED: u8 = 0x8;
pub(crate) const FLAG_PRIORITY: u8 = 0x20;

/// Length of the PRIORITY fields in a HEADERS frame (stream dependency + weight).
pub(crate) const PRIORITY_LEN: usize = 5;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    /// Payload length in bytes.
    pub len: usize,
    pub ty: u8,
    pub flags: u8,
    /// The stream id, reserved bit cleared.
    pub stream_id: u32,
}

impl FrameHeader {
    pub(crate) fn parse(b: &[u8; HEADER_LEN]) -> Self {
        Self {
            len: usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]),
            ty: b[3],
            flags: b[4],
            stream_id: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Appends a frame header. `len` must fit 24 bits (callers keep it at or
/// under [`DEFAULT_MAX_FRAME_SIZE`]).
pub(crate) fn write_header(out: &mut Vec<u8>, len: usize, ty: u8, flags: u8, stream_id: u32) {
    debug_assert!(len < 1 << 24);
    let len = len.to_be_bytes();
    out.extend_from_slice(&len[len.len() - 3..]);
    out.push(ty);
    out.push(flags);
    out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
}

/// Writes a header block as one HEADERS frame followed by as many
/// CONTINUATION frames as needed so that no payload exceeds `max_frame`.
/// `end_stream` and the PRIORITY fields belong to the HEADERS frame; padding
/// is never written (it only hides lengths, and the server drops it).
pub(crate) fn write_header_block(
    out: &mut Vec<u8>,
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_LEN]>,
    block: &[u8],
    max_frame: usize,
) {
    let prio_len = if priority.is_some() { PRIORITY_LEN } else { 0 };
    let first = block.len().min(max_frame - prio_len);
    let (head, mut rest) = block.split_at(first);
    let mut flags = 0;
    if end_stream {
        flags |= FLAG_END_STREAM;
    }
    if priority.is_some() {
        flags |= FLAG_PRIORITY;
    }
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    write_header(out, prio_len + head.len(), TYPE_HEADERS, flags, stream_id);
    if let Some(p) = priority {
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(head);
    while !rest.is_empty() {
        let n = rest.len().min(max_frame);
        let (chunk, tail) = rest.split_at(n);
        let flags = if tail.is_empty() { FLAG_END_HEADERS } else { 0 };
        write_header(out, chunk.len(), TYPE_CONTINUATION, flags, stream_id);
        out.extend_from_slice(chunk);
        rest = tail;
    }
}
