"""``lease.infer()`` against a real Triton Inference Server, driven by the
daemon's Triton runtime.

Triton is the ``tritonserver`` 2.51 binary that ``.ci/triton-setup`` installs
from PyPI (the daemon's own Triton tests use it too); it runs on the CPU in
explicit model-control mode. Its repository holds one python-backend model
serving a small ONNX network (tests/it/triton_support/: model.py, built by
build_onnx.py). The cold admission makes the daemon load the model into
Triton; the inference goes through tritonclient to the lease's endpoint, and
its answer is checked against onnxruntime's own result.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tc
from conftest import REPO, WAIT_S, Daemon

from vision_node import Client

SUPPORT = REPO / "tests" / "it" / "triton_support"
#: Triton's name for the model, and the catalog's (models[].runtime_name maps them).
MODEL = "tiny_cnn"
CATALOG_NAME = "tiny-cnn"


def triton_install() -> dict[str, str]:
    """Runs .ci/triton-setup (a no-op once installed) and reads its env file."""
    out = subprocess.run(["bash", str(REPO / ".ci" / "triton-setup")], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        pytest.fail(f".ci/triton-setup failed:\n{out.stdout}\n{out.stderr}")
    env_file = out.stdout.strip().splitlines()[-1]
    return dict(line.split("=", 1) for line in Path(env_file).read_text().splitlines() if "=" in line)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Triton:
    def __init__(self, tmp: Path) -> None:
        self.install = triton_install()
        self.net = tmp / "net"
        subprocess.run([self.install["TRITON_PYTHON"], str(SUPPORT / "build_onnx.py"), str(self.net), "7"], check=True)
        version = tmp / "repo" / MODEL / "1"
        version.mkdir(parents=True)
        (version / "model.py").write_bytes((SUPPORT / "model.py").read_bytes())
        (version / "model.onnx").write_bytes((self.net / "model.onnx").read_bytes())
        (tmp / "repo" / MODEL / "config.pbtxt").write_text(
            'backend: "python"\nmax_batch_size: 0\n'
            'input [ { name: "INPUT" data_type: TYPE_FP32 dims: [ 1, 3, 32, 32 ] } ]\n'
            'output [ { name: "OUTPUT" data_type: TYPE_FP32 dims: [ 1, 16 ] } ]\n'
            "instance_group [ { kind: KIND_CPU count: 1 } ]\n"
        )
        # Bytecode written into the repository at load would look like a changed model.
        subprocess.run([self.install["TRITON_PYTHON"], "-m", "compileall", "-q", str(version)], check=True)
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.log = tmp / "triton.log"
        env = {
            **os.environ,
            "LD_LIBRARY_PATH": self.install["TRITON_LD_LIBRARY_PATH"],
            "PATH": f"{self.install['TRITON_PATH']}:{os.environ.get('PATH', '')}",
            "PYTHONPATH": self.install["TRITON_PYTHONPATH"],
        }
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [self.install["TRITON_BIN"], "--model-repository", str(tmp / "repo"),
                 "--model-control-mode", "explicit", "--backend-directory", self.install["TRITON_BACKENDS"],
                 "--allow-http", "false", "--allow-metrics", "false", "--grpc-address", "127.0.0.1",
                 "--grpc-port", str(self.port), "--exit-timeout-secs", "2"],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip
        self.client = tc.InferenceServerClient(url=self.endpoint)
        # ServerReady is Triton's own signal; it has no push form, so poll it.
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"tritonserver exited before ready:\n{self.log.read_text()[-4000:]}")
            try:
                if self.client.is_server_ready():
                    break
            except Exception:  # not listening yet
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"tritonserver not ready in 120 s:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # Triton and its python stubs: its own group
            self.proc.wait()


@pytest.fixture
def triton(tmp_path: Path) -> Iterator[Triton]:
    t = Triton(tmp_path / "triton")
    try:
        yield t
    finally:
        t.stop()


@pytest.fixture
def triton_daemon(tmp_path: Path, triton: Triton) -> Iterator[Daemon]:
    config = tmp_path / "daemon.yaml"
    config.write_text(
        "node_name: clients-test\n"
        "gpus:\n  backend: simulated\n  reserve_mib: 0\n"
        '  simulated:\n    - { name: "Test GPU", memory_mib: 10000, count: 1 }\n'
        "admission:\n  lease_ttl: 10s\n"
        "cluster:\n  publish: off\n"
        f"runtime:\n  kind: triton\n  endpoint: {triton.endpoint}\n  load_timeout: 60s\n"
        f"models:\n  - {{ name: {CATALOG_NAME}, runtime_name: {MODEL}, weights_mib: 100, working_mib: 100, load_ms: 0 }}\n"
    )
    d = Daemon(tmp_path / "state", config)
    try:
        yield d
    finally:
        d.stop()


def test_a_cold_task_loads_the_model_into_triton_and_infers_through_the_lease(
    triton: Triton, triton_daemon: Daemon
) -> None:
    assert not triton.client.is_model_ready(MODEL), "explicit mode: nothing is loaded yet"
    x = np.fromfile(triton.net / "input.f32", dtype="<f4").reshape(1, 3, 32, 32)
    expected = np.fromfile(triton.net / "expected.f32", dtype="<f4").reshape(1, 16)
    with Client(triton_daemon.task_socket, triton_daemon.token) as c, c.task(CATALOG_NAME, timeout=WAIT_S) as lease:
        assert not lease.warm
        assert lease.runtime_endpoint == triton.endpoint
        assert (lease.model, lease.runtime_model) == (CATALOG_NAME, MODEL)
        assert triton.client.is_model_ready(MODEL), "the daemon loaded it for this lease"
        inp = tc.InferInput("INPUT", [1, 3, 32, 32], "FP32")
        inp.set_data_from_numpy(x)
        # No model_name: the lease says what Triton calls the catalog's model.
        result = lease.infer([inp], [tc.InferRequestedOutput("OUTPUT")])
        np.testing.assert_allclose(result.as_numpy("OUTPUT"), expected, rtol=1e-4, atol=1e-5)
    assert triton.client.is_model_ready(MODEL), "released, the model stays warm"


def test_the_triton_example_admits_infers_through_triton_and_releases_cold_then_warm(
    triton: Triton, triton_daemon: Daemon
) -> None:
    """examples/python/triton_task.py, as a pod runs it: three tasks, the
    first loads the model, every answer is onnxruntime's."""
    import json
    import sys

    out = subprocess.run(
        [sys.executable, str(REPO / "examples" / "python" / "triton_task.py"), CATALOG_NAME, "--tasks", "3",
         "--input", str(triton.net / "input.f32"), "--timeout", str(WAIT_S),
         "--socket", triton_daemon.task_socket, "--token", triton_daemon.token],
        capture_output=True, text=True, timeout=2 * WAIT_S, check=False,
    )  # fmt: skip
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr}"
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    tasks = summary["tasks"]
    assert [t["warm"] for t in tasks] == [False, True, True], summary
    expected = np.fromfile(triton.net / "expected.f32", dtype="<f4")
    for t in tasks:
        assert (t["runtime_endpoint"], t["runtime_model"]) == (triton.endpoint, MODEL), t
        assert t["outputs"]["OUTPUT"]["shape"] == [1, 16], t
        np.testing.assert_allclose(t["outputs"]["OUTPUT"]["values"], expected, rtol=1e-4, atol=1e-5)
        assert 0 < t["admit_ms"] <= t["first_result_ms"], t
    assert triton.client.is_model_ready(MODEL), "released, the model stays warm"
