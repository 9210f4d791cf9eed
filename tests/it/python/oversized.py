"""Sends oversized and unknown strings to the daemon with grpcio's defaults.

Usage: oversized.py TASK_SOCKET ADMIN_SOCKET TOKEN

Prints one JSON line: {"grpcio": version, "calls": {name: {"code": ...,
"details_bytes": ...}}}. The generated stubs (vision/v1/admission_pb2*.py)
must be on PYTHONPATH. grpcio drops a status whose grpc-message exceeds its
metadata limit and reports RESOURCE_EXHAUSTED instead: the codes printed are
what a Python client really sees.
"""

import json
import sys

import grpc
from vision.v1 import admission_pb2 as pb
from vision.v1 import admission_pb2_grpc as rpc

MIB = 1 << 20


def code_of(call):
    try:
        call()
    except grpc.RpcError as e:
        return {"code": e.code().name, "details_bytes": len(e.details() or "")}
    return {"code": "OK", "details_bytes": 0}


def main() -> int:
    task_socket, admin_socket, token = sys.argv[1:4]
    calls = {}
    with grpc.insecure_channel("unix:" + task_socket) as task, grpc.insecure_channel(
        "unix:" + admin_socket
    ) as admin:
        t = rpc.AdmissionStub(task)
        a = rpc.AdmissionStub(admin)
        calls["admit_model_1mib"] = code_of(
            lambda: t.Admit(pb.AdmitRequest(token=token, model="m" * MIB), timeout=30)
        )
        calls["admit_task_type_100kb"] = code_of(
            lambda: t.Admit(
                pb.AdmitRequest(token=token, model="yolo-v8n", task_type="t" * 100_000),
                timeout=30,
            )
        )
        calls["admit_token_1mib"] = code_of(
            lambda: t.Admit(pb.AdmitRequest(token="x" * MIB, model="yolo-v8n"), timeout=30)
        )
        calls["release_token_1mib"] = code_of(
            lambda: t.Release(pb.ReleaseRequest(token="x" * MIB, lease_id=1), timeout=30)
        )
        calls["admit_unknown_model"] = code_of(
            lambda: t.Admit(pb.AdmitRequest(token=token, model="no-such-model"), timeout=30)
        )
        calls["preload_model_1mib"] = code_of(
            lambda: a.Preload(pb.PreloadRequest(model="m" * MIB), timeout=30)
        )
        calls["evict_gpu_1mib"] = code_of(
            lambda: a.Evict(pb.EvictRequest(model="yolo-v8n", gpu="g" * MIB), timeout=30)
        )
    print(json.dumps({"grpcio": grpc.__version__, "calls": calls}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
