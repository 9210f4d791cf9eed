"""The Watch stream's events as typed, immutable values.

A pod's stream carries its own leases' events and the node's (models, GPUs,
queue, pool, kubelet); the admin socket's carries everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._proto.vision.v1 import admission_pb2 as pb


@dataclass(frozen=True)
class LeaseInfo:
    """A lease as the daemon describes it (in events and in ``Lease``)."""

    lease_id: int
    model: str
    gpu_index: int
    gpu_uuid: str
    #: The model was resident and ready when the admission was placed.
    warm: bool
    #: Between asking and being granted (queue wait plus load).
    waited_ms: int
    ttl_ms: int
    #: Where the model runtime serves the model ("" without a model server).
    runtime_endpoint: str
    working_mib: int
    #: The runtime's name for the model (Triton's), what inference requests
    #: name; "" without a model server (or from an older daemon).
    runtime_model: str = ""

    @staticmethod
    def from_pb(lease: pb.Lease) -> LeaseInfo:
        return LeaseInfo(
            lease_id=lease.lease_id,
            model=lease.model,
            gpu_index=lease.gpu_index,
            gpu_uuid=lease.gpu_uuid,
            warm=lease.warm,
            waited_ms=lease.waited_ms,
            ttl_ms=lease.ttl_ms,
            runtime_endpoint=lease.runtime_endpoint,
            working_mib=lease.working_mib,
            runtime_model=lease.runtime_model,
        )


@dataclass(frozen=True)
class Event:
    """Fields every event has."""

    #: Increases by one per event the daemon emits (gaps: not for this caller).
    seq: int
    #: Milliseconds since the daemon started.
    at_ms: int
    #: Events this stream missed just before this one because it fell behind.
    missed: int


@dataclass(frozen=True)
class LeaseEvent(Event):
    lease: LeaseInfo
    #: Why a lease was revoked (gpu_unhealthy, allocation_released,
    #: runtime_lost); else "".
    reason: str


@dataclass(frozen=True)
class LeaseGranted(LeaseEvent):
    pass


@dataclass(frozen=True)
class LeaseReleased(LeaseEvent):
    pass


@dataclass(frozen=True)
class LeaseExpired(LeaseEvent):
    """Not kept alive: the daemon took the memory back."""


@dataclass(frozen=True)
class LeaseRevoked(LeaseEvent):
    """Taken back while held (its GPU failed, the pod's allocation went, the
    model runtime restarted without its copy)."""


@dataclass(frozen=True)
class ModelEvent(Event):
    model: str
    gpu_index: int
    gpu_uuid: str
    weights_mib: int
    #: Evicted: why (for which model, admin, gpu_unhealthy, shutdown); failed: the error.
    reason: str
    #: Load duration (ModelLoaded, ModelLoadFailed).
    duration_ms: int


@dataclass(frozen=True)
class ModelLoading(ModelEvent):
    pass


@dataclass(frozen=True)
class ModelLoaded(ModelEvent):
    pass


@dataclass(frozen=True)
class ModelEvicted(ModelEvent):
    pass


@dataclass(frozen=True)
class ModelLoadFailed(ModelEvent):
    pass


@dataclass(frozen=True)
class GpuHealthChanged(Event):
    gpu_index: int
    gpu_uuid: str
    healthy: bool
    reason: str


@dataclass(frozen=True)
class QueueChanged(Event):
    """The queue depth; every stream starts with one."""

    queued: int
    waiting_on_load: int


@dataclass(frozen=True)
class AdmissionRejected(Event):
    """A queued admission of this pod ended without a lease."""

    model: str
    #: The outcome label (deadline_exceeded, load_failed, …).
    reason: str
    #: The status code the waiting call got, as gRPC spells it
    #: (DEADLINE_EXCEEDED, UNAVAILABLE, …); empty from a daemon before it.
    code: str = ""


@dataclass(frozen=True)
class PoolChanged(Event):
    """A GPU's pool entering or leaving the over-committed state."""

    gpu_index: int
    gpu_uuid: str
    overcommitted: bool
    committed_mib: int
    usable_mib: int


@dataclass(frozen=True)
class KubeletRegistration(Event):
    resource: str
    registered: bool
    message: str


@dataclass(frozen=True)
class RuntimeChanged(Event):
    """The node's model runtime stopped answering (``reachable`` false:
    admissions are refused UNAVAILABLE until it answers again), answers
    again (residency rebuilt from its list of copies), or, answering
    throughout, was changed directly (``drifted``: models loaded or unloaded
    in it behind the daemon's back; the ledger followed)."""

    #: bookkeeping, grpc or triton.
    kind: str
    reachable: bool
    #: Why it is unreachable.
    reason: str
    #: On its return or a drift: copies it held that were adopted, and
    #: copies it had lost that left the ledger (their leases revoked, reason
    #: runtime_lost).
    adopted: int
    dropped: int
    #: Reachable throughout; ``adopted`` and ``dropped`` count the drift.
    drifted: bool


@dataclass(frozen=True)
class ModelOutgrewCatalog(Event):
    """A measured copy occupies more than its catalog entry says (> 10 %)."""

    model: str
    gpu_index: int
    gpu_uuid: str
    catalog_mib: int
    measured_mib: int


@dataclass(frozen=True)
class UnknownEvent(Event):
    """An event of a newer daemon that this client does not know."""

    kind: str


_LEASE = {
    "lease_granted": LeaseGranted,
    "lease_released": LeaseReleased,
    "lease_expired": LeaseExpired,
    "lease_revoked": LeaseRevoked,
}
_MODEL = {
    "model_loading": ModelLoading,
    "model_loaded": ModelLoaded,
    "model_evicted": ModelEvicted,
    "model_load_failed": ModelLoadFailed,
}


def from_pb(ev: pb.WatchEvent) -> Event:
    """The typed event for a wire event."""
    head = (ev.seq, ev.at_ms, ev.missed)
    kind = ev.WhichOneof("event")
    if kind in _LEASE:
        le: pb.LeaseEvent = getattr(ev, kind)
        return _LEASE[kind](*head, lease=LeaseInfo.from_pb(le.lease), reason=le.reason)
    if kind in _MODEL:
        me: pb.ModelEvent = getattr(ev, kind)
        return _MODEL[kind](
            *head,
            model=me.model,
            gpu_index=me.gpu_index,
            gpu_uuid=me.gpu_uuid,
            weights_mib=me.weights_mib,
            reason=me.reason,
            duration_ms=me.duration_ms,
        )
    if kind == "gpu_health":
        g = ev.gpu_health
        return GpuHealthChanged(*head, gpu_index=g.gpu_index, gpu_uuid=g.gpu_uuid, healthy=g.healthy, reason=g.reason)
    if kind == "queue":
        return QueueChanged(*head, queued=ev.queue.queued, waiting_on_load=ev.queue.waiting_on_load)
    if kind == "admission_rejected":
        ar = ev.admission_rejected
        return AdmissionRejected(*head, model=ar.model, reason=ar.reason, code=ar.code)
    if kind == "pool":
        p = ev.pool
        return PoolChanged(
            *head,
            gpu_index=p.gpu_index,
            gpu_uuid=p.gpu_uuid,
            overcommitted=p.overcommitted,
            committed_mib=p.committed_mib,
            usable_mib=p.usable_mib,
        )
    if kind == "kubelet":
        k = ev.kubelet
        return KubeletRegistration(*head, resource=k.resource, registered=k.registered, message=k.message)
    if kind == "runtime":
        r = ev.runtime
        return RuntimeChanged(
            *head,
            kind=r.kind,
            reachable=r.reachable,
            reason=r.reason,
            adopted=r.adopted,
            dropped=r.dropped,
            drifted=r.drifted,
        )
    if kind == "model_outgrew_catalog":
        m = ev.model_outgrew_catalog
        return ModelOutgrewCatalog(
            *head,
            model=m.model,
            gpu_index=m.gpu_index,
            gpu_uuid=m.gpu_uuid,
            catalog_mib=m.catalog_mib,
            measured_mib=m.measured_mib,
        )
    return UnknownEvent(*head, kind=kind or "")
