//! A real Triton Inference Server for the tests: `tritonserver` 2.51 from
//! PyPI's nvidia-pytriton wheel (installed by `.ci/triton-setup` into
//! `target/triton-venv`, on first use), started on free loopback ports with
//! a temporary model repository, killed (with its python stubs) on drop.
//!
//! The models are python-backend `model.py` (beside this file) serving a
//! tiny ONNX network that `build_onnx.py` makes at test time, through
//! onnxruntime: real loading, real inference, real unloading. Each model's
//! instances append `loaded`/`unloaded` lines to a journal, so that tests
//! see what Triton really did and in which order.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tempfile::TempDir;
use tokio::sync::Semaphore;
use vision_node_daemon::config::{Config, RuntimeKind, TritonConfig};
use vision_node_daemon::proto::inference as tpb;
use vision_node_daemon::proto::vision::v1 as pb;

use crate::common::{model, small_config};

pub use tpb::grpc_inference_service_client::GrpcInferenceServiceClient as TritonClient;

/// Two Tritons at a time: each loads python stubs and onnxruntime, and the
/// CI machine has two cores.
pub static TRITONS: Semaphore = Semaphore::const_new(2);

/// One simulated GPU of `mib` with `models` (catalog name, Triton name; 1000
/// MiB of weights, 100 of working memory each), driven through Triton at
/// `triton`.
pub fn config(triton: &Triton, mib: u64, models: &[(&str, &str)]) -> Config {
    let mut c = small_config(
        mib,
        models.iter().map(|(m, _)| model(m, 1000, 100, 4)).collect(),
    );
    c.runtime.kind = RuntimeKind::Triton(TritonConfig {
        endpoint: triton.endpoint(),
        client_endpoint: triton.endpoint(),
        model_repository: None,
        model_names: models
            .iter()
            .filter(|(m, t)| m != t)
            .map(|(m, t)| (m.to_string(), t.to_string()))
            .collect(),
    });
    c
}

/// Journal lines `EVENT MODEL …` (`loaded`, `unloaded`).
pub fn loaded_lines(triton: &Triton, event: &str, model: &str) -> usize {
    let prefix = format!("{event} {model} ");
    triton
        .journal()
        .iter()
        .filter(|l| l.starts_with(&prefix))
        .count()
}

pub use crate::common::admin_status;

pub fn ledger_is_empty(s: &pb::StatusResponse) -> bool {
    s.gpus
        .iter()
        .all(|g| g.residents.is_empty() && g.weights_mib == 0 && g.working_mib == 0)
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Paths of the installed server, from `triton.env`.
pub struct Install {
    vars: HashMap<String, String>,
}

impl Install {
    fn var(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .unwrap_or_else(|| panic!("triton.env has no {key}"))
    }
}

/// Runs `.ci/triton-setup` once per test process (a no-op when installed).
pub fn install() -> &'static Install {
    static INSTALL: OnceLock<Install> = OnceLock::new();
    INSTALL.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo_root().join(".ci/triton-setup"))
            .output()
            .expect("bash runs .ci/triton-setup");
        assert!(
            out.status.success(),
            ".ci/triton-setup failed ({}): it needs python3 with venv and pip, and PyPI on the first run\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let env_file = stdout.lines().last().expect("the env file's path");
        let text = std::fs::read_to_string(env_file.trim()).expect("read triton.env");
        let vars = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Install { vars }
    })
}

/// The tiny network, its input and onnxruntime's own result for it.
pub struct Network {
    dir: TempDir,
    pub input: Vec<u8>,
    pub expected: Vec<f32>,
}

pub fn network() -> &'static Network {
    static NETWORK: OnceLock<Network> = OnceLock::new();
    NETWORK.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Command::new(install().var("TRITON_PYTHON"))
            .arg(repo_root().join("tests/it/triton_support/build_onnx.py"))
            .arg(dir.path())
            .arg("7")
            .output()
            .expect("run build_onnx.py");
        assert!(
            out.status.success(),
            "build_onnx.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let input = std::fs::read(dir.path().join("input.f32")).expect("input.f32");
        let expected = f32s(&std::fs::read(dir.path().join("expected.f32")).expect("expected"));
        Network {
            dir,
            input,
            expected,
        }
    })
}

pub fn f32s(raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// One model of the test repository.
#[derive(Debug, Clone)]
pub struct ModelDef {
    pub name: String,
    /// `KIND_CPU` or `KIND_GPU`.
    pub kind: &'static str,
    /// `model.py` raises this from initialize.
    pub fail_load: Option<String>,
    /// `model.py` takes this long to load.
    pub load_delay_s: f64,
}

impl ModelDef {
    pub fn cpu(name: &str) -> ModelDef {
        ModelDef {
            name: name.into(),
            kind: "KIND_CPU",
            fail_load: None,
            load_delay_s: 0.0,
        }
    }
    pub fn gpu(name: &str) -> ModelDef {
        ModelDef {
            kind: "KIND_GPU",
            ..ModelDef::cpu(name)
        }
    }
    pub fn broken(name: &str, message: &str) -> ModelDef {
        ModelDef {
            fail_load: Some(message.into()),
            ..ModelDef::cpu(name)
        }
    }
    pub fn slow(name: &str, seconds: f64) -> ModelDef {
        ModelDef {
            load_delay_s: seconds,
            ..ModelDef::cpu(name)
        }
    }
}

/// A running tritonserver. Killed, with its python stubs, on drop.
pub struct Triton {
    child: Option<Child>,
    pub grpc_port: u16,
    pub repo: TempDir,
    pub journal: PathBuf,
    log: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Triton {
    /// Writes the repository and starts Triton in explicit mode; returns
    /// once its ServerReady says so.
    pub async fn start(models: &[ModelDef]) -> Triton {
        let repo = tempfile::tempdir().expect("temp dir");
        let journal = repo.path().join("journal.txt");
        let net = network();
        for m in models {
            let version = repo.path().join(&m.name).join("1");
            std::fs::create_dir_all(&version).expect("model dir");
            std::fs::copy(
                repo_root().join("tests/it/triton_support/model.py"),
                version.join("model.py"),
            )
            .expect("copy model.py");
            std::fs::copy(
                net.dir.path().join("model.onnx"),
                version.join("model.onnx"),
            )
            .expect("copy model.onnx");
            let mut params = vec![("journal", journal.display().to_string())];
            if let Some(f) = &m.fail_load {
                params.push(("fail_load", f.clone()));
            }
            if m.load_delay_s > 0.0 {
                params.push(("load_delay_s", m.load_delay_s.to_string()));
            }
            let params: String = params
                .iter()
                .map(|(k, v)| {
                    format!("parameters {{ key: \"{k}\" value {{ string_value: \"{v}\" }} }}\n")
                })
                .collect();
            let config = format!(
                "backend: \"python\"\nmax_batch_size: 0\n\
                 input [ {{ name: \"INPUT\" data_type: TYPE_FP32 dims: [ 1, 3, 32, 32 ] }} ]\n\
                 output [ {{ name: \"OUTPUT\" data_type: TYPE_FP32 dims: [ 1, 16 ] }} ]\n\
                 instance_group [ {{ kind: {} count: 1 }} ]\n{params}",
                m.kind
            );
            std::fs::write(repo.path().join(&m.name).join("config.pbtxt"), config)
                .expect("config.pbtxt");
            // The stub would write model.py's bytecode into the version
            // directory on the first load; Triton would then see a changed
            // model and reload it fully where an in-place update is due (as
            // with any writable repository: the chart mounts it read-only).
            let out = Command::new(install().var("TRITON_PYTHON"))
                .args(["-m", "compileall", "-q"])
                .arg(&version)
                .output()
                .expect("compileall");
            assert!(out.status.success(), "compileall: {out:?}");
        }
        let log = repo.path().join("triton.log");
        let mut t = Triton {
            child: None,
            grpc_port: free_port(),
            repo,
            journal,
            log,
        };
        t.spawn().await;
        t
    }

    async fn spawn(&mut self) {
        let i = install();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = Command::new(i.var("TRITON_BIN"));
        cmd.arg("--model-repository")
            .arg(self.repo.path())
            .args(["--model-control-mode", "explicit"])
            .arg("--backend-directory")
            .arg(i.var("TRITON_BACKENDS"))
            .args(["--allow-http", "false", "--allow-metrics", "false"])
            .args(["--grpc-address", "127.0.0.1"])
            .args(["--grpc-port", &self.grpc_port.to_string()])
            .args(["--exit-timeout-secs", "2"])
            .env("LD_LIBRARY_PATH", i.var("TRITON_LD_LIBRARY_PATH"))
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    i.var("TRITON_PATH"),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("PYTHONPATH", i.var("TRITON_PYTHONPATH"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        // Its own process group: the python stubs die with it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        self.child = Some(cmd.spawn().expect("start tritonserver"));
        self.wait_ready().await;
    }

    /// Polls ServerReady (the server's own signal) until it says ready;
    /// fails if Triton exits or is not ready within 120 s.
    async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "tritonserver exited ({status}) before ready:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(mut c) = TritonClient::connect(self.url()).await
                && c.server_ready(tpb::ServerReadyRequest {})
                    .await
                    .is_ok_and(|r| r.into_inner().ready)
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "tritonserver not ready within 120 s:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `127.0.0.1:PORT`, as the runtime config and leases write it.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.grpc_port)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.endpoint())
    }

    pub async fn client(&self) -> TritonClient<tonic::transport::Channel> {
        TritonClient::connect(self.url())
            .await
            .expect("connect to Triton")
    }

    /// SIGKILL to Triton and its stubs (a crash, not a shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
        }
    }

    /// SIGSTOP to Triton and its stubs: alive, holding its models, but
    /// answering nothing (a hung server, or one cut off by the network).
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT: it carries on where it stopped.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let child = self.child.as_ref().expect("Triton is running");
        let status = Command::new("kill")
            .args([sig, "--", &format!("-{}", child.id())])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {sig} failed");
    }

    /// Starts Triton again on the same port and repository.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Model name → (state, reason) from RepositoryIndex.
    pub async fn index(&self) -> HashMap<String, (String, String)> {
        self.client()
            .await
            .repository_index(tpb::RepositoryIndexRequest::default())
            .await
            .expect("RepositoryIndex")
            .into_inner()
            .models
            .into_iter()
            .map(|m| (m.name, (m.state, m.reason)))
            .collect()
    }

    pub async fn state(&self, model: &str) -> String {
        self.index()
            .await
            .remove(model)
            .map(|s| s.0)
            .unwrap_or_default()
    }

    /// Waits (polling the index) until `model` is in `state`; 60 s at most.
    pub async fn wait_state(&self, model: &str, state: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let now = self.state(model).await;
            if now == state {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{model} is {now:?}, not {state}, after 60 s:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The journal's lines (`loaded NAME KIND DEVICE`, `unloaded …`).
    pub fn journal(&self) -> Vec<String> {
        std::fs::read_to_string(&self.journal)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Triton {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One ModelInfer of the test input on `model` at `endpoint` (`host:port`);
/// the output, or Triton's error.
pub async fn infer(endpoint: &str, model: &str) -> Result<Vec<f32>, tonic::Status> {
    let mut c = TritonClient::connect(format!("http://{endpoint}"))
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    infer_with(&mut c, model).await
}

pub async fn infer_with(
    c: &mut TritonClient<tonic::transport::Channel>,
    model: &str,
) -> Result<Vec<f32>, tonic::Status> {
    let req = tpb::ModelInferRequest {
        model_name: model.into(),
        inputs: vec![tpb::model_infer_request::InferInputTensor {
            name: "INPUT".into(),
            datatype: "FP32".into(),
            shape: vec![1, 3, 32, 32],
            ..Default::default()
        }],
        raw_input_contents: vec![network().input.clone()],
        ..Default::default()
    };
    let reply = c.model_infer(req).await?.into_inner();
    let raw = reply
        .raw_output_contents
        .first()
        .ok_or_else(|| tonic::Status::internal("no raw output"))?;
    Ok(f32s(raw))
}

/// Asserts that Triton's answer is the network's, as onnxruntime computed it.
pub fn assert_expected(output: &[f32]) {
    let expected = &network().expected;
    assert_eq!(output.len(), expected.len(), "output size");
    for (i, (a, b)) in output.iter().zip(expected).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * b.abs().max(1.0),
            "output[{i}]: {a} vs {b}"
        );
    }
}
