"""The real daemon for the client's tests.

Each test that asks for ``daemon`` gets its own vision-node-daemon process
(the binary cargo built: $VISION_DAEMON_BIN, else target/debug/), started with
``--dev --config clients/testdata/daemon.yaml --state-dir <tmp>``, and stopped
with SIGTERM afterwards.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
CONFIG = REPO / "clients" / "testdata" / "daemon.yaml"
sys.path.insert(0, str(HERE))  # the _stubs package (the model runtime's messages)

from vision_node import pb  # noqa: E402
from vision_node._rpc import Stub  # noqa: E402

#: Every wait in these tests ends within this many seconds.
WAIT_S = 20.0


def daemon_binary() -> Path:
    explicit = os.environ.get("VISION_DAEMON_BIN")
    if explicit:
        return Path(explicit)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    return target / "debug" / "vision-node-daemon"


class Daemon:
    """A running vision-node-daemon with its state under ``state_dir``."""

    def __init__(self, state_dir: Path, config: Path = CONFIG) -> None:
        binary = daemon_binary()
        if not binary.exists():
            pytest.fail(f"{binary} is missing: run `cargo build --bin vision-node-daemon` (or set VISION_DAEMON_BIN)")
        self.state_dir = state_dir
        self.task_socket = str(state_dir / "pods" / "agent.sock")
        self.admin_socket = str(state_dir / "admin.sock")
        self.log: list[str] = []
        self.proc = subprocess.Popen(
            [str(binary), "run", "--dev", "--config", str(config), "--state-dir", str(state_dir),
             "--http-addr", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "RUST_LOG": "info", "NO_COLOR": "1"},
        )
        self._drain = threading.Thread(target=self._read_log, daemon=True)
        self._drain.start()
        # Reconnect quickly while the daemon starts (grpcio's first backoff is 1 s).
        fast = [("grpc.initial_reconnect_backoff_ms", 20), ("grpc.min_reconnect_backoff_ms", 20),
                ("grpc.max_reconnect_backoff_ms", 100)]
        self._channel = grpc.insecure_channel("unix:" + self.admin_socket, options=fast)
        self.admin = Stub(self._channel)
        try:
            # Answers once the daemon serves: a real signal, no polling.
            self.admin.status(pb.StatusRequest(), timeout=WAIT_S, wait_for_ready=True)
        except grpc.RpcError as e:
            self.stop()
            pytest.fail(f"the daemon did not start serving ({e.code().name}):\n" + "".join(self.log))
        self.token = (state_dir / "dev-token").read_text().strip()

    def _read_log(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line)

    def status(self) -> Any:
        return self.admin.status(pb.StatusRequest(), timeout=WAIT_S)

    def fault(self, gpu: str, faulted: bool = True, reason: str = "") -> Any:
        """SetGpuFault on the admin socket (simulated GPUs)."""
        return self.admin.set_gpu_fault(pb.SetGpuFaultRequest(gpu=gpu, faulted=faulted, reason=reason), timeout=WAIT_S)

    def stop(self) -> None:
        self._channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._drain.join(timeout=WAIT_S)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path / "state")
    try:
        yield d
    finally:
        d.stop()


class Recorder(logging.Handler):
    """Collects vision_node's log records; ``wait_for`` blocks until one
    contains a text (set from the client's own threads: a real signal)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[str] = []
        self._cond = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._cond:
            self.records.append(record.getMessage())
            self._cond.notify_all()

    def wait_for(self, text: str, timeout: float = WAIT_S) -> str:
        with self._cond:
            found = self._cond.wait_for(lambda: next((r for r in self.records if text in r), None), timeout)
        if not found:
            pytest.fail(f"no log record with {text!r} within {timeout} s: {self.records}")
        return found


@pytest.fixture
def client_log() -> Iterator[Recorder]:
    rec = Recorder()
    logger = logging.getLogger("vision_node")
    old = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(rec)
    try:
        yield rec
    finally:
        logger.removeHandler(rec)
        logger.setLevel(old)
