"""``lease.infer()``: admit through the daemon, infer through tritonclient on
the lease's runtime endpoint.

The daemon runs with its gRPC model runtime (``runtime.kind: grpc``) pointed
at a model runtime served here, whose LoadModel answers with the address of a
Triton stand-in: a servicer of Triton's own ``inference.GRPCInferenceService``
(the service tritonclient ships) that adds one to its input. That exercises
the client's whole path (endpoint → tritonclient → result) with a servicer
the test controls; test_triton_real.py runs the same path against a real
Triton.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from _stubs.vision.v1 import runtime_pb2 as rpb
from conftest import CONFIG, WAIT_S, Daemon
from tritonclient.grpc import InferInput, InferRequestedOutput, service_pb2, service_pb2_grpc

from vision_node import AsyncClient, Client, LeaseLost, NoModelServer


class AddOne(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """Triton's inference service for one INT32 input: OUTPUT0 = INPUT0 + 1."""

    def __init__(self) -> None:
        self.models: list[str] = []

    def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802 (Triton's name)
        self.models.append(request.model_name)
        (inp,) = request.inputs
        data = np.frombuffer(request.raw_input_contents[0], dtype=np.int32) + 1
        out = service_pb2.ModelInferResponse(model_name=request.model_name, id=request.id)
        out.outputs.add(name="OUTPUT0", datatype="INT32", shape=list(inp.shape))
        out.raw_output_contents.append(data.astype(np.int32).tobytes())
        return out


class ModelRuntime:
    """vision.v1.ModelRuntime: every load succeeds and is served at ``endpoint``."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(fn: Any, req: Any, resp: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=req.FromString, response_serializer=resp.SerializeToString
            )

        return grpc.method_handlers_generic_handler(
            "vision.v1.ModelRuntime",
            {
                "LoadModel": unary(
                    # The server's own name for the model: what leases tell infer() to use.
                    lambda r, c: rpb.LoadModelResponse(endpoint=self.endpoint, runtime_model=f"{r.model}_v1"),
                    rpb.LoadModelRequest,
                    rpb.LoadModelResponse,
                ),
                "UnloadModel": unary(lambda r, c: rpb.UnloadModelResponse(), rpb.UnloadModelRequest, rpb.UnloadModelResponse),
                "ListLoaded": unary(lambda r, c: rpb.ListLoadedResponse(), rpb.ListLoadedRequest, rpb.ListLoadedResponse),
            },
        )


@pytest.fixture
def triton() -> Iterator[tuple[AddOne, str]]:
    servicer = AddOne()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(None)


@pytest.fixture
def served_daemon(tmp_path: Path, triton: tuple[AddOne, str]) -> Iterator[Daemon]:
    socket = tmp_path / "runtime.sock"
    runtime = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    runtime.add_generic_rpc_handlers((ModelRuntime(triton[1]).handler(),))
    runtime.add_insecure_port(f"unix:{socket}")
    runtime.start()
    config = tmp_path / "daemon.yaml"
    text = CONFIG.read_text()
    bookkeeping = "runtime:\n  kind: bookkeeping\n  simulate_load_time: false\n"
    assert bookkeeping in text
    config.write_text(text.replace(bookkeeping, f"runtime:\n  kind: grpc\n  endpoint: unix://{socket}\n"))
    d = Daemon(tmp_path / "state", config)
    try:
        yield d
    finally:
        d.stop()
        runtime.stop(None)


def add_one_input() -> InferInput:
    inp = InferInput("INPUT0", [1, 4], "INT32")
    inp.set_data_from_numpy(np.arange(4, dtype=np.int32).reshape(1, 4))
    return inp


def test_infer_goes_to_the_leases_runtime_endpoint(served_daemon: Daemon, triton: tuple[AddOne, str]) -> None:
    servicer, endpoint = triton
    with Client(served_daemon.task_socket, served_daemon.token) as c, c.task("small") as lease:
        assert lease.runtime_endpoint == endpoint
        assert lease.runtime_model == "small_v1"
        result = lease.infer([add_one_input()], [InferRequestedOutput("OUTPUT0")])
        assert result.as_numpy("OUTPUT0").tolist() == [[1, 2, 3, 4]]
        # Another name, given explicitly.
        lease.infer([add_one_input()], model_name="yolov8n_onnx")
    assert servicer.models == ["small_v1", "yolov8n_onnx"]


def test_infer_on_a_lost_lease_raises_without_calling_triton(served_daemon: Daemon, triton: tuple[AddOne, str]) -> None:
    servicer, _ = triton
    with Client(served_daemon.task_socket, served_daemon.token) as c:
        with pytest.raises(LeaseLost):
            with c.task("small") as lease:
                served_daemon.fault(lease.gpu_uuid)
                assert lease.lost.wait(WAIT_S)
                lease.infer([add_one_input()])
    assert servicer.models == []


def test_infer_without_a_model_server_says_so(daemon: Daemon) -> None:
    with Client(daemon.task_socket, daemon.token) as c, c.task("small") as lease:
        with pytest.raises(NoModelServer, match="cuda_device"):
            lease.infer([add_one_input()])


def test_async_infer(served_daemon: Daemon, triton: tuple[AddOne, str]) -> None:
    async def main() -> list[list[int]]:
        async with AsyncClient(served_daemon.task_socket, served_daemon.token) as c:
            async with c.task("small") as lease:
                result = await lease.infer([add_one_input()])
                out: list[list[int]] = result.as_numpy("OUTPUT0").tolist()
                return out

    assert asyncio.run(asyncio.wait_for(main(), WAIT_S)) == [[1, 2, 3, 4]]
