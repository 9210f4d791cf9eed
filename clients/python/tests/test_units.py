"""The pure parts: retry planning, CUDA device mapping, events, errors, env."""

from __future__ import annotations

import random

import pytest

import vision_node
from vision_node import (
    AdmissionRejected,
    AdmissionTimeout,
    LeaseRevoked,
    MissingEnvironment,
    ModelLoaded,
    ModelNotFound,
    ModelTooLarge,
    NodeBusy,
    NoModelServer,
    PermissionDenied,
    QueueChanged,
    RetryPolicy,
    RuntimeChanged,
    Unavailable,
    UnknownEvent,
    VisionError,
    cuda_device_index,
    pb,
)
from vision_node._common import StatsRecorder, socket_and_token, triton_url
from vision_node._errors import from_rpc
from vision_node._events import from_pb
from vision_node._retry import RPC_GRACE_S, Attempts

# --- retries ----------------------------------------------------------------------


def test_backoff_caps_grow_exponentially_up_to_the_maximum() -> None:
    p = RetryPolicy(initial_backoff_s=0.1, max_backoff_s=1.0, multiplier=2.0)
    assert [p.cap(n) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert p.cap(10_000) == 1.0  # no overflow however long it retries


def test_waits_are_jittered_within_the_cap_and_differ_between_clients() -> None:
    p = RetryPolicy(initial_backoff_s=0.1, max_backoff_s=1.0)
    delays = []
    for seed in range(50):
        a = Attempts(p, timeout_s=100.0, now=0.0, rng=random.Random(seed))
        delays.append([a.after_failure("RESOURCE_EXHAUSTED", 0.0) for _ in range(4)])
    for row in delays:
        assert all(d is not None and 0 <= d <= p.cap(n) for n, d in enumerate(row)), row
    # Full jitter: pods refused together do not come back together.
    firsts = {row[0] for row in delays}
    assert len(firsts) == 50


def test_retries_stop_at_the_deadline() -> None:
    p = RetryPolicy(initial_backoff_s=1.0, max_backoff_s=1.0)
    a = Attempts(p, timeout_s=3.0, now=10.0, rng=random.Random(1))
    now, attempts = 10.0, 1
    while (delay := a.after_failure("UNAVAILABLE", now)) is not None:
        assert now + delay < 13.0
        now += delay
        attempts += 1
        assert a.request_timeout_ms(now) == int((13.0 - now) * 1000)
    assert a.failures == attempts
    assert attempts >= 3  # uniform(0, 1) waits: several fit in 3 s


def test_only_a_full_queue_and_unavailable_are_retried() -> None:
    for code in ("NOT_FOUND", "DEADLINE_EXCEEDED", "PERMISSION_DENIED", "FAILED_PRECONDITION", "INVALID_ARGUMENT"):
        assert Attempts(RetryPolicy(), 30.0, 0.0).after_failure(code, 0.0) is None, code
    for code in ("RESOURCE_EXHAUSTED", "UNAVAILABLE"):
        assert Attempts(RetryPolicy(), 30.0, 0.0).after_failure(code, 0.0) is not None, code


def test_timeout_zero_means_never_queue_and_no_retry() -> None:
    a = Attempts(RetryPolicy(), 0.0, now=5.0)
    assert a.request_timeout_ms(5.0) == 0
    assert a.rpc_timeout_s(5.0) == RPC_GRACE_S
    assert a.after_failure("RESOURCE_EXHAUSTED", 5.0) is None


def test_no_timeout_means_the_daemons_default_once() -> None:
    a = Attempts(RetryPolicy(), None, now=0.0)
    assert a.request_timeout_ms(0.0) is None and a.rpc_timeout_s(0.0) is None
    assert a.after_failure("UNAVAILABLE", 0.0) is None


def test_bad_policies_and_timeouts_are_refused() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(initial_backoff_s=0)
    with pytest.raises(ValueError):
        RetryPolicy(initial_backoff_s=2, max_backoff_s=1)
    with pytest.raises(ValueError):
        RetryPolicy(multiplier=0.5)
    with pytest.raises(ValueError):
        Attempts(RetryPolicy(), -1.0, 0.0)


# --- CUDA device mapping ------------------------------------------------------------

NODE = [(0, "GPU-aaaa-0"), (1, "GPU-bbbb-1"), (2, "GPU-cccc-2"), (3, "GPU-dddd-3")]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, 2),  # no container runtime restriction: the node's numbering
        ({"NVIDIA_VISIBLE_DEVICES": "all"}, 2),
        ({"NVIDIA_VISIBLE_DEVICES": "GPU-cccc-2"}, 0),  # the vram plugin's one GPU
        ({"NVIDIA_VISIBLE_DEVICES": "3,2"}, 0),  # renumbered in bus order, not list order
        ({"NVIDIA_VISIBLE_DEVICES": "GPU-dddd-3,GPU-aaaa-0,GPU-cccc-2"}, 1),
        ({"NVIDIA_VISIBLE_DEVICES": "0,1"}, None),  # not in this container
        ({"NVIDIA_VISIBLE_DEVICES": "none"}, None),
        ({"NVIDIA_VISIBLE_DEVICES": "void"}, None),
        ({"NVIDIA_VISIBLE_DEVICES": ""}, None),
        ({"CUDA_VISIBLE_DEVICES": "3,2"}, 1),  # CUDA's order is the list's
        ({"CUDA_VISIBLE_DEVICES": "GPU-cccc"}, 0),  # a unique UUID prefix
        ({"CUDA_VISIBLE_DEVICES": "GPU-"}, None),  # ambiguous prefix: CUDA stops there
        ({"CUDA_VISIBLE_DEVICES": "0,9,2"}, None),  # CUDA stops at the invalid 9
        ({"CUDA_VISIBLE_DEVICES": "0,-1,2"}, None),
        ({"CUDA_VISIBLE_DEVICES": "1,1,2"}, None),  # a repeat is invalid too
        ({"CUDA_VISIBLE_DEVICES": ""}, None),
        ({"CUDA_VISIBLE_DEVICES": "MIG-1234,2"}, None),
        ({"NVIDIA_VISIBLE_DEVICES": "1,2", "CUDA_VISIBLE_DEVICES": "1"}, 0),  # container index 1 is node GPU 2
        ({"NVIDIA_VISIBLE_DEVICES": "1,2", "CUDA_VISIBLE_DEVICES": "2"}, None),
    ],
)
def test_cuda_device_of_node_gpu_2(env: dict[str, str], expected: int | None) -> None:
    assert cuda_device_index("GPU-cccc-2", 2, NODE, env) == expected


def test_cuda_device_without_the_node_list_uses_the_leases_own_gpu() -> None:
    assert cuda_device_index("GPU-x", 0, [], {}) == 0
    assert cuda_device_index("GPU-x", 0, [], {"NVIDIA_VISIBLE_DEVICES": "GPU-x"}) == 0


# --- events, errors, env ----------------------------------------------------------------


def test_wire_events_become_typed_events() -> None:
    lease = pb.Lease(lease_id=7, model="yolo", gpu_index=1, gpu_uuid="GPU-1", warm=True, ttl_ms=60_000)
    ev = from_pb(pb.WatchEvent(seq=3, at_ms=99, lease_revoked=pb.LeaseEvent(lease=lease, reason="gpu_unhealthy")))
    assert isinstance(ev, LeaseRevoked)
    assert (ev.seq, ev.at_ms, ev.lease.lease_id, ev.lease.warm, ev.reason) == (3, 99, 7, True, "gpu_unhealthy")
    ev2 = from_pb(pb.WatchEvent(model_loaded=pb.ModelEvent(model="yolo", gpu_uuid="GPU-1", duration_ms=150)))
    assert isinstance(ev2, ModelLoaded) and ev2.duration_ms == 150
    ev3 = from_pb(pb.WatchEvent(missed=2, queue=pb.QueueEvent(queued=4)))
    assert isinstance(ev3, QueueChanged) and (ev3.queued, ev3.missed) == (4, 2)
    assert isinstance(from_pb(pb.WatchEvent()), UnknownEvent)
    ev4 = from_pb(
        pb.WatchEvent(
            admission_rejected=pb.AdmissionRejected(model="sd3b", reason="deadline_exceeded", code="DEADLINE_EXCEEDED")
        )
    )
    assert isinstance(ev4, AdmissionRejected)
    assert (ev4.model, ev4.reason, ev4.code) == ("sd3b", "deadline_exceeded", "DEADLINE_EXCEEDED")
    ev5 = from_pb(pb.WatchEvent(runtime=pb.RuntimeEvent(kind="triton", reachable=True, adopted=1, drifted=True)))
    assert isinstance(ev5, RuntimeChanged)
    assert (ev5.reachable, ev5.drifted, ev5.adopted, ev5.dropped) == (True, True, 1, 0)


def test_every_event_kind_of_the_proto_has_a_type() -> None:
    kinds = [f.name for f in pb.WatchEvent.DESCRIPTOR.oneofs_by_name["event"].fields]
    for kind in kinds:
        field = pb.WatchEvent.DESCRIPTOR.fields_by_name[kind]
        ev = pb.WatchEvent()
        getattr(ev, kind).SetInParent()
        typed = from_pb(ev)
        assert not isinstance(typed, UnknownEvent), f"{kind} ({field.message_type.name}) has no event type"


class FakeRpcError(Exception):
    def __init__(self, code: str, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> object:
        return type("Code", (), {"name": self._code})()

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("NOT_FOUND", ModelNotFound),
        ("FAILED_PRECONDITION", ModelTooLarge),
        ("RESOURCE_EXHAUSTED", NodeBusy),
        ("DEADLINE_EXCEEDED", AdmissionTimeout),
        ("PERMISSION_DENIED", PermissionDenied),
        ("UNAVAILABLE", Unavailable),
        ("INTERNAL", VisionError),
    ],
)
def test_status_codes_map_to_error_classes_that_keep_the_daemons_words(code: str, cls: type) -> None:
    err = from_rpc(FakeRpcError(code, "what to do"), "admitting 'm'", "gave up after 3 attempts")
    assert type(err) is cls
    assert (err.code, err.details) == (code, "what to do")
    assert str(err) == f"admitting 'm': {code}: what to do (gave up after 3 attempts)"
    assert isinstance(from_rpc(FakeRpcError("DEADLINE_EXCEEDED", ""), "x"), TimeoutError)


def test_env_names_what_is_missing_and_how_to_get_it() -> None:
    assert socket_and_token({"VISION_SOCKET": "/s", "VISION_TOKEN": "t"}) == ("/s", "t")
    assert socket_and_token({"VISION_SOCKET": "/s", "VISION_VRAM_TOKEN": "v"}) == ("/s", "v")
    with pytest.raises(MissingEnvironment) as e:
        socket_and_token({})
    assert "VISION_SOCKET and VISION_TOKEN" in str(e.value) and "vision.ai/slot" in str(e.value)
    with pytest.raises(MissingEnvironment):
        vision_node.Client.from_env({"VISION_SOCKET": "/s"})


def test_runtime_endpoints_become_triton_urls() -> None:
    assert triton_url("127.0.0.1:8001") == "127.0.0.1:8001"
    assert triton_url("grpc://triton.vision-system:8001") == "triton.vision-system:8001"
    assert triton_url("unix:///run/triton/grpc.sock") == "unix:///run/triton/grpc.sock"
    with pytest.raises(NoModelServer):
        triton_url("")


def test_stats_add_up() -> None:
    s = StatsRecorder()
    s.granted(10.0, warm=False)
    s.granted(30.0, warm=True)
    s.retried()
    s.refused()
    s.ended(100.0, ok=True, lost=False)
    snap = s.snapshot()
    assert (snap.tasks, snap.succeeded, snap.failed, snap.in_flight) == (2, 1, 1, 1)
    assert (snap.warm, snap.cold, snap.warm_ratio, snap.retries) == (1, 1, 0.5, 1)
    assert (snap.mean_wait_ms, snap.mean_hold_ms) == (20.0, 100.0)
    s.ended(300.0, ok=False, lost=True)
    snap = s.snapshot()
    assert (snap.failed, snap.leases_lost, snap.mean_hold_ms) == (2, 1, 200.0)


# --- lease rules ----------------------------------------------------------------------


def test_a_failed_renewal_loses_the_lease_only_when_the_daemon_says_so_or_it_expired() -> None:
    from vision_node._lease import keepalive_period_s, renewal_failed

    assert keepalive_period_s(60_000) == 20.0
    assert "revoked or expired" in (renewal_failed("NOT_FOUND", "unknown lease 7", 1.0, 5.0) or "")
    assert renewal_failed("PERMISSION_DENIED", "unknown token", 1.0, 5.0) is not None
    assert renewal_failed("UNAVAILABLE", "connection refused", 1.0, 5.0) is None, "still valid: try again"
    lost = renewal_failed("UNAVAILABLE", "connection refused", 5.0, 5.0)
    assert lost is not None and "could not be renewed before it expired" in lost


def test_watch_events_that_end_a_lease_name_it() -> None:
    from vision_node._lease import loss_in

    revoked = pb.WatchEvent(lease_revoked=pb.LeaseEvent(lease=pb.Lease(lease_id=9), reason="gpu_unhealthy"))
    assert loss_in(revoked) == (9, "revoked by the daemon (gpu_unhealthy)")
    expired = pb.WatchEvent(lease_expired=pb.LeaseEvent(lease=pb.Lease(lease_id=4)))
    assert loss_in(expired) is not None and loss_in(expired)[0] == 4  # type: ignore[index]
    assert loss_in(pb.WatchEvent(lease_released=pb.LeaseEvent(lease=pb.Lease(lease_id=9)))) is None
