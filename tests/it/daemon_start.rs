//! Starting the daemon in-process: a start that fails part-way undoes
//! itself — no task left running, no socket left bound, nothing written —
//! and the same state dir starts cleanly afterwards.

use std::path::Path;

use crate::common::*;
use vision_node_daemon::daemon::{Daemon, Options, Paths};

fn options(dir: &Path, http_addr: std::net::SocketAddr) -> Options {
    Options {
        config: fast_dev_config(),
        state_dir: dir.join("state"),
        dev_token: true,
        kubelet: kubelet_options(dir),
        http_addr: Some(http_addr),
        ready_needs_kubelet: true,
    }
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Checks that a failed start left nothing behind in `dir`.
fn assert_nothing_left(dir: &Path) {
    let paths = Paths::under(&dir.join("state"));
    assert!(!paths.task_socket.exists(), "task socket removed");
    assert!(!paths.admin_socket.exists(), "admin socket removed");
    assert!(!paths.dev_token.exists(), "no dev token written");
    let plugins = dir.join("device-plugins");
    for socket in ["vision-slot.sock", "vision-vram.sock"] {
        assert!(!plugins.join(socket).exists(), "{socket} never served");
    }
}

// One thread: the runtime's task count is exact there.
#[tokio::test]
async fn a_start_that_fails_at_the_http_port_leaves_nothing_running() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let before = alive_tasks();
    let err = Daemon::start(options(dir.path(), taken.local_addr().unwrap()))
        .await
        .err()
        .expect("the port is taken");
    let err = format!("{err:#}");
    assert!(err.contains("cannot listen on --http-addr"), "{err}");
    assert_eq!(alive_tasks(), before, "no task of the failed start runs on");
    assert_nothing_left(dir.path());

    drop(taken);
    let d = start_in(fast_dev_config(), dir).await;
    d.task()
        .await
        .admit(admit(&d.token, "yolo-v8n"))
        .await
        .expect("the restarted daemon serves");
    d.daemon.shutdown().await;
}

#[tokio::test]
async fn a_start_that_fails_at_the_saved_allocations_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("state").join("allocations.json");
    std::fs::create_dir_all(saved.parent().unwrap()).unwrap();
    std::fs::write(&saved, "{ not json").unwrap();
    let before = alive_tasks();
    let err = Daemon::start(options(dir.path(), "127.0.0.1:0".parse().unwrap()))
        .await
        .err()
        .expect("the allocations file is corrupt");
    let err = format!("{err:#}");
    assert!(
        err.contains("cannot read the saved allocations") && err.contains("move it away"),
        "{err}"
    );
    assert_eq!(alive_tasks(), before, "no task of the failed start runs on");
    assert_nothing_left(dir.path());

    std::fs::remove_file(&saved).unwrap();
    let d = start_in(fast_dev_config(), dir).await;
    d.daemon.shutdown().await;
}
