//! The decoder against RFC 7541's examples and against `loona-hpack` as an
//! independent oracle.

use proptest::prelude::*;

use super::super::encode::{encode_int, encode_str};
use super::super::huffman::tests::encode as huffman_encode;
use super::*;

type Field = (Vec<u8>, Vec<u8>);

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn decode_all(d: &mut Decoder, block: &[u8]) -> Result<Vec<(Field, bool)>, DecodeError> {
    let mut out = Vec::new();
    d.decode(block, |n, v, never| {
        out.push(((n.to_vec(), v.to_vec()), never))
    })?;
    Ok(out)
}

fn list(d: &mut Decoder, block: &[u8]) -> Vec<Field> {
    decode_all(d, block)
        .expect("decodes")
        .into_iter()
        .map(|(f, _)| f)
        .collect()
}

fn fields(l: &[(&str, &str)]) -> Vec<Field> {
    l.iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

#[test]
fn the_rfc_request_examples_decode_with_and_without_huffman() {
    // RFC 7541 C.3 (raw strings) and C.4 (Huffman): three requests on one
    // connection, the later ones referring to the dynamic table.
    let want = [
        fields(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ]),
        fields(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
            ("cache-control", "no-cache"),
        ]),
        fields(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ]),
    ];
    let sizes = [57, 110, 164];
    let raw = [
        "828684410f7777772e6578616d706c652e636f6d",
        "828684be58086e6f2d6361636865",
        "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
    ];
    let huff = [
        "828684418cf1e3c2e5f23a6ba0ab90f4ff",
        "828684be5886a8eb10649cbf",
        "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
    ];
    for blocks in [raw, huff] {
        let mut d = Decoder::new(4096);
        for ((block, want), size) in blocks.iter().zip(&want).zip(sizes) {
            assert_eq!(&list(&mut d, &hex(block)), want);
            assert_eq!(d.table.size(), size);
        }
    }
}

#[test]
fn the_representation_of_never_indexed_fields_is_reported() {
    let mut block = vec![0x10];
    encode_str(&mut block, b"password");
    encode_str(&mut block, b"secret");
    block.push(0x04 | 0x10); // never indexed, name = static 4 (:path)
    encode_str(&mut block, b"/x");
    block.push(0x04); // without indexing
    encode_str(&mut block, b"/y");
    let mut d = Decoder::new(4096);
    let got = decode_all(&mut d, &block).expect("decodes");
    assert_eq!(
        got.iter().map(|(_, never)| *never).collect::<Vec<_>>(),
        [true, true, false]
    );
    assert_eq!(got[0].0, (b"password".to_vec(), b"secret".to_vec()));
    assert_eq!(d.table.len(), 0, "nothing indexed");
}

#[test]
fn an_indexed_name_survives_the_eviction_of_its_own_entry() {
    // A 4096-byte table nearly filled by one entry; a literal that takes its
    // name from that entry and is indexed evicts it while inserting.
    let mut d = Decoder::new(4096);
    let mut first = vec![0x40];
    encode_str(&mut first, b"x-big");
    encode_str(&mut first, &[b'v'; 4000]);
    assert_eq!(list(&mut d, &first)[0].1.len(), 4000);
    let mut second = Vec::new();
    encode_int(&mut second, 62, 6, 0x40);
    encode_str(&mut second, &[b'w'; 100]);
    assert_eq!(
        list(&mut d, &second),
        vec![(b"x-big".to_vec(), vec![b'w'; 100])]
    );
    assert_eq!(d.table.len(), 1);
    assert_eq!(
        list(&mut d, &[0xbe]),
        vec![(b"x-big".to_vec(), vec![b'w'; 100])]
    );
}

#[test]
fn size_updates_are_accepted_only_first_and_only_up_to_the_allowed_size() {
    let mut d = Decoder::new(4096);
    // Two updates, then a field: legal.
    assert!(decode_all(&mut d, &[0x20, 0x3f, 0xe1, 0x1f, 0x82]).is_ok());
    // A block of updates only: legal HPACK (h2 then finds the request malformed).
    assert!(decode_all(&mut d, &[0x3f, 0xe1, 0x1f]).is_ok());
    assert_eq!(
        decode_all(&mut d, &[0x82, 0x20]),
        Err(DecodeError::SizeUpdateAfterField)
    );
    let mut over = Vec::new();
    encode_int(&mut over, 4097, 5, 0x20);
    assert_eq!(
        decode_all(&mut Decoder::new(4096), &over),
        Err(DecodeError::SizeUpdateTooLarge {
            size: 4097,
            max: 4096
        })
    );
}

#[test]
fn malformed_blocks_are_refused_with_a_reason() {
    let cases: [(&[u8], DecodeError); 6] = [
        (&[0x80], DecodeError::BadIndex(0)),
        (&[0xbe], DecodeError::BadIndex(62)),
        (&[0x41, 0x05, b'a'], DecodeError::Truncated),
        (&[0x40], DecodeError::Truncated),
        (
            &[0xff, 0x80, 0x80, 0x80, 0x80, 0x01],
            DecodeError::IntegerOverflow,
        ),
        (
            &[0x41, 0x81, 0x1e],
            DecodeError::Huffman(HuffmanError::Padding),
        ),
    ];
    for (block, want) in cases {
        assert_eq!(
            decode_all(&mut Decoder::new(4096), block),
            Err(want),
            "{block:02x?}"
        );
    }
    // Four continuation bytes are still fine.
    let mut d = Decoder::new(4096);
    assert_eq!(
        decode_all(&mut d, &[0xff, 0x80, 0x80, 0x80, 0x00]),
        Err(DecodeError::BadIndex(127))
    );
}

#[test]
fn scratch_buffers_grown_by_a_huge_literal_are_released() {
    let mut d = Decoder::new(4096);
    let mut block = vec![0x00];
    encode_str(&mut block, b"x-huge");
    let coded = huffman_encode(&[b'a'; 20_000]);
    encode_int(&mut block, coded.len(), 7, 0x80);
    block.extend_from_slice(&coded);
    assert_eq!(list(&mut d, &block)[0].1.len(), 20_000);
    assert!(d.value_buf.capacity() <= KEEP_SCRATCH);
}

/// One field representation, for random blocks.
#[derive(Debug, Clone)]
enum Rep {
    /// Index into both tables (may be out of range: then both must fail).
    Indexed(usize),
    /// (indexing, never, name index or 0 + name, value, Huffman name/value)
    Literal {
        kind: u8,
        name_index: usize,
        name: Vec<u8>,
        value: Vec<u8>,
        huff_name: bool,
        huff_value: bool,
    },
}

fn rep() -> impl Strategy<Value = Rep> {
    let bytes = prop::collection::vec(
        prop::sample::select(b"abc:/%-.xyz019 \x00\xff".to_vec()),
        0..40,
    );
    prop_oneof![
        (1usize..80).prop_map(Rep::Indexed),
        (
            0u8..3,
            0usize..75,
            bytes.clone(),
            bytes,
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(
                |(kind, i, name, value, huff_name, huff_value)| Rep::Literal {
                    kind,
                    name_index: if i > 64 { 0 } else { i },
                    name,
                    value,
                    huff_name,
                    huff_value,
                }
            ),
    ]
}

fn put_str(out: &mut Vec<u8>, s: &[u8], huff: bool) {
    if huff {
        let coded = huffman_encode(s);
        encode_int(out, coded.len(), 7, 0x80);
        out.extend_from_slice(&coded);
    } else {
        encode_str(out, s);
    }
}

fn encode_block(size_updates: &[usize], reps: &[Rep]) -> Vec<u8> {
    let mut out = Vec::new();
    for &s in size_updates {
        encode_int(&mut out, s, 5, 0x20);
    }
    for r in reps {
        match r {
            Rep::Indexed(i) => encode_int(&mut out, *i, 7, 0x80),
            Rep::Literal {
                kind,
                name_index,
                name,
                value,
                huff_name,
                huff_value,
            } => {
                let (prefix, high) = match kind {
                    0 => (6, 0x40),
                    1 => (4, 0x00),
                    _ => (4, 0x10),
                };
                encode_int(&mut out, *name_index, prefix, high);
                if *name_index == 0 {
                    put_str(&mut out, name, *huff_name);
                }
                put_str(&mut out, value, *huff_value);
            }
        }
    }
    out
}

proptest! {
    #[test]
    fn random_blocks_decode_as_the_independent_decoder_decodes_them(
        blocks in prop::collection::vec(
            (prop::collection::vec(0usize..5000, 0..3), prop::collection::vec(rep(), 0..12)),
            1..8,
        ),
    ) {
        let mut ours = Decoder::new(4096);
        let mut other = loona_hpack::Decoder::new();
        other.set_max_allowed_table_size(4096);
        for (updates, reps) in &blocks {
            let block = encode_block(updates, reps);
            let a = decode_all(&mut ours, &block)
                .map(|l| l.into_iter().map(|(f, _)| f).collect::<Vec<_>>());
            let mut fields = Vec::new();
            let b = match other.decode_with_cb(&block, |n, v| fields.push((n.into_owned(), v.into_owned()))) {
                // loona refuses a block of size updates only; h2 and we take it.
                Ok(()) | Err(loona_hpack::decoder::DecoderError::SizeUpdateAtEnd) => Ok(fields),
                Err(e) => Err(e),
            };
            prop_assert_eq!(a.is_ok(), b.is_ok(), "block {:02x?}: {:?} vs {:?}", block, a, b);
            match (a, b) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                _ => break, // the connection would end here
            }
        }
    }

    #[test]
    fn random_bytes_are_never_decoded_differently(
        prefix in prop::collection::vec(rep(), 0..6),
        noise in prop::collection::vec(any::<u8>(), 0..60),
    ) {
        let mut ours = Decoder::new(4096);
        let mut other = loona_hpack::Decoder::new();
        other.set_max_allowed_table_size(4096);
        let first = encode_block(&[], &prefix);
        if decode_all(&mut ours, &first).is_err() || other.decode(&first).is_err() {
            return Ok(());
        }
        if let Ok(a) = decode_all(&mut ours, &noise) {
            // loona is more lenient (size updates anywhere); where we accept,
            // it must agree on every field.
            let a: Vec<Field> = a.into_iter().map(|(f, _)| f).collect();
            let mut b = Vec::new();
            let r = other.decode_with_cb(&noise, |n, v| b.push((n.into_owned(), v.into_owned())));
            prop_assert!(
                r.is_ok() || r == Err(loona_hpack::decoder::DecoderError::SizeUpdateAtEnd),
                "{:?}", r
            );
            prop_assert_eq!(a, b);
        }
    }
}
