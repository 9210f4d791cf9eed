//! A Python venv with grpcio for the interop tests, and stubs generated
//! from our protos.
//!
//! Needs `python3` (with `venv` and `pip`) and, on the first run, PyPI: a venv
//! with grpcio, grpcio-tools and protobuf is created under `target/py-venv`
//! and reused afterwards. Without python3 the tests that use it fail, loudly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// 1.53 still sent `localhost` over Unix sockets; the control needs the
/// percent-encoded path that 1.57 and later send.
const PACKAGES: [&str; 3] = ["grpcio>=1.57", "grpcio-tools>=1.57", "protobuf"];

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `target/py-venv` (CARGO_TARGET_TMPDIR is `target/tmp`).
fn venv_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("py-venv")
}

pub fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn imports_ok(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import grpc, grpc_tools.protoc, google.protobuf"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The venv's python, creating the venv once per process when needed.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let dir = venv_dir();
        let python = dir.join("bin/python");
        if imports_ok(&python) {
            return python;
        }
        if let Err(e) = Command::new("python3").arg("--version").output() {
            panic!(
                "python3 is required for the grpcio interop tests and was not found ({e}); \
                 install python3 with venv and pip (Debian: apt-get install python3 python3-venv)"
            );
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("remove broken venv");
        }
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&dir),
            "python3 -m venv",
        );
        run(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(PACKAGES),
            "pip install grpcio grpcio-tools protobuf",
        );
        assert!(
            imports_ok(&python),
            "the venv at {} cannot import grpc",
            dir.display()
        );
        python
    })
}

/// Python stubs generated from `proto/<proto>` (e.g. `vision/v1/runtime.proto`), in a temp dir.
pub fn stubs(proto_file: &str) -> tempfile::TempDir {
    let out = tempfile::tempdir().expect("tempdir");
    let proto = repo().join("proto");
    run(
        Command::new(python())
            .args(["-m", "grpc_tools.protoc"])
            .arg(format!("-I{}", proto.display()))
            .arg(format!("--python_out={}", out.path().display()))
            .arg(format!("--grpc_python_out={}", out.path().display()))
            .arg(proto.join(proto_file)),
        "grpc_tools.protoc",
    );
    out
}
