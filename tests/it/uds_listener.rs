//! `uds::listener`: binding next to stale, live and foreign files; modes;
//! removal of our own socket only.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use crate::uds_support::serve_shimmed;
use tokio_stream::StreamExt;
use vision_node_daemon::uds::{self, BindError, UdsListener};

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[tokio::test]
async fn bind_creates_the_parent_directory_and_sets_the_requested_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let task = dir.path().join("pods/nested/agent.sock");
    let admin = dir.path().join("admin.sock");

    let t = UdsListener::bind(&task, uds::TASK_SOCKET_MODE)
        .await
        .expect("bind task");
    let a = UdsListener::bind(&admin, uds::ADMIN_SOCKET_MODE)
        .await
        .expect("bind admin");

    assert!(
        std::fs::metadata(&task)
            .expect("stat")
            .file_type()
            .is_socket()
    );
    assert_eq!(mode_of(&task), 0o666);
    assert_eq!(mode_of(&admin), 0o600);
    assert_eq!(t.path(), task);
    assert_eq!(a.path(), admin);
}

#[tokio::test]
async fn a_stale_socket_left_by_a_dead_daemon_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).expect("old daemon"));
    assert!(path.exists(), "the dead daemon's file stays behind");

    let listener = UdsListener::bind(&path, uds::TASK_SOCKET_MODE)
        .await
        .expect("rebind");
    let mut incoming = listener.incoming();
    let _client = tokio::net::UnixStream::connect(&path)
        .await
        .expect("connect");
    let accepted = incoming
        .next()
        .await
        .expect("a connection")
        .expect("accepted");
    assert!(accepted.get_ref().get_ref().peer_cred().is_ok());
}

#[tokio::test]
async fn a_live_socket_is_refused_with_an_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.sock");
    let other = std::os::unix::net::UnixListener::bind(&path).expect("other daemon");

    let err = UdsListener::bind(&path, uds::TASK_SOCKET_MODE)
        .await
        .expect_err("in use");

    assert!(
        matches!(&err, BindError::InUse { path: p } if *p == path),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(path.to_str().expect("utf-8")),
        "{err}"
    );
    // The other daemon's socket is untouched and still answers.
    std::os::unix::net::UnixStream::connect(&path).expect("still live");
    drop(other);
}

#[tokio::test]
async fn a_file_that_is_not_a_socket_is_neither_removed_nor_bound_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("agent.sock");
    std::fs::write(&file, "precious").expect("write");
    let link = dir.path().join("link.sock");
    std::os::unix::fs::symlink(dir.path().join("elsewhere.sock"), &link).expect("symlink");

    let err = UdsListener::bind(&file, uds::TASK_SOCKET_MODE)
        .await
        .expect_err("not a socket");
    assert!(
        matches!(
            &err,
            BindError::NotASocket {
                kind: "regular file",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "precious");

    let err = UdsListener::bind(&link, uds::TASK_SOCKET_MODE)
        .await
        .expect_err("symlink");
    assert!(
        matches!(
            &err,
            BindError::NotASocket {
                kind: "symbolic link",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn dropping_the_incoming_stream_removes_our_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.sock");
    let incoming = UdsListener::bind(&path, uds::TASK_SOCKET_MODE)
        .await
        .expect("bind")
        .incoming();
    assert_eq!(incoming.path(), path);

    drop(incoming);

    assert!(!path.exists());
}

/// The id is the one taken at bind time: a file removed right after binding
/// (a restarting kubelet deleting every socket) still compares as "not
/// ours" to whatever the path names now (issue 16, item 7).
#[tokio::test]
async fn file_id_names_the_bound_file_even_once_it_is_removed() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.sock");
    let listener = UdsListener::bind(&path, uds::TASK_SOCKET_MODE)
        .await
        .expect("bind");
    let meta = std::fs::symlink_metadata(&path).expect("stat");
    assert_eq!(listener.file_id(), (meta.dev(), meta.ino()));

    std::fs::remove_file(&path).expect("remove");
    let successor = std::os::unix::net::UnixListener::bind(&path).expect("successor");

    let now = std::fs::symlink_metadata(&path).expect("stat");
    assert_ne!(listener.file_id(), (now.dev(), now.ino()));
    assert_eq!(listener.file_id(), (meta.dev(), meta.ino()));
    drop(successor);
}

#[tokio::test]
async fn a_successors_socket_at_the_same_path_is_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.sock");
    let ours = UdsListener::bind(&path, uds::TASK_SOCKET_MODE)
        .await
        .expect("bind");
    // A successor removed our file and bound its own.
    std::fs::remove_file(&path).expect("remove");
    let successor = std::os::unix::net::UnixListener::bind(&path).expect("successor");

    drop(ours);

    std::os::unix::net::UnixStream::connect(&path).expect("successor still reachable");
    drop(successor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_the_server_down_removes_the_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.sock");
    let server = serve_shimmed(&path).await;
    assert!(path.exists());

    server.stop().await;

    assert!(!path.exists());
}
