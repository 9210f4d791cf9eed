"""What the sync and the asyncio clients share: the environment, statistics,
the Triton client factory."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import MissingEnvironment, NoModelServer, VisionError

#: What the device plugin's Allocate puts in a container's environment.
ENV_SOCKET = "VISION_SOCKET"
ENV_TOKEN = "VISION_TOKEN"
#: A container with `vision.ai/vram` (and no slot) gets its token here.
ENV_VRAM_TOKEN = "VISION_VRAM_TOKEN"

#: How long Release and KeepAlive calls may take.
CALL_TIMEOUT_S = 5.0
#: After a failed KeepAlive, how soon to try again (the lease may still be valid).
KEEPALIVE_RETRY_S = 0.25


def socket_and_token(environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """VISION_SOCKET and the token (VISION_TOKEN, else VISION_VRAM_TOKEN)."""
    env = os.environ if environ is None else environ
    socket = env.get(ENV_SOCKET, "")
    token = env.get(ENV_TOKEN, "") or env.get(ENV_VRAM_TOKEN, "")
    missing = [n for n, v in ((ENV_SOCKET, socket), (f"{ENV_TOKEN} (or {ENV_VRAM_TOKEN})", token)) if not v]
    if missing:
        raise MissingEnvironment(
            f"{' and '.join(missing)} not set: this container got no vision.ai device. "
            "Request one in the container's resources.limits (e.g. `vision.ai/slot: 1`), "
            "or pass socket= and token= (e.g. the dev daemon's .vision-dev/pods/agent.sock "
            "and .vision-dev/dev-token)"
        )
    return socket, token


@dataclass(frozen=True)
class Stats:
    """This client's tasks so far (not the node's: see ``status()``)."""

    #: Tasks that ended: leases released or lost, and admissions refused.
    tasks: int
    #: Of those, the ones whose lease was released after the body finished without an error.
    succeeded: int
    #: tasks − succeeded: refused admissions, bodies that raised, leases lost.
    failed: int
    admission_failures: int
    leases_lost: int
    #: Admission attempts repeated after RESOURCE_EXHAUSTED / UNAVAILABLE.
    retries: int
    #: Leases held right now.
    in_flight: int
    warm: int
    cold: int
    #: Mean time from asking to holding a lease (retries included), over granted admissions.
    mean_wait_ms: float
    #: Mean time a lease was held, over ended leases.
    mean_hold_ms: float
    #: warm / (warm + cold); 0 before the first lease.
    warm_ratio: float


class StatsRecorder:
    """Thread-safe counters behind ``Stats``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._granted = self._warm = self._ended = self._succeeded = 0
        self._refused = self._lost = self._retries = 0
        self._wait_ms = self._hold_ms = 0.0

    def granted(self, wait_ms: float, warm: bool) -> None:
        with self._lock:
            self._granted += 1
            self._warm += int(warm)
            self._wait_ms += wait_ms

    def refused(self) -> None:
        with self._lock:
            self._refused += 1

    def retried(self) -> None:
        with self._lock:
            self._retries += 1

    def ended(self, hold_ms: float, ok: bool, lost: bool) -> None:
        with self._lock:
            self._ended += 1
            self._succeeded += int(ok)
            self._lost += int(lost)
            self._hold_ms += hold_ms

    def snapshot(self) -> Stats:
        with self._lock:
            tasks = self._ended + self._refused
            return Stats(
                tasks=tasks,
                succeeded=self._succeeded,
                failed=tasks - self._succeeded,
                admission_failures=self._refused,
                leases_lost=self._lost,
                retries=self._retries,
                in_flight=self._granted - self._ended,
                warm=self._warm,
                cold=self._granted - self._warm,
                mean_wait_ms=self._wait_ms / self._granted if self._granted else 0.0,
                mean_hold_ms=self._hold_ms / self._ended if self._ended else 0.0,
                warm_ratio=self._warm / self._granted if self._granted else 0.0,
            )


def triton_url(endpoint: str) -> str:
    """A lease's runtime endpoint as tritonclient's gRPC ``url`` (a grpcio
    target: ``host:port``, ``unix:///path``)."""
    if not endpoint:
        raise NoModelServer(
            "this lease has no runtime endpoint: the node's runtime keeps only the ledger "
            "(runtime.kind: bookkeeping), so no model server holds the model. "
            "Run the model in this pod on lease.cuda_device"
        )
    for scheme in ("grpc://", "http://"):
        if endpoint.startswith(scheme):
            return endpoint[len(scheme) :]
    return endpoint


def import_triton(aio: bool) -> Any:
    """tritonclient.grpc (or .aio), with an install hint when it is missing."""
    try:
        if aio:
            import tritonclient.grpc.aio as module
        else:
            import tritonclient.grpc as module
    except ImportError as e:
        raise VisionError(
            "lease.infer() needs tritonclient: pip install 'vision-node-client[triton]'"
        ) from e
    return module
