//! A tiny HPACK encoder (RFC 7541) that never touches the peer's dynamic table.
//!
//! Once the shim has rewritten one header block, the server's dynamic table
//! no longer matches the client's, so every later block is re-encoded here.
//! Each field becomes a "literal header field without indexing" (§6.2.2), or
//! "never indexed" (§6.2.3) when the client sent it so, as an intermediary
//! must: the server decodes it without inserting anything, so its table
//! stays frozen at the state before the first rewrite and nothing we send can
//! ever refer to an entry it lacks. Names found in the static table are sent
//! as a static index (cheap and state-free); strings go out raw (no Huffman:
//! Unix-socket bytes are cheap and the code stays small).

use super::STATIC_TABLE;

/// The static-table index of `name`, if the table has it.
fn static_name_index(name: &[u8]) -> Option<usize> {
    STATIC_TABLE
        .iter()
        .position(|(n, _)| *n == name)
        .map(|i| i + 1)
}

/// Appends `value` as an HPACK integer with an `prefix_bits`-bit prefix
/// (§5.1); `high` carries the representation's bits above the prefix.
pub(crate) fn encode_int(out: &mut Vec<u8>, value: usize, prefix_bits: u8, high: u8) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        // Fits the prefix; `value < max <= 255` so the cast is lossless.
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Appends a raw (non-Huffman) string literal (§5.2).
pub(crate) fn encode_str(out: &mut Vec<u8>, s: &[u8]) {
    encode_int(out, s.len(), 7, 0);
    out.extend_from_slice(s);
}

/// Appends one "literal header field without indexing" (§6.2.2), or "never
/// indexed" (§6.2.3) when `never_indexed`.
pub(crate) fn encode_field(out: &mut Vec<u8>, name: &[u8], value: &[u8], never_indexed: bool) {
    let high = if never_indexed { 0x10 } else { 0x00 };
    match static_name_index(name) {
        Some(index) => encode_int(out, index, 4, high),
        None => {
            out.push(high);
            encode_str(out, name);
        }
    }
    encode_str(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_match_the_rfc_examples() {
        // RFC 7541 C.1.1–C.1.3.
        let mut out = Vec::new();
        encode_int(&mut out, 10, 5, 0);
        assert_eq!(out, [0x0a]);
        out.clear();
        encode_int(&mut out, 1337, 5, 0);
        assert_eq!(out, [0x1f, 0x9a, 0x0a]);
        out.clear();
        encode_int(&mut out, 42, 8, 0);
        assert_eq!(out, [0x2a]);
        out.clear();
        encode_int(&mut out, 15, 4, 0);
        assert_eq!(out, [0x0f, 0x00]);
    }

    #[test]
    fn encoded_fields_decode_without_touching_the_dynamic_table() {
        let fields: [(&[u8], &[u8]); 4] = [
            (b":authority", b"localhost"),
            (b"te", b"trailers"),
            (b"user-agent", &[b'x'; 300]),
            (b"x-long-name-that-is-not-static", b""),
        ];
        let mut block = Vec::new();
        for (i, (n, v)) in fields.into_iter().enumerate() {
            encode_field(&mut block, n, v, i == 2);
        }
        // Starts with ":authority" as static index 1, 4-bit prefix, no indexing.
        assert_eq!(block[0], 0x01);
        // The third (user-agent, static 58) is never indexed: 0001 + 15, then 43.
        let third = (1 + 1 + 9) + (1 + 1 + 2 + 1 + 8);
        assert_eq!(&block[third..third + 2], [0x1f, 58 - 15]);
        let mut decoder = loona_hpack::Decoder::new();
        let decoded = decoder.decode(&block).expect("decodes");
        let want: Vec<(Vec<u8>, Vec<u8>)> = fields
            .iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(decoded, want);
        // Decoding again gives the same list: nothing was indexed.
        assert_eq!(decoder.decode(&block).expect("decodes"), want);
        // Index 62 would be the first dynamic entry; it must not exist.
        assert!(decoder.decode(&[0xbe]).is_err());
    }
}
