//! Properties over random input and random read boundaries, and the I/O
//! wrapper over a real (in-memory) pipe.

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::super::AuthorityShim;
use super::super::frame::{
    FLAG_END_HEADERS, FLAG_END_STREAM, FLAG_PADDED, FLAG_PRIORITY, PREFACE, TYPE_CONTINUATION,
    TYPE_HEADERS,
};
use super::{GRPCIO_FIRST, GRPCIO_SECOND, connection, frame, headers, hex, run, run_split};

/// A conversation with every feature at once, for the split property.
fn mixed_conversation() -> Vec<u8> {
    let (first, second) = (hex(GRPCIO_FIRST), hex(GRPCIO_SECOND));
    let mut p = vec![3, 0x80, 0, 0, 1, 0x20]; // pad 3, priority
    p.extend_from_slice(&second[..10]);
    p.extend_from_slice(&[0; 3]);
    connection(&[
        frame(0x8, 0, 0, &[0, 1, 0, 0]),
        frame(TYPE_HEADERS, 0, 1, &first[..70]),
        frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, &first[70..]),
        frame(0x0, FLAG_END_STREAM, 1, &[0, 0, 0, 0, 0]),
        frame(0x6, 0, 0, &[9; 8]),
        frame(TYPE_HEADERS, FLAG_PADDED | FLAG_PRIORITY, 3, &p),
        frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 3, &second[10..]),
        frame(0x0, 0, 3, &[7; 3000]),
        frame(0x0, FLAG_END_STREAM, 3, &[]),
    ])
}

proptest! {
    #[test]
    fn random_split_points_give_identical_output(mut cuts in prop::collection::vec(0usize..4000, 0..30)) {
        let input = mixed_conversation();
        cuts.sort_unstable();
        let whole = run(&input);
        prop_assert_eq!(run_split(&input, &cuts), Ok(whole));
    }

    #[test]
    fn random_bytes_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..3000),
        with_preface in any::<bool>(),
        cuts in prop::collection::vec(0usize..3100, 0..10),
    ) {
        let input = if with_preface { [&PREFACE[..], &body].concat() } else { body };
        let _ = run_split(&input, &cuts);
    }

    #[test]
    fn random_frames_never_panic(
        frames in prop::collection::vec(
            (prop::sample::select(vec![0u8, 1, 1, 1, 4, 5, 9, 9, 0x20]),
             any::<u8>(), 0u32..4, prop::collection::vec(any::<u8>(), 0..80)),
            0..25),
        cuts in prop::collection::vec(0usize..2000, 0..10),
    ) {
        let mut frames: Vec<Vec<u8>> =
            frames.iter().map(|(ty, fl, id, p)| frame(*ty, *fl, *id, p)).collect();
        // Start with a rewrite so the re-encoding path sees random input too.
        frames.insert(0, headers(1, 0, &hex(GRPCIO_FIRST)));
        let _ = run_split(&connection(&frames), &cuts);
    }
}

/// The I/O wrapper over a pipe written in small pieces reads the same bytes
/// the rewriter produces.
#[tokio::test]
async fn the_io_shim_reads_what_the_rewriter_produces() {
    let input = mixed_conversation();
    let want = run(&input);
    let (mut client, server) = tokio::io::duplex(64);
    let writer = tokio::spawn({
        let input = input.clone();
        async move {
            for chunk in input.chunks(13) {
                client.write_all(chunk).await.expect("write");
            }
        }
    });
    let mut shim = AuthorityShim::new(server);
    let mut got = Vec::new();
    let mut buf = [0u8; 100];
    loop {
        let n = shim.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    writer.await.expect("writer");
    assert_eq!(got, want);
    assert_eq!(
        shim.rewritten_authority(),
        Some(&b"tmp%2Fx%2Fruntime.sock"[..])
    );
}
