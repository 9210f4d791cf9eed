"""Errors, one class per thing a caller may want to handle differently.

Every error carries the gRPC status code (``code``, e.g. ``"NOT_FOUND"``) and
the daemon's message (``details``), which says what to do.
"""

from __future__ import annotations

from typing import Any


class VisionError(Exception):
    """A call to vision-node-daemon failed."""

    code: str
    details: str

    def __init__(self, message: str, *, code: str = "", details: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.details = details


class ModelNotFound(VisionError):
    """NOT_FOUND: the daemon's catalog has no such model (the message lists
    the known ones). Fix the name."""


class ModelTooLarge(VisionError):
    """FAILED_PRECONDITION: the model can never fit on this node's GPUs (the
    message has the MiB figures). Use a smaller model or a bigger node."""


class NodeBusy(VisionError):
    """RESOURCE_EXHAUSTED: the node's queue stayed full, or no slot or memory
    was free with ``timeout=0``, until the timeout ran out (the client retried
    meanwhile). Allow a longer timeout, or send the work to another node."""


class AdmissionTimeout(VisionError, TimeoutError):
    """DEADLINE_EXCEEDED: no lease within the timeout. Allow longer, raise the
    priority, or send the work to another node."""


class PermissionDenied(VisionError):
    """PERMISSION_DENIED: missing or unknown token. Inside a pod, use the
    VISION_TOKEN that the device plugin put in the container's environment
    (``Client.from_env()``); the pod must request ``vision.ai/slot``."""


class InvalidRequest(VisionError):
    """INVALID_ARGUMENT: the request itself is wrong (e.g. an empty model name
    or a task type the model does not serve)."""


class Unavailable(VisionError):
    """UNAVAILABLE: the daemon is not there or is shutting down, no GPU is
    healthy, or the model failed to load; retried until the timeout ran out."""


class LeaseLost(VisionError):
    """The lease ended while the task held it: revoked (its GPU failed, or the
    pod's allocation was released) or expired (it could not be kept alive).
    The task's GPU memory is no longer reserved: stop using the GPU and run
    the task again (``reason`` says why)."""

    reason: str

    def __init__(self, lease_id: int, reason: str) -> None:
        super().__init__(f"lease {lease_id} was lost: {reason}", code="", details=reason)
        self.lease_id = lease_id
        self.reason = reason


class NoModelServer(VisionError):
    """``lease.infer()`` on a node without a model server: the daemon's
    runtime keeps only the ledger, so the lease has no runtime endpoint. Run
    the model in the pod, on ``lease.cuda_device``."""


class MissingEnvironment(VisionError, LookupError):
    """``Client.from_env()`` found no VISION_SOCKET or token: the container
    did not get a ``vision.ai/slot`` (or ``vision.ai/vram``) device."""


_BY_CODE: dict[str, type[VisionError]] = {
    "NOT_FOUND": ModelNotFound,
    "FAILED_PRECONDITION": ModelTooLarge,
    "RESOURCE_EXHAUSTED": NodeBusy,
    "DEADLINE_EXCEEDED": AdmissionTimeout,
    "PERMISSION_DENIED": PermissionDenied,
    "INVALID_ARGUMENT": InvalidRequest,
    "UNAVAILABLE": Unavailable,
}


def code_name(err: Any) -> str:
    """The status code's name of a grpc.RpcError (sync or asyncio)."""
    try:
        return str(err.code().name)
    except Exception:  # not an RPC error with a code
        return "UNKNOWN"


def details_of(err: Any) -> str:
    try:
        return str(err.details() or "")
    except Exception:
        return ""


def from_rpc(err: Any, what: str, note: str = "") -> VisionError:
    """The VisionError for a failed RPC; ``what`` names the call."""
    code = code_name(err)
    details = details_of(err)
    cls = _BY_CODE.get(code, VisionError)
    message = f"{what}: {code}: {details}" + (f" ({note})" if note else "")
    return cls(message, code=code, details=details)
