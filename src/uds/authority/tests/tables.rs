//! The client's dynamic table across the switch from passthrough to
//! rewriting, and what a rewrite keeps of the client's representations.

use loona_hpack::{Decoder, Encoder};

use super::super::hpack::encode_str;
use super::{Field, connection, fields, fixed, headers, run, server_view};

/// A request list with the given authority and a value big enough that a
/// few requests fill the 4 KiB table.
fn request(i: usize, authority: &str) -> Vec<Field> {
    let tag = format!("tag-{i}");
    let big = "b".repeat(700 + i * 13);
    fields(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/vision.v1.Admission/Admit"),
        (":authority", authority),
        ("x-tag", &tag),
        ("x-big", &big),
        ("te", "trailers"),
    ])
}

#[test]
fn a_connection_that_starts_acceptable_and_later_sends_a_bad_authority_is_rewritten_from_then_on() {
    // Ten valid requests pass through and fill (and churn) the client's
    // table; from the eleventh on the authority is a path, and the entries
    // inserted before the switch are evicted by those inserted after it,
    // while later blocks keep referring to both.
    let mut enc = Encoder::new();
    let mut want = Vec::new();
    let mut frames = Vec::new();
    for i in 0..30 {
        let authority = if i < 10 || i == 20 {
            "localhost"
        } else {
            "/run/vision/agent.sock"
        };
        let list = request(i % 12, authority);
        let block = enc.encode(list.iter().map(|(n, v)| (&n[..], &v[..])));
        frames.push(headers(2 * i as u32 + 1, 0, &block));
        want.push(list);
    }
    let input = connection(&frames);

    let output = run(&input);

    // The first ten went through byte for byte.
    let unchanged = connection(&frames[..10]);
    assert_eq!(&output[..unchanged.len()], &unchanged[..]);
    let got: Vec<Vec<Field>> = server_view(&output).into_iter().map(|s| s.fields).collect();
    let want: Vec<Vec<Field>> = want.iter().map(|l| fixed(l)).collect();
    assert_eq!(got, want);
}

#[test]
fn an_authority_that_changes_between_valid_values_is_checked_each_time() {
    // The accepted-authority memo must not let a different value through
    // unchecked: valid A, valid B, valid A again, then a bad one.
    let mut enc = Encoder::new();
    let mut client = Decoder::new();
    let mut frames = Vec::new();
    let mut want = Vec::new();
    for (i, authority) in ["localhost", "vision.local:80", "localhost", "a%2Fb.sock"]
        .into_iter()
        .enumerate()
    {
        let list = request(i, authority);
        let block = enc.encode(list.iter().map(|(n, v)| (&n[..], &v[..])));
        assert_eq!(client.decode(&block).expect("decodes"), list);
        frames.push(headers(2 * i as u32 + 1, 0, &block));
        // `fixed` sets every :authority to localhost: only for the bad one.
        want.push(if i < 3 { list } else { fixed(&list) });
    }
    let input = connection(&frames);

    let output = run(&input);

    let unchanged = connection(&frames[..3]);
    assert_eq!(&output[..unchanged.len()], &unchanged[..]);
    let got: Vec<Vec<Field>> = server_view(&output).into_iter().map(|s| s.fields).collect();
    assert_eq!(got, want);
}

#[test]
fn a_never_indexed_field_stays_never_indexed_when_its_block_is_rewritten() {
    let mut block = vec![0x83, 0x86, 0x84, 0x01]; // POST, http, /, :authority =
    encode_str(&mut block, b"/x.sock");
    block.push(0x10); // never indexed, new name
    encode_str(&mut block, b"x-secret");
    encode_str(&mut block, b"s3");

    let output = run(&connection(&[headers(1, 0, &block)]));

    let mut tail = vec![0x10];
    encode_str(&mut tail, b"x-secret");
    encode_str(&mut tail, b"s3");
    assert!(output.ends_with(&tail), "{output:02x?}");
    assert_eq!(
        server_view(&output)[0].fields,
        fields(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "localhost"),
            ("x-secret", "s3"),
        ])
    );
}
