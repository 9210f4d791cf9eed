//! A tiny HPACK encoder (RFC 7541) that never touches the peer's dynamic table.
//!
//! Once the shim has rewritten one header block, the server's dynamic table
//! no longer matches the client's, so every later block is re-encoded here.
//! Each field becomes a "literal header field without indexing" (§6.2.2):
//! the server decodes it without inserting anything, so its table stays
//! frozen at the state before the first rewrite and nothing we send can ever
//! refer to an entry it lacks. Names found in the static table are sent as a
//! static index (cheap and state-free); strings go out raw (no Huffman:
//! Unix-socket bytes are cheap and the code stays small).
//!
//! Fields the client sent "never indexed" (§6.2.3) come out "without
//! indexing": the decoder we use does not report the representation, and the
//! receiver is the in-process h2 server, the last hop, which treats both the
//! same (its decoder does not track the distinction either).

/// Names of the static table (RFC 7541 Appendix A), index = position + 1.
const STATIC_NAMES: [&[u8]; 61] = [
    b":authority",
    b":method",
    b":method",
    b":path",
    b":path",
    b":scheme",
    b":scheme",
    b":status",
    b":status",
    b":status",
    b":status",
    b":status",
    b":status",
    b":status",
    b"accept-charset",
    b"accept-encoding",
    b"accept-language",
    b"accept-ranges",
    b"accept",
    b"access-control-allow-origin",
    b"age",
    b"allow",
    b"authorization",
    b"cache-control",
    b"content-disposition",
    b"content-encoding",
    b"content-language",
    b"content-length",
    b"content-location",
    b"content-range",
    b"content-type",
    b"cookie",
    b"date",
    b"etag",
    b"expect",
    b"expires",
    b"from",
    b"host",
    b"if-match",
    b"if-modified-since",
    b"if-none-match",
    b"if-range",
    b"if-unmodified-since",
    b"last-modified",
    b"link",
    b"location",
    b"max-forwards",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"range",
    b"referer",
    b"refresh",
    b"retry-after",
    b"server",
    b"set-cookie",
    b"strict-transport-security",
    b"transfer-encoding",
    b"user-agent",
    b"vary",
    b"via",
    b"www-authenticate",
];

/// The static-table index of `name`, if the table has it.
fn static_name_index(name: &[u8]) -> Option<usize> {
    STATIC_NAMES.iter().position(|n| *n == name).map(|i| i + 1)
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

/// Appends one "literal header field without indexing" (§6.2.2).
pub(crate) fn encode_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    match static_name_index(name) {
        Some(index) => encode_int(out, index, 4, 0x00),
        None => {
            out.push(0x00);
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
        for (n, v) in fields {
            encode_field(&mut block, n, v);
        }
        // Starts with ":authority" as static index 1, 4-bit prefix, no indexing.
        assert_eq!(block[0], 0x01);
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
