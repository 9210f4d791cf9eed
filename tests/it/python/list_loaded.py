"""Calls vision.v1.ModelRuntime/ListLoaded with grpcio, as a task pod would.

Usage: list_loaded.py TARGET [--option NAME=VALUE ...]

The channel uses grpcio's defaults unless --option is given. Prints one JSON
line: {"ok": true, "models": [...]} or {"ok": false, "code": ..., "details": ...};
exits 0 on success, 1 on an RPC error. The generated stubs (vision/v1/
runtime_pb2*.py) must be on PYTHONPATH.
"""

import argparse
import json
import sys

import grpc
from vision.v1 import runtime_pb2, runtime_pb2_grpc


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("--option", action="append", default=[])
    args = parser.parse_args()
    options = [tuple(o.split("=", 1)) for o in args.option]
    result = {"grpcio": grpc.__version__, "target": args.target}
    with grpc.insecure_channel(args.target, options=options) as channel:
        stub = runtime_pb2_grpc.ModelRuntimeStub(channel)
        try:
            reply = stub.ListLoaded(runtime_pb2.ListLoadedRequest(), timeout=30)
        except grpc.RpcError as e:
            result.update(ok=False, code=e.code().name, details=e.details())
            print(json.dumps(result))
            return 1
    result.update(ok=True, models=[m.model for m in reply.models])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
