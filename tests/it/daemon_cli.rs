//! The daemon binary: `--dev` start-up, SIGTERM shutdown, bad config.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn daemon() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vision-node-daemon"));
    c.env("RUST_LOG", "info").env_remove("NODE_NAME");
    c
}

/// Kills the daemon if a test fails before it is stopped.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads the child's stderr on a thread, line by line.
fn lines(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn wait_for(rx: &mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(e) => panic!(
                "no {needle:?} from the daemon ({e}); it said:\n{}",
                seen.join("\n")
            ),
        }
    }
}

#[test]
fn dev_mode_serves_until_sigterm_then_exits_zero_and_removes_its_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut child = Reap(
        daemon()
            .args(["--dev", "--http-addr", "127.0.0.1:0", "--state-dir"])
            .arg(&state)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let rx = lines(&mut child.0);
    let said = wait_for(&rx, "ready");
    assert!(
        said.iter().any(|l| l.contains("backend=simulated")),
        "{said:?}"
    );
    let task = state.join("pods/agent.sock");
    let admin = state.join("admin.sock");
    assert!(task.exists() && admin.exists());
    let token = std::fs::read_to_string(state.join("dev-token")).unwrap();
    assert_eq!(token.trim().len(), 32, "128-bit hex token");

    let kill = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.0.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(rest.iter().any(|l| l.contains("SIGTERM")), "{rest:?}");
    assert!(!task.exists() && !admin.exists(), "sockets removed");
}

#[test]
fn a_bad_config_exits_non_zero_before_binding_anything() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "node_name: n\nmodels:\n  - name: m\n    weights_mib: 0\n    working_mib: 1\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    let out = daemon()
        .arg("run")
        .arg("--config")
        .arg(&bad)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("models[0].weights_mib: must be > 0 (line 4, column 18)"),
        "{stderr}"
    );
    assert!(!state.exists(), "nothing was created under the state dir");
}

#[test]
fn without_a_config_or_dev_it_says_what_to_pass() {
    let out = daemon().arg("run").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--config FILE") && stderr.contains("--dev"),
        "{stderr}"
    );
}
