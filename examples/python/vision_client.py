"""A task pod's client of vision-node-daemon: Admit → run the task → Release.

Runs inside a pod that requested `vision.ai/slot`; Allocate put VISION_SOCKET
(the task socket's path in the container) and VISION_TOKEN in its environment.
The channel uses grpcio's default options: the daemon accepts the `:authority`
grpcio derives from a Unix socket path.

    python vision_client.py run yolo-v8n --seconds 0.2
    python vision_client.py status
    python vision_client.py watch --count 5

Generate the stubs first (./generate.sh) or put them on PYTHONPATH.
"""

import argparse
import contextlib
import json
import os
import sys
import threading
import time

import grpc
from google.protobuf import json_format
from vision.v1 import admission_pb2 as pb
from vision.v1 import admission_pb2_grpc as rpc


def connect(socket_path):
    return grpc.insecure_channel("unix:" + socket_path)


@contextlib.contextmanager
def gpu_lease(stub, token, model, timeout_ms=None, priority=0, task_type=""):
    """Holds a lease for one task; keeps it alive and releases it on exit."""
    request = pb.AdmitRequest(token=token, model=model, priority=priority, task_type=task_type)
    if timeout_ms is not None:
        request.timeout_ms = timeout_ms
    lease = stub.Admit(request).lease
    stop = threading.Event()

    def keep_alive():
        # Renew at half the TTL so that a slow task never loses its memory.
        while not stop.wait(lease.ttl_ms / 2000.0):
            stub.KeepAlive(pb.KeepAliveRequest(token=token, lease_id=lease.lease_id))

    renewer = threading.Thread(target=keep_alive, daemon=True)
    renewer.start()
    try:
        yield lease
    finally:
        stop.set()
        stub.Release(pb.ReleaseRequest(token=token, lease_id=lease.lease_id))


def as_dict(message):
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def cmd_run(stub, token, args):
    with gpu_lease(stub, token, args.model, timeout_ms=args.timeout_ms) as lease:
        # The task would run on lease.gpu_uuid (through lease.runtime_endpoint
        # when the node has a model server) here.
        time.sleep(args.seconds)
        print(json.dumps({"lease": as_dict(lease)}))


def cmd_status(stub, token, _args):
    print(json.dumps(as_dict(stub.Status(pb.StatusRequest(token=token)))))


def cmd_watch(stub, token, args):
    for n, event in enumerate(stub.Watch(pb.WatchRequest(token=token)), start=1):
        print(json.dumps(as_dict(event)), flush=True)
        if args.count and n >= args.count:
            break


def cmd_demo(stub, token, args):
    """Watch, Status, a cold then a warm Admit/Release: one JSON summary line."""
    events = []
    subscribed = threading.Event()
    seen_two_releases = threading.Event()
    watch = stub.Watch(pb.WatchRequest(token=token))

    def collect():
        for event in watch:
            kind = event.WhichOneof("event")
            events.append(kind)
            # The stream opens with the queue depth: from here on nothing is missed.
            subscribed.set()
            if events.count("lease_released") >= 2:
                seen_two_releases.set()
                return

    watcher = threading.Thread(target=collect, daemon=True)
    watcher.start()
    if not subscribed.wait(timeout=10):
        raise RuntimeError("the Watch stream did not open within 10 s")
    status = stub.Status(pb.StatusRequest(token=token))
    leases = []
    for _ in range(2):
        with gpu_lease(stub, token, args.model) as lease:
            leases.append(as_dict(lease))
    seen_two_releases.wait(timeout=10)
    watch.cancel()
    print(json.dumps({
        "grpcio": grpc.__version__,
        "node": status.node,
        "slots": status.slots,
        "gpus": len(status.gpus),
        "leases": leases,
        "events": events,
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", default=os.environ.get("VISION_SOCKET", "/var/run/vision/agent.sock"))
    parser.add_argument("--token", default=os.environ.get("VISION_TOKEN", ""))
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="admit, run a (pretend) task, release")
    run.add_argument("model")
    run.add_argument("--seconds", type=float, default=0.1)
    run.add_argument("--timeout-ms", type=int, default=None)
    sub.add_parser("status")
    watch = sub.add_parser("watch")
    watch.add_argument("--count", type=int, default=0)
    demo = sub.add_parser("demo")
    demo.add_argument("model")
    args = parser.parse_args()
    with connect(args.socket) as channel:
        stub = rpc.AdmissionStub(channel)
        try:
            {"run": cmd_run, "status": cmd_status, "watch": cmd_watch, "demo": cmd_demo}[args.command](
                stub, args.token, args)
        except grpc.RpcError as e:
            print(json.dumps({"error": e.code().name, "details": e.details()}))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
