//! `vision-node-daemon check-config FILE`, run as the operator runs it.

use std::path::Path;
use std::process::{Command, Output};

fn check_config(file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vision-node-daemon"))
        .arg("check-config")
        .arg(file)
        // node_name is not in the example file; pin it instead of depending
        // on the test machine's host name.
        .env("NODE_NAME", "gpu-node-1")
        .output()
        .expect("the binary runs")
}

#[test]
fn the_example_config_passes_and_prints_the_effective_config() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml");
    let out = check_config(&example);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "status {:?}, stderr:\n{stderr}",
        out.status
    );
    for line in [
        "node_name: gpu-node-1",
        "domain: vision.ai",
        "  backend: auto",
        "  default_timeout: 30s",
        "  lease_ttl: 1m",
        "- name: sdxl-refiner",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "missing {line:?} in:\n{stdout}"
        );
    }
}

#[test]
fn a_bad_config_fails_and_prints_every_error_on_stderr() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.yaml");
    let text = "\
node_name: n
devices:
  vram_shareable_fraction: 2
models:
  - name: a
    weigths_mib: 1
    working_mib: 0
    load_ms: 0
";
    std::fs::write(&file, text).expect("write");
    let out = check_config(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a bad config must fail; stderr:\n{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing on stdout");
    let expected = format!(
        "{}: 4 errors\n\
         devices.vram_shareable_fraction: must be within [0, 1], got 2 (line 3, column 28)\n\
         models[0].weights_mib: is required (line 5, column 5)\n\
         models[0].weigths_mib: unknown key; did you mean `weights_mib`? (line 6, column 5)\n\
         models[0].working_mib: must be > 0 (line 7, column 18)\n",
        file.display()
    );
    assert_eq!(stderr, expected);
}

#[test]
fn a_missing_file_fails_with_its_name() {
    let out = check_config(Path::new("/nonexistent/vision.yaml"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.starts_with("/nonexistent/vision.yaml: 1 error\ncannot read the config file:"),
        "{stderr}"
    );
}
