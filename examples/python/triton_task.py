#!/usr/bin/env python3
"""A task pod's whole task on a Triton node: admit, infer through Triton, release.

    pip install './clients/python[triton]'              # vision-node-client with tritonclient
    python triton_task.py yolo-v8n                      # one task, a random input
    python triton_task.py yolo-v8n --tasks 3 --input image.f32

Each task asks the daemon for a lease (which loads the model into the node's
Triton when it is cold), sends one inference to the Triton the lease names
(``lease.runtime_endpoint``, the model under ``lease.runtime_model``) with
tritonclient, and releases the lease; the model stays loaded, so the next
task finds it warm. The input's names, shapes and types come from Triton's
model metadata; its values from --input (raw little-endian bytes for the
first input) or a seeded random generator.

Prints one JSON line: per task, whether it was warm, the admission time and
the admit-to-first-result time (admission, load when cold, inference), and
the outputs (values when small, else shape and sum); or
{"error": CODE, "details": ...} when the daemon refuses. In a pod,
VISION_SOCKET and VISION_TOKEN come from the device plugin; elsewhere pass
--socket and --token.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as tc
from tritonclient.utils import triton_to_np_dtype

from vision_node import Client, Lease, VisionError

#: Outputs up to this many values are printed whole.
PRINT_VALUES = 64


class Inputs:
    """What to send: built once from the model's metadata, then reused."""

    def __init__(self, raw: bytes | None, seed: int) -> None:
        self._raw = raw
        self._rng = np.random.default_rng(seed)
        self._built: tuple[list[Any], list[Any]] | None = None

    def for_lease(self, lease: Lease) -> tuple[list[Any], list[Any]]:
        if self._built is None:
            meta = lease.triton_client().get_model_metadata(lease.infer_model, as_json=True)
            inputs = []
            for i, spec in enumerate(meta["inputs"]):
                shape = [1 if int(d) < 0 else int(d) for d in spec["shape"]]
                dtype = triton_to_np_dtype(spec["datatype"])
                if i == 0 and self._raw is not None:
                    data = np.frombuffer(self._raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
                else:
                    data = self._rng.standard_normal(shape).astype(dtype)
                tensor = tc.InferInput(spec["name"], shape, spec["datatype"])
                tensor.set_data_from_numpy(np.ascontiguousarray(data, dtype=dtype))
                inputs.append(tensor)
            outputs = [tc.InferRequestedOutput(o["name"]) for o in meta["outputs"]]
            self._built = (inputs, outputs)
        return self._built


def run_task(client: Client, model: str, inputs: Inputs, timeout: float) -> dict[str, Any]:
    """One task: admit → infer → release, timed from before the admission to
    the inference's answer."""
    started = time.perf_counter()
    with client.task(model, timeout=timeout) as lease:
        admitted = time.perf_counter()
        tensors, requested = inputs.for_lease(lease)
        result = lease.infer(tensors, requested)
        answered = time.perf_counter()
        outputs: dict[str, Any] = {}
        for out in requested:
            name = out.name()
            values = result.as_numpy(name)
            outputs[name] = (
                {"shape": list(values.shape), "values": values.ravel().tolist()}
                if values.size <= PRINT_VALUES
                else {"shape": list(values.shape), "sum": float(values.sum())}
            )
        return {
            "warm": lease.warm,
            "gpu_index": lease.gpu_index,
            "runtime_endpoint": lease.runtime_endpoint,
            "runtime_model": lease.infer_model,
            "admit_ms": round((admitted - started) * 1000, 3),
            "first_result_ms": round((answered - started) * 1000, 3),
            "outputs": outputs,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--tasks", type=int, default=1)
    parser.add_argument("--input", type=Path, help="raw little-endian bytes for the model's first input")
    parser.add_argument("--seed", type=int, default=0, help="for inputs not given by --input")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a lease (a cold load too)")
    parser.add_argument("--socket", help="default: $VISION_SOCKET")
    parser.add_argument("--token", help="default: $VISION_TOKEN")
    args = parser.parse_args()

    inputs = Inputs(args.input.read_bytes() if args.input else None, args.seed)
    client = Client(args.socket, args.token) if args.socket and args.token else Client.from_env()
    with client:
        try:
            tasks = [run_task(client, args.model, inputs, args.timeout) for _ in range(args.tasks)]
        except VisionError as e:
            print(json.dumps({"error": e.code or type(e).__name__, "details": e.details or str(e)}))
            return 1
    print(json.dumps({"model": args.model, "tasks": tasks}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
