//! The real thing: Python's grpcio, default options, against tonic on a Unix
//! socket — through `uds::listener` and its shim, and (the control) without.
//!
//! Needs `python3` (with `venv` and `pip`) and, on the first run, PyPI: a venv
//! with grpcio, grpcio-tools and protobuf is created under `target/py-venv`
//! and reused afterwards. Without python3 these tests fail, loudly.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, Once};

use crate::pyenv::{self, python, repo};

use crate::uds_support::{MODEL, serve_plain, serve_shimmed};
use serde_json::Value;

/// Runs tests/it/python/list_loaded.py; returns its JSON reply.
fn list_loaded(stubs: &Path, cwd: &Path, target: &str, options: &[&str]) -> Value {
    let mut cmd = Command::new(python());
    cmd.arg(repo().join("tests/it/python/list_loaded.py"))
        .arg(target)
        .env("PYTHONPATH", stubs)
        .current_dir(cwd);
    for o in options {
        cmd.args(["--option", o]);
    }
    let out = cmd.output().expect("run list_loaded.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "list_loaded.py {target}: no JSON reply ({e}; {}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Collects the crate's debug logs (the shim logs each rewrite with the
/// original authority) for the whole test process.
fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "vision_node_daemon::uds=debug",
            ))
            .with_writer(|| Capture)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
    });
}

fn logs() -> String {
    String::from_utf8_lossy(&LOG.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The targets a task pod may use for `<dir>/run/agent.sock`, with the
/// `:authority` grpcio (1.57 to at least 1.85) derives from each (percent-encoded path,
/// leading `/` dropped) — which `http::uri::Authority`, hence h2, rejects.
fn default_targets(dir: &Path, path: &Path) -> Vec<(String, String)> {
    let abs = path.to_str().expect("utf-8 path");
    let encoded = |p: &str| p.trim_start_matches('/').replace('/', "%2F");
    assert!(path.starts_with(dir));
    vec![
        (format!("unix:{abs}"), encoded(abs)),
        (format!("unix://{abs}"), encoded(abs)),
        ("unix:run/agent.sock".to_owned(), encoded("run/agent.sock")),
    ]
}

#[test]
fn grpcio_with_default_options_reaches_tonic_through_the_shim() {
    capture_logs();
    let stubs = pyenv::stubs("vision/v1/runtime.proto");
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run/agent.sock");
    let server = rt.block_on(serve_shimmed(&path));

    for (target, sent) in default_targets(dir.path(), &path) {
        let reply = list_loaded(stubs.path(), dir.path(), &target, &[]);
        assert_eq!(reply["ok"], true, "{target}: {reply}");
        assert_eq!(
            reply["models"],
            serde_json::json!([MODEL]),
            "{target}: {reply}"
        );
        let logged = logs();
        assert!(
            logged.contains(&format!("original={sent} ")),
            "grpcio {} for {target}: expected the shim to log a rewrite of {sent:?}; logs:\n{logged}",
            reply["grpcio"]
        );
    }
    // What grpc-java sends, and grpcio with grpc.default_authority set to the path.
    let abs = path.to_str().expect("utf-8 path");
    let reply = list_loaded(
        stubs.path(),
        dir.path(),
        &format!("unix:{abs}"),
        &[&format!("grpc.default_authority={abs}")],
    );
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(logs().contains(&format!("original={abs} ")));

    rt.block_on(server.stop());
}

#[test]
fn without_the_shim_grpcio_with_default_options_gets_rst_stream_from_tonic() {
    let stubs = pyenv::stubs("vision/v1/runtime.proto");
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run/agent.sock");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let server = rt.block_on(async { serve_plain(&path).await });

    for (target, _) in default_targets(dir.path(), &path) {
        let reply = list_loaded(stubs.path(), dir.path(), &target, &[]);
        assert_eq!(reply["ok"], false, "{target}: the bug should show: {reply}");
        assert_eq!(reply["code"], "INTERNAL", "{target}: {reply}");
        let details = reply["details"].as_str().unwrap_or_default();
        assert!(details.contains("RST_STREAM"), "{target}: {reply}");
    }
    // Same server, grpcio told to send `localhost`: the authority is the cause.
    let abs = path.to_str().expect("utf-8 path");
    let reply = list_loaded(
        stubs.path(),
        dir.path(),
        &format!("unix:{abs}"),
        &["grpc.default_authority=localhost"],
    );
    assert_eq!(reply["ok"], true, "{reply}");

    rt.block_on(server.stop());
}
