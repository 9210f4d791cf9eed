//! End to end over a real Unix socket: a raw HTTP/2 client sending a path as
//! `:authority` (what grpcio and grpc-java do by default) against tonic, with and
//! without `uds::listener`'s shim; and our own tonic client.

use std::time::Duration;

use crate::uds_support::{MODEL, own_uid, serve_plain, serve_shimmed};
use loona_hpack::Decoder;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use vision_node_daemon::proto::vision::v1::ListLoadedResponse;
use vision_node_daemon::proto::vision::v1::model_runtime_client::ModelRuntimeClient;
use vision_node_daemon::uds;

type Field = (Vec<u8>, Vec<u8>);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .expect("small frame")
        .to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], ty, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn hpack_str(out: &mut Vec<u8>, s: &str) {
    assert!(s.len() < 127);
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

/// A ListLoaded request block the way grpcio writes it: literals with
/// incremental indexing, `:authority` a raw literal.
fn request_block(authority: &str) -> Vec<u8> {
    let mut b = vec![0x83, 0x86]; // :method POST, :scheme http
    b.push(0x44); // :path, indexed
    hpack_str(&mut b, "/vision.v1.ModelRuntime/ListLoaded");
    b.push(0x41); // :authority, indexed
    hpack_str(&mut b, authority);
    b.push(0x5f); // content-type, indexed
    hpack_str(&mut b, "application/grpc");
    b.push(0x40); // te, new name, indexed
    hpack_str(&mut b, "te");
    hpack_str(&mut b, "trailers");
    b
}

/// How a stream ended, as the client saw it.
#[derive(Debug, PartialEq)]
enum Outcome {
    Finished { headers: Vec<Field>, data: Vec<u8> },
    Reset { error_code: u32 },
    GoAway { error_code: u32 },
    Closed,
}

/// A hand-written HTTP/2 client: just enough to make unary calls.
struct RawConn {
    io: UnixStream,
    buf: Vec<u8>,
    /// The server's HPACK encoder state, mirrored.
    decoder: Decoder<'static>,
}

impl RawConn {
    async fn open(path: &std::path::Path) -> Self {
        let mut io = UnixStream::connect(path).await.expect("connect");
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        io.write_all(&hello).await.expect("write preface");
        Self {
            io,
            buf: Vec::new(),
            decoder: Decoder::new(),
        }
    }

    /// Sends HEADERS(block) and an empty gRPC message with END_STREAM.
    async fn send(&mut self, stream: u32, block: &[u8]) {
        let mut bytes = frame(0x1, END_HEADERS, stream, block);
        bytes.extend(frame(0x0, END_STREAM, stream, &[0, 0, 0, 0, 0]));
        self.io.write_all(&bytes).await.expect("write request");
    }

    /// Reads frames until `stream` ends; a bound on a hung server, not a
    /// synchronisation point.
    async fn outcome(&mut self, stream: u32) -> Outcome {
        tokio::time::timeout(Duration::from_secs(30), self.read_until_end(stream))
            .await
            .expect("the server answers within 30 s")
    }

    /// Reads frames until `stream` ends, answering SETTINGS and PING.
    async fn read_until_end(&mut self, stream: u32) -> Outcome {
        let (mut headers, mut data) = (Vec::new(), Vec::new());
        loop {
            while self.buf.len() < 9 || self.buf.len() < 9 + frame_len(&self.buf) {
                let mut chunk = [0u8; 16_384];
                let n = self.io.read(&mut chunk).await.expect("read");
                if n == 0 {
                    return Outcome::Closed;
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
            let len = frame_len(&self.buf);
            let (ty, flags) = (self.buf[3], self.buf[4]);
            let sid = u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]);
            let payload: Vec<u8> = self.buf.drain(..9 + len).skip(9).collect();
            match ty {
                0x4 if flags & ACK == 0 => {
                    self.io
                        .write_all(&frame(0x4, ACK, 0, &[]))
                        .await
                        .expect("ack");
                }
                0x6 if flags & ACK == 0 => {
                    self.io
                        .write_all(&frame(0x6, ACK, 0, &payload))
                        .await
                        .expect("pong");
                }
                0x7 => {
                    return Outcome::GoAway {
                        error_code: code_at(&payload, 4),
                    };
                }
                0x1 => {
                    assert!(
                        flags & END_HEADERS != 0,
                        "test client expects one-frame blocks"
                    );
                    // Decode every block, whatever the stream: HPACK is per connection.
                    let fields = self.decoder.decode(&payload).expect("server HPACK");
                    if sid == stream {
                        headers.extend(fields);
                        if flags & END_STREAM != 0 {
                            return Outcome::Finished { headers, data };
                        }
                    }
                }
                0x0 if sid == stream => {
                    data.extend_from_slice(&payload);
                    if flags & END_STREAM != 0 {
                        return Outcome::Finished { headers, data };
                    }
                }
                0x3 if sid == stream => {
                    return Outcome::Reset {
                        error_code: code_at(&payload, 0),
                    };
                }
                _ => {}
            }
        }
    }
}

fn frame_len(b: &[u8]) -> usize {
    usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2])
}

fn code_at(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

fn header<'a>(fields: &'a [Field], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name.as_bytes())
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// The gRPC-framed response message.
fn response(data: &[u8]) -> ListLoadedResponse {
    assert!(
        data.len() >= 5 && data[0] == 0,
        "one uncompressed gRPC message"
    );
    ListLoadedResponse::decode(&data[5..]).expect("ListLoadedResponse")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_authority_gets_grpc_status_0_through_the_shim() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("runtime.sock");
    let server = serve_shimmed(&path).await;
    let authority = path.to_str().expect("utf-8 path").to_owned();

    let mut conn = RawConn::open(&path).await;
    conn.send(1, &request_block(&authority)).await;
    let first = conn.outcome(1).await;
    // The second request refers to the dynamic entries the first one made
    // (62 = te, 63 = content-type, 64 = :authority, 65 = :path).
    conn.send(3, &[0x83, 0x86, 0xc1, 0xc0, 0xbf, 0xbe]).await;
    let second = conn.outcome(3).await;

    for outcome in [first, second] {
        let Outcome::Finished { headers, data } = outcome else {
            panic!("expected a finished call, got {outcome:?}");
        };
        assert_eq!(header(&headers, ":status"), Some("200"));
        assert_eq!(header(&headers, "grpc-status"), Some("0"), "{headers:?}");
        assert_eq!(response(&data).models[0].model, MODEL);
    }
    // Graceful shutdown waits for open connections.
    drop(conn);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_bytes_without_the_shim_get_rst_stream_protocol_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("runtime.sock");
    let server = serve_plain(&path).await;
    let authority = path.to_str().expect("utf-8 path").to_owned();

    let mut conn = RawConn::open(&path).await;
    conn.send(1, &request_block(&authority)).await;
    assert_eq!(conn.outcome(1).await, Outcome::Reset { error_code: 1 });
    // And a valid authority on the same server works: the path is the cause.
    conn.send(3, &request_block("localhost")).await;
    assert!(matches!(conn.outcome(3).await, Outcome::Finished { .. }));
    drop(conn);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_tonic_client_works_and_handlers_see_peer_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("admin.sock");
    let server = serve_shimmed(&path).await;

    let channel = uds::client::connect(&path).await.expect("connect");
    let reply = ModelRuntimeClient::new(channel)
        .list_loaded(vision_node_daemon::proto::vision::v1::ListLoadedRequest {})
        .await
        .expect("ListLoaded")
        .into_inner();

    assert_eq!(reply.models.len(), 1);
    assert_eq!(reply.models[0].model, MODEL);
    assert_eq!(reply.models[0].endpoint, format!("uid={}", own_uid(&path)));
    server.stop().await;
}
