"""What the blocking and the asyncio leases share: the lease as granted, the
check, and the rules for renewing, releasing and noticing a loss."""

from __future__ import annotations

from typing import Protocol

from ._errors import LeaseLost
from ._events import LeaseInfo
from ._proto.vision.v1 import admission_pb2 as pb

#: Answers that mean the daemon no longer has the lease (or this pod's token).
LEASE_GONE = ("NOT_FOUND", "PERMISSION_DENIED")


class _Flag(Protocol):
    def is_set(self) -> bool: ...


class LeaseView:
    """A lease's fields and ``check()``; ``Lease`` and ``AsyncLease`` add the
    keep-alive and the release."""

    info: LeaseInfo
    #: The ``torch.device("cuda", N)`` index of this lease's GPU in this
    #: process (NVIDIA_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES applied), or
    #: None when this process cannot see that GPU.
    cuda_device: int | None
    #: Set when the lease is lost; ``lost_reason`` says why.
    lost: _Flag
    lost_reason: str | None
    _held: bool
    _renewals: int

    @property
    def lease_id(self) -> int:
        return self.info.lease_id

    @property
    def model(self) -> str:
        return self.info.model

    @property
    def gpu_index(self) -> int:
        """The GPU's index on the node (NVML's); see ``cuda_device`` for this process's."""
        return self.info.gpu_index

    @property
    def gpu_uuid(self) -> str:
        return self.info.gpu_uuid

    @property
    def warm(self) -> bool:
        """The model was resident on the GPU when the task was admitted."""
        return self.info.warm

    @property
    def waited_ms(self) -> int:
        return self.info.waited_ms

    @property
    def ttl_ms(self) -> int:
        return self.info.ttl_ms

    @property
    def runtime_endpoint(self) -> str:
        """Where the node's model server serves the model ("" when there is none)."""
        return self.info.runtime_endpoint

    @property
    def runtime_model(self) -> str:
        """The model server's name for the model (Triton's: the catalog's
        ``runtime_name``, else the catalog name); "" when there is none."""
        return self.info.runtime_model

    @property
    def infer_model(self) -> str:
        """What ``infer()`` names by default: ``runtime_model``, or the
        catalog name from a daemon that does not say."""
        return self.info.runtime_model or self.info.model

    @property
    def working_mib(self) -> int:
        return self.info.working_mib

    @property
    def renewals(self) -> int:
        """KeepAlives that succeeded so far."""
        return self._renewals

    def check(self) -> None:
        """Raises ``LeaseLost`` if the lease has been lost."""
        if self.lost.is_set():
            raise LeaseLost(self.lease_id, self.lost_reason or "lost")

    def __repr__(self) -> str:
        state = f"lost: {self.lost_reason}" if self.lost.is_set() else ("held" if self._held else "released")
        return (
            f"{type(self).__name__}(id={self.lease_id}, model={self.model!r}, gpu={self.gpu_index} "
            f"{self.gpu_uuid}, warm={self.warm}, cuda_device={self.cuda_device}, {state})"
        )


def keepalive_period_s(ttl_ms: int) -> float:
    """Renew at a third of the TTL: two renewals may fail before it runs out."""
    return max(ttl_ms, 30) / 3000


def renewal_failed(code: str, details: str, now: float, expires_at: float) -> str | None:
    """Why a lease is lost after a KeepAlive failed with ``code`` at ``now``,
    or None when it may still be valid (try again soon)."""
    if code in LEASE_GONE:
        return f"the daemon no longer knows it ({code}: {details}): revoked or expired"
    if now >= expires_at:
        return f"it could not be renewed before it expired (last KeepAlive: {code}: {details})"
    return None


def gone_at_release(code: str, details: str) -> str:
    return f"the daemon no longer had it at release ({code}: {details}): revoked or expired"


def loss_in(ev: pb.WatchEvent) -> tuple[int, str] | None:
    """(lease id, why) when a Watch event says that a lease is gone."""
    kind = ev.WhichOneof("event")
    if kind == "lease_revoked":
        return ev.lease_revoked.lease.lease_id, f"revoked by the daemon ({ev.lease_revoked.reason or 'no reason given'})"
    if kind == "lease_expired":
        return ev.lease_expired.lease.lease_id, "expired: the daemon heard no KeepAlive in time"
    return None
