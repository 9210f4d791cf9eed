//! A fake NVIDIA driver for tests: `nvml_stub.c` compiled into a private
//! directory, plus the two files it reads there (`gpus.conf`, `events`).
//!
//! Each test gets its own copy of the library, so tests run in parallel
//! without sharing driver state or environment variables.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;
use vision_node_daemon::config::{GpuBackend, GpuConfig, SimulatedGpu};

/// One fake driver: a compiled stub and its configuration files.
pub struct FakeDriver {
    dir: TempDir,
}

impl FakeDriver {
    /// Compiles the stub with the system C compiler (`$CC`, else `cc`: the
    /// linker rustc itself uses) and writes `gpus` as `gpus.conf`.
    ///
    /// Each line: `uuid,name,total_mib,used_mib[,reserved_mib[,flags]]`.
    pub fn new(gpus: &[&str]) -> FakeDriver {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/nvml_stub/nvml_stub.c");
        let compiler = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
        let output = Command::new(&compiler)
            .args(["-shared", "-fPIC", "-Wall", "-o"])
            .arg(dir.path().join("libnvidia-ml.so.1"))
            .arg(&source)
            .args(["-ldl", "-lpthread"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run C compiler {compiler:?}: {e}"));
        assert!(
            output.status.success(),
            "compiling the NVML stub failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let driver = FakeDriver { dir };
        driver.set_gpus(gpus);
        driver
    }

    /// The library path, as `gpus.nvml_library` would name it.
    pub fn library(&self) -> PathBuf {
        self.dir.path().join("libnvidia-ml.so.1")
    }

    /// Replaces `gpus.conf` atomically (the stub re-reads it on every call).
    pub fn set_gpus(&self, gpus: &[&str]) {
        let staging = self.dir.path().join("gpus.conf.new");
        let mut text = gpus.join("\n");
        text.push('\n');
        fs::write(&staging, text).expect("write gpus.conf");
        fs::rename(&staging, self.dir.path().join("gpus.conf")).expect("rename gpus.conf");
    }

    /// Appends one event line (`xid 0 79`, `dbe 1`, `gpulost`) in one write,
    /// so the stub never sees half a line.
    pub fn raise(&self, event: &str) {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("events"))
            .expect("open events");
        file.write_all(format!("{event}\n").as_bytes())
            .expect("append event");
    }

    /// A GPU config pointing at this driver, with one simulated fallback GPU.
    pub fn config(&self, backend: GpuBackend) -> GpuConfig {
        GpuConfig {
            backend,
            reserve_mib: 0,
            simulated: vec![SimulatedGpu {
                name: "Simulated GPU".into(),
                memory_mib: 16_384,
                count: 1,
            }],
            nvml_library: Some(self.library()),
        }
    }
}
