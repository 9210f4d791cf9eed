//! Unit tests of the shim: the rewriter as a pure function of the byte
//! stream, checked against an independent "server view" (frames parsed and
//! decoded the way h2 would, with a fresh HPACK decoder as the server's).

use loona_hpack::{Decoder, Encoder};

use super::frame::{
    FLAG_END_HEADERS, FLAG_END_STREAM, FLAG_PADDED, FLAG_PRIORITY, PREFACE, TYPE_CONTINUATION,
    TYPE_HEADERS,
};
use super::hpack::{encode_int, encode_str};
use super::{MAX_HEADER_BLOCK, RewriteError, Rewriter};

mod properties;
mod tables;

type Field = (Vec<u8>, Vec<u8>);

/// The first request grpcio 1.85.3 sends for `unix:/tmp/x/runtime.sock`
/// with default options (captured from the wire): literal fields with
/// incremental indexing and literal names, no Huffman, `:authority` =
/// `tmp%2Fx%2Fruntime.sock`.
const GRPCIO_FIRST: &str = "40053a70617468222f766973696f6e2e76312e4d6f64656c52756e74696d652f4c6973744c6f61646564400a3a617574686f7269747916746d702532467825324672756e74696d652e736f636b8386400c636f6e74656e742d74797065106170706c69636174696f6e2f677270634002746508747261696c6572734014677270632d6163636570742d656e636f64696e67176964656e746974792c206465666c6174652c20677a6970400c677270632d74696d656f7574023153400a757365722d6167656e7430677270632d707974686f6e2f312e38352e3320677270632d632f35382e302e3020286c696e75783b2063687474703229";
/// Its second request on the same connection: almost all references to
/// entries the first one put in the dynamic table.
const GRPCIO_SECOND: &str = "c4c38386c2c1c0400c677270632d74696d656f757405313031306dbf";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    super::frame::write_header(&mut f, payload.len(), ty, flags, stream);
    f.extend_from_slice(payload);
    f
}

fn headers(stream: u32, flags: u8, block: &[u8]) -> Vec<u8> {
    frame(TYPE_HEADERS, flags | FLAG_END_HEADERS, stream, block)
}

/// Preface and an empty SETTINGS frame, then `frames`.
fn connection(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut c = PREFACE.to_vec();
    c.extend(frame(0x4, 0, 0, &[]));
    for f in frames {
        c.extend_from_slice(f);
    }
    c
}

/// Feeds `input` cut at `cuts`; returns what the server would read.
fn run_split(input: &[u8], cuts: &[usize]) -> Result<Vec<u8>, RewriteError> {
    let mut r = Rewriter::new();
    let mut seen = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let cut = cut.clamp(start, input.len());
        let chunk = &input[start..cut];
        let mut out = Vec::new();
        let n = r.feed(chunk, &mut out)?;
        seen.extend_from_slice(&chunk[..n]);
        seen.extend(out);
        start = cut;
    }
    Ok(seen)
}

fn run(input: &[u8]) -> Vec<u8> {
    run_split(input, &[]).expect("rewriter accepts the input")
}

/// A header block as h2 sees it.
#[derive(Debug, PartialEq)]
struct Seen {
    stream: u32,
    end_stream: bool,
    priority: Option<Vec<u8>>,
    fields: Vec<Field>,
}

/// Parses the server-side byte stream like h2 does and decodes every header
/// block with one decoder: the server's dynamic table.
fn server_view(bytes: &[u8]) -> Vec<Seen> {
    assert!(bytes.starts_with(PREFACE), "preface kept");
    let mut rest = &bytes[PREFACE.len()..];
    let mut decoder = Decoder::new();
    decoder.set_max_allowed_table_size(4096);
    let mut seen = Vec::new();
    let mut open: Option<(Seen, Vec<u8>)> = None;
    while !rest.is_empty() {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        let (ty, flags) = (rest[3], rest[4]);
        let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]);
        assert!(
            len <= 16_384,
            "frame of {len} bytes exceeds the default max frame size"
        );
        let mut payload = &rest[9..9 + len];
        rest = &rest[9 + len..];
        match ty {
            TYPE_HEADERS => {
                assert!(open.is_none(), "HEADERS inside a header block");
                let mut pad = 0;
                if flags & FLAG_PADDED != 0 {
                    pad = usize::from(payload[0]);
                    payload = &payload[1..];
                }
                let mut priority = None;
                if flags & FLAG_PRIORITY != 0 {
                    priority = Some(payload[..5].to_vec());
                    payload = &payload[5..];
                }
                let fragment = payload[..payload.len() - pad].to_vec();
                let block = Seen {
                    stream,
                    end_stream: flags & FLAG_END_STREAM != 0,
                    priority,
                    fields: Vec::new(),
                };
                open = Some((block, fragment));
            }
            TYPE_CONTINUATION => {
                let (block, fragment) = open.as_mut().expect("CONTINUATION without HEADERS");
                assert_eq!(block.stream, stream);
                fragment.extend_from_slice(payload);
            }
            _ => {
                assert!(open.is_none(), "frame type {ty} inside a header block");
                continue;
            }
        }
        if flags & FLAG_END_HEADERS != 0 {
            let (mut block, fragment) = open.take().expect("open block");
            block.fields = decoder.decode(&fragment).expect("server decodes the block");
            seen.push(block);
        }
    }
    assert!(open.is_none(), "unterminated header block");
    seen
}

fn fields(list: &[(&str, &str)]) -> Vec<Field> {
    list.iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

/// `list` with every `:authority` set to `localhost`.
fn fixed(list: &[Field]) -> Vec<Field> {
    list.iter()
        .map(|(n, v)| {
            let v = if n == b":authority" {
                b"localhost".to_vec()
            } else {
                v.clone()
            };
            (n.clone(), v)
        })
        .collect()
}

fn authority_of(list: &[Field]) -> &[u8] {
    &list
        .iter()
        .find(|(n, _)| n == b":authority")
        .expect(":authority")
        .1
}

/// Literal with incremental indexing, new name (what grpcio sends).
fn lit_indexed(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(0x40);
    encode_str(out, name.as_bytes());
    encode_str(out, value);
}

/// Minimal Huffman encoder (RFC 7541 Appendix B) for the characters used here.
fn huffman(s: &str) -> Vec<u8> {
    let (mut acc, mut bits, mut out) = (0u64, 0u32, Vec::new());
    for c in s.chars() {
        let (code, len) = match c {
            '/' => (0x18, 6),
            '.' => (0x17, 6),
            'a' => (0x03, 5),
            'c' => (0x04, 5),
            'k' => (0x75, 7),
            'm' => (0x29, 6),
            'o' => (0x07, 5),
            'p' => (0x2b, 6),
            's' => (0x08, 5),
            't' => (0x09, 5),
            _ => panic!("no Huffman code for {c:?} in this test table"),
        };
        acc = acc << len | code;
        bits += len;
        while bits >= 8 {
            out.push((acc >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    if bits > 0 {
        // Pad with the most significant bits of EOS (all ones).
        out.push(((acc << (8 - bits)) | ((1 << (8 - bits)) - 1)) as u8);
    }
    out
}

#[test]
fn grpcio_path_authority_becomes_localhost_and_other_fields_keep_their_order() {
    let block = hex(GRPCIO_FIRST);
    let client = Decoder::new().decode(&block).expect("fixture decodes");
    assert_eq!(authority_of(&client), b"tmp%2Fx%2Fruntime.sock");
    let data = frame(0x0, FLAG_END_STREAM, 1, &[0, 0, 0, 0, 0]);
    let input = connection(&[headers(1, 0, &block), data.clone()]);

    let output = run(&input);

    assert_ne!(output, input);
    let view = server_view(&output);
    assert_eq!(view.len(), 1);
    assert_eq!(view[0].fields, fixed(&client));
    assert_eq!(
        view[0].fields[1],
        (b":authority".to_vec(), b"localhost".to_vec())
    );
    assert!(output.ends_with(&data), "DATA after the block is untouched");
}

#[test]
fn a_second_grpcio_request_that_refers_to_its_dynamic_table_is_reencoded() {
    let (first, second) = (hex(GRPCIO_FIRST), hex(GRPCIO_SECOND));
    let mut client = Decoder::new();
    let want = [
        fixed(&client.decode(&first).expect("decodes")),
        fixed(&client.decode(&second).expect("decodes")),
    ];
    let input = connection(&[headers(1, 0, &first), headers(3, 0, &second)]);

    let view = server_view(&run(&input));

    assert_eq!(view.iter().map(|s| s.stream).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(view[0].fields, want[0]);
    assert_eq!(view[1].fields, want[1]);
}

#[test]
fn a_huffman_encoded_path_authority_is_rewritten() {
    let mut block = vec![0x83, 0x86, 0x84]; // POST, http, /
    block.push(0x01); // literal without indexing, name = static 1 (:authority)
    let h = huffman("/tmp/a.sock");
    encode_int(&mut block, h.len(), 7, 0x80);
    block.extend_from_slice(&h);
    let client = Decoder::new().decode(&block).expect("Huffman decodes");
    assert_eq!(authority_of(&client), b"/tmp/a.sock");

    let view = server_view(&run(&connection(&[headers(1, 0, &block)])));

    assert_eq!(view[0].fields, fixed(&client));
}

#[test]
fn an_authority_built_from_an_earlier_blocks_dynamic_entry_is_rewritten() {
    // Block 1 is valid and indexes `:authority: localhost` (dynamic 62).
    let first = [&[0x83, 0x86, 0x84, 0x41][..], b"\x09localhost"].concat();
    // Block 2 takes the name from that entry with a path value, indexed too
    // (it becomes 62, the first entry moves to 63).
    let mut second = vec![0x83, 0x86, 0x84];
    encode_int(&mut second, 62, 6, 0x40);
    encode_str(&mut second, b"/run/vision/agent.sock");
    // Block 3 refers to both entries by index.
    let third = [0x83, 0x86, 0x84, 0xbe, 0xbf];
    let mut client = Decoder::new();
    let lists: Vec<Vec<Field>> = [&first[..], &second, &third]
        .iter()
        .map(|b| client.decode(b).expect("decodes"))
        .collect();
    assert_eq!(authority_of(&lists[1]), b"/run/vision/agent.sock");

    let h1 = headers(1, 0, &first);
    let input = connection(&[h1.clone(), headers(3, 0, &second), headers(5, 0, &third)]);
    let output = run(&input);

    // The valid block went through byte for byte, before anything changed.
    let unchanged = connection(std::slice::from_ref(&h1));
    assert_eq!(&output[..unchanged.len()], &unchanged[..]);
    let view = server_view(&output);
    assert_eq!(view[0].fields, lists[0]);
    assert_eq!(view[1].fields, fixed(&lists[1]));
    assert_eq!(view[2].fields, fixed(&lists[2]));
    assert_eq!(
        &view[2].fields[3..],
        fields(&[(":authority", "localhost"), (":authority", "localhost")])
    );
}

#[test]
fn continuation_frames_are_assembled_even_when_the_authority_spans_them() {
    let block = hex(GRPCIO_FIRST);
    let client = Decoder::new().decode(&block).expect("decodes");
    // Cut inside the authority value and again further on.
    let (a, rest) = block.split_at(50);
    let (b, c) = rest.split_at(100);
    let input = connection(&[
        frame(TYPE_HEADERS, FLAG_END_STREAM, 1, a),
        frame(TYPE_CONTINUATION, 0, 1, b),
        frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, c),
    ]);

    let view = server_view(&run(&input));

    assert_eq!(view.len(), 1);
    assert!(view[0].end_stream);
    assert_eq!(view[0].fields, fixed(&client));
}

#[test]
fn padded_and_priority_headers_are_understood_and_priority_is_kept() {
    let block = hex(GRPCIO_FIRST);
    let client = Decoder::new().decode(&block).expect("decodes");
    let prio = [0x80, 0, 0, 0, 0x0f]; // exclusive, depends on 0, weight 16
    let mut payload = vec![7]; // pad length
    payload.extend_from_slice(&prio);
    payload.extend_from_slice(&block);
    payload.extend_from_slice(&[0; 7]);
    let input = connection(&[headers(1, FLAG_PADDED | FLAG_PRIORITY, &payload)]);

    let output = run(&input);
    let view = server_view(&output);

    assert_eq!(view[0].fields, fixed(&client));
    assert_eq!(view[0].priority.as_deref(), Some(&prio[..]));
}

#[test]
fn a_valid_authority_connection_passes_through_byte_identical() {
    // What a tonic-like client sends: indexed pseudo-headers, loona's
    // encoder (which indexes new fields), requests reusing the table.
    let mut enc = Encoder::new();
    let mut frames = vec![frame(0x8, 0, 0, &[0, 1, 0, 0])]; // WINDOW_UPDATE
    for (i, id) in [1u32, 3, 5].into_iter().enumerate() {
        let rid = format!("req-{i}");
        let list = fields(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/vision.v1.ModelRuntime/ListLoaded"),
            (":authority", "localhost"),
            ("te", "trailers"),
            ("x-request-id", &rid),
        ]);
        frames.push(headers(
            id,
            0,
            &enc.encode(list.iter().map(|(n, v)| (&n[..], &v[..]))),
        ));
        frames.push(frame(0x0, FLAG_END_STREAM, id, &[0, 0, 0, 0, 0]));
        frames.push(frame(0x6, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8])); // PING
    }
    let input = connection(&frames);

    assert_eq!(run(&input), input);
    let mut r = Rewriter::new();
    let mut out = Vec::new();
    let n = r.feed(&input, &mut out).expect("accepted");
    assert_eq!([&input[..n], &out].concat(), input);
    assert!(r.rewritten_authority().is_none());
}

#[test]
fn frames_other_than_header_blocks_are_handed_over_without_a_copy() {
    let input = connection(&[
        frame(0x8, 0, 0, &[0, 1, 0, 0]),
        frame(0x0, 0, 1, &[0xab; 20_000]),
        frame(0x6, 0, 0, &[0; 8]),
    ]);
    let mut r = Rewriter::new();
    let mut out = Vec::new();
    assert_eq!(r.feed(&input, &mut out), Ok(input.len()));
    assert!(out.is_empty());
    // A DATA payload split across reads streams through as well.
    let more = frame(0x0, 0, 1, &[0xcd; 100]);
    assert_eq!(r.feed(&more[..50], &mut out), Ok(50));
    assert_eq!(r.feed(&more[50..], &mut out), Ok(more.len() - 50));
    assert!(out.is_empty());
}

#[test]
fn after_a_rewrite_every_later_block_decodes_to_the_clients_list() {
    // loona's encoder indexes each new field, so later requests refer to a
    // table the server never saw (the first block was re-encoded).
    let mut enc = Encoder::new();
    let mut want = Vec::new();
    let mut frames = Vec::new();
    for i in 0..40u32 {
        let authority = if i % 7 == 3 {
            "localhost"
        } else {
            "/run/vision/agent.sock"
        };
        let tag = format!("tag-{}", i % 5);
        let big = "v".repeat(100 + (i as usize * 37) % 900);
        let list = fields(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/vision.v1.Admission/Admit"),
            (":authority", authority),
            ("x-tag", &tag),
            ("x-big", &big),
            ("te", "trailers"),
        ]);
        let block = enc.encode(list.iter().map(|(n, v)| (&n[..], &v[..])));
        frames.push(headers(2 * i + 1, FLAG_END_STREAM, &block));
        want.push(fixed(&list));
    }

    let view = server_view(&run(&connection(&frames)));

    let got: Vec<Vec<Field>> = view.into_iter().map(|s| s.fields).collect();
    assert_eq!(got, want);
}

#[test]
fn a_rewritten_block_larger_than_a_frame_is_split_into_continuations() {
    let mut block = vec![0x83, 0x86, 0x84];
    lit_indexed(&mut block, ":authority", b"/tmp/big.sock");
    lit_indexed(&mut block, "x-huge", &[b'h'; 40_000]);
    let client = Decoder::new().decode(&block).expect("decodes");
    // The client itself splits the block at 16 KiB.
    let (a, rest) = block.split_at(16_384);
    let (b, c) = rest.split_at(16_384);
    let input = connection(&[
        frame(TYPE_HEADERS, FLAG_END_STREAM, 1, a),
        frame(TYPE_CONTINUATION, 0, 1, b),
        frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, c),
    ]);

    let output = run(&input);
    let view = server_view(&output); // asserts every frame <= 16384

    assert_eq!(view[0].fields, fixed(&client));
    assert!(view[0].end_stream);
}

#[test]
fn dynamic_table_size_updates_are_followed() {
    // Rewrite first, then the client shrinks its table to 0 (evicting all),
    // grows it back and indexes anew; later references must resolve to the
    // new entries.
    let mut first = vec![0x83, 0x86, 0x84];
    lit_indexed(&mut first, ":authority", b"/a.sock");
    let mut second = vec![0x20, 0x3f, 0xe1, 0x1f, 0x83, 0x86, 0x84]; // size 0, size 4096
    lit_indexed(&mut second, ":authority", b"/b.sock");
    let third = [0x83, 0x86, 0x84, 0xbe];
    let mut client = Decoder::new();
    client.set_max_allowed_table_size(4096);
    let lists: Vec<Vec<Field>> = [&first[..], &second, &third]
        .iter()
        .map(|b| client.decode(b).expect("decodes"))
        .collect();
    assert_eq!(authority_of(&lists[2]), b"/b.sock");
    let input = connection(&[
        headers(1, 0, &first),
        headers(3, 0, &second),
        headers(5, 0, &third),
    ]);

    let view = server_view(&run(&input));

    let got: Vec<Vec<Field>> = view.into_iter().map(|s| s.fields).collect();
    assert_eq!(got, lists.iter().map(|l| fixed(l)).collect::<Vec<_>>());
}

#[test]
fn a_header_block_over_the_cap_is_refused_before_it_is_buffered() {
    let mut input = connection(&[]);
    // A HEADERS frame header announcing 2 MiB; no payload needs to follow.
    super::frame::write_header(&mut input, 2 << 20, TYPE_HEADERS, 0, 1);
    assert_eq!(
        run_split(&input, &[]),
        Err(RewriteError::HeaderBlockTooLarge {
            stream_id: 1,
            limit: MAX_HEADER_BLOCK
        })
    );
    // Many CONTINUATION frames add up to the same.
    let chunk = vec![0u8; 16_384];
    let mut frames = vec![frame(TYPE_HEADERS, 0, 1, &chunk)];
    frames.extend((0..70).map(|_| frame(TYPE_CONTINUATION, 0, 1, &chunk)));
    let mut r = Rewriter::new();
    let err = r.feed(&connection(&frames), &mut Vec::new());
    assert!(matches!(err, Err(RewriteError::HeaderBlockTooLarge { .. })));
    // And it stays failed.
    assert_eq!(r.feed(b"x", &mut Vec::new()), err.map(|_| 0));
}

#[test]
fn a_client_that_is_not_http2_passes_through_untouched() {
    let input = b"GET / HTTP/1.1\r\nHost: /tmp/x.sock\r\n\r\n".to_vec();
    assert_eq!(run(&input), input);
    let almost = [&PREFACE[..10], b"garbage, and more garbage"].concat();
    assert_eq!(run_split(&almost, &[3, 12]), Ok(almost.clone()));
}

#[test]
fn an_undecodable_block_before_any_rewrite_reaches_h2_as_sent() {
    // Index 70 is not in any table: h2 answers COMPRESSION_ERROR itself.
    let bad = headers(1, 0, &[0x80 | 70]);
    let mut later = vec![0x83];
    lit_indexed(&mut later, ":authority", b"/x.sock");
    let input = connection(&[bad, headers(3, 0, &later)]);
    assert_eq!(run(&input), input, "passed through, then no longer parsed");
}

#[test]
fn an_undecodable_block_after_a_rewrite_closes_the_connection() {
    let input = connection(&[
        headers(1, 0, &hex(GRPCIO_FIRST)),
        headers(3, 0, &[0x80 | 90]),
    ]);
    assert!(matches!(
        run_split(&input, &[]),
        Err(RewriteError::Hpack { stream_id: 3, .. })
    ));
}

#[test]
fn a_frame_out_of_place_in_a_header_block_is_for_h2_to_reject_until_a_rewrite() {
    let open = frame(TYPE_HEADERS, 0, 1, &[0x83]);
    let data = frame(0x0, 0, 1, &[1, 2, 3]);
    let input = connection(&[open.clone(), data.clone()]);
    assert_eq!(run(&input), input);

    let input = connection(&[headers(1, 0, &hex(GRPCIO_FIRST)), open, data]);
    assert_eq!(
        run_split(&input, &[]),
        Err(RewriteError::Framing {
            what: "frame out of place in a header block"
        })
    );
}

#[test]
fn bytes_held_back_at_end_of_stream_are_released_before_a_rewrite() {
    let input = [&connection(&[])[..], &[0, 0, 9, 1, 4]].concat(); // half a frame header
    let mut r = Rewriter::new();
    let mut out = Vec::new();
    let n = r.feed(&input, &mut out).expect("fine so far");
    assert_eq!(n, input.len() - 5);
    r.finish(&mut out);
    assert_eq!(out, [0, 0, 9, 1, 4]);
}
