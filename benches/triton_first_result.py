#!/usr/bin/env python3
"""Admit-to-first-result, warm vs cold, with a real Triton: the figures in
benches/README.md ("A whole task through Triton").

    bash .ci/clients-check          # once: the client venv (tritonclient, pytest) and the binaries
    target/clients/py-venv/bin/python benches/triton_first_result.py --cold 10 --warm 50

Starts the tritonserver of .ci/triton-setup (CPU, explicit model control) with
the real-Triton tests' model (a python-backend model serving a small ONNX
network through onnxruntime) and a daemon driving it, exactly as
clients/python/tests/test_triton_real.py does. Then it runs
examples/python/triton_task.py's task (admit → infer through tritonclient on
the lease's endpoint → release):
- cold: before each task the model is evicted on the admin socket, and the
  task starts once Triton says the model is unloaded, so its admission loads
  it;
- warm: the model stays loaded.
Prints one JSON line with the distribution of each (ms) and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "clients" / "python" / "tests"), str(REPO / "examples" / "python")]

from conftest import Daemon  # noqa: E402
from test_triton_real import CATALOG_NAME, MODEL, Triton  # noqa: E402
from triton_task import Inputs, run_task  # noqa: E402

from vision_node import Client, pb  # noqa: E402


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "min": ordered[0],
        "p50": statistics.median(ordered),
        "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
        "max": ordered[-1],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cold", type=int, default=10)
    parser.add_argument("--warm", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        triton = Triton(root / "triton")
        try:
            config = root / "daemon.yaml"
            config.write_text(
                "node_name: bench\n"
                "gpus:\n  backend: simulated\n  reserve_mib: 0\n"
                '  simulated:\n    - { name: "Bench GPU", memory_mib: 10000, count: 1 }\n'
                "admission:\n  lease_ttl: 10s\n"
                "cluster:\n  publish: off\n"
                f"runtime:\n  kind: triton\n  endpoint: {triton.endpoint}\n  load_timeout: 60s\n"
                f"models:\n  - {{ name: {CATALOG_NAME}, runtime_name: {MODEL}, weights_mib: 100,"
                " working_mib: 100, load_ms: 0 }\n"
            )
            daemon = Daemon(root / "state", config)
            evict = daemon._channel.unary_unary(
                "/vision.v1.Admission/Evict",
                request_serializer=pb.EvictRequest.SerializeToString,
                response_deserializer=pb.EvictResponse.FromString,
            )
            try:
                inputs = Inputs((triton.net / "input.f32").read_bytes(), 0)
                tasks: dict[str, list[dict[str, Any]]] = {"cold": [], "warm": []}
                with Client(daemon.task_socket, daemon.token) as client:
                    for _ in range(args.cold):
                        if triton.client.is_model_ready(MODEL):
                            evict(pb.EvictRequest(model=CATALOG_NAME), timeout=30)
                            deadline = time.monotonic() + 30
                            # Triton has no unload notification: ask until it says so.
                            while triton.client.is_model_ready(MODEL):
                                if time.monotonic() > deadline:
                                    raise RuntimeError("the evicted model is still loaded in Triton after 30 s")
                                time.sleep(0.01)
                        t = run_task(client, CATALOG_NAME, inputs, 120)
                        assert not t["warm"], t
                        tasks["cold"].append(t)
                    if args.warm and not tasks["cold"]:
                        run_task(client, CATALOG_NAME, inputs, 120)  # loads it: the warm runs start warm
                    for _ in range(args.warm):
                        t = run_task(client, CATALOG_NAME, inputs, 120)
                        assert t["warm"], t
                        tasks["warm"].append(t)
            finally:
                daemon.stop()
        finally:
            triton.stop()
    result: dict[str, Any] = {
        kind: {
            "first_result_ms": summary([t["first_result_ms"] for t in runs]),
            "admit_ms": summary([t["admit_ms"] for t in runs]),
        }
        for kind, runs in tasks.items()
        if runs
    }
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}"
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
