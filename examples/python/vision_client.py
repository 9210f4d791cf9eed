#!/usr/bin/env python3
"""A task pod's work with vision-node-client: admit, run, release.

    pip install ./clients/python                        # in a pod: an image that has it
    python vision_client.py yolo-v8n                    # one task
    python vision_client.py yolo-v8n --tasks 2 --watch  # two, and the Watch events they caused

Prints one JSON line: the node, the leases, the client's stats and (--watch)
the event types; or {"error": CODE, "details": ...} when the daemon refuses.
In a pod, VISION_SOCKET and VISION_TOKEN come from the device plugin;
elsewhere pass --socket and --token (the dev daemon's .vision-dev/pods/agent.sock
and .vision-dev/dev-token).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from typing import Any

from vision_node import Client, LeaseReleased, VisionError


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--task-type", default="")
    parser.add_argument("--tasks", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=0.1, help="how long each (pretend) task holds the GPU")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a lease")
    parser.add_argument("--watch", action="store_true", help="also report the Watch events")
    parser.add_argument("--socket", help="default: $VISION_SOCKET")
    parser.add_argument("--token", help="default: $VISION_TOKEN")
    args = parser.parse_args()

    client = Client(args.socket, args.token) if args.socket and args.token else Client.from_env()
    with client:
        events = client.watch(timeout=30) if args.watch else None
        seen = [type(next(events)).__name__] if events else []  # the stream is open: nothing is missed
        leases: list[dict[str, Any]] = []
        try:
            status = client.status()
            for _ in range(args.tasks):
                with client.task(args.model, task_type=args.task_type, timeout=args.timeout) as lease:
                    # The task runs here: its model on torch.device("cuda", lease.cuda_device),
                    # or through the node's Triton with lease.infer(...). It holds the GPU memory
                    # until the block ends; the lease is kept alive meanwhile.
                    time.sleep(args.seconds)
                    leases.append({**asdict(lease.info), "cuda_device": lease.cuda_device})
        except VisionError as e:
            print(json.dumps({"error": e.code or type(e).__name__, "details": e.details or str(e)}))
            return 1
        released = 0
        for event in events or []:
            seen.append(type(event).__name__)
            released += isinstance(event, LeaseReleased)
            if released == len(leases):
                break
        node = {"node": status.node, "slots": status.slots, "gpus": len(status.gpus)}
        print(json.dumps({**node, "leases": leases, "stats": asdict(client.stats()), "events": seen}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
