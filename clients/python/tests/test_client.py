"""The blocking Client against the real daemon (see conftest.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from conftest import WAIT_S, Daemon, Recorder

from vision_node import (
    AdmissionTimeout,
    Client,
    InvalidRequest,
    LeaseGranted,
    LeaseLost,
    LeaseReleased,
    ModelLoaded,
    ModelLoading,
    ModelNotFound,
    NodeBusy,
    PermissionDenied,
    QueueChanged,
    RetryPolicy,
    Unavailable,
    VisionError,
    pb,
)


@pytest.fixture
def client(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    for var in ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)
    with Client(daemon.task_socket, daemon.token) as c:
        yield c


def leases_on_the_daemon(daemon: Daemon) -> list[int]:
    return [lease.lease_id for lease in daemon.status().leases]


def queue_depth_reaches(daemon: Daemon, queued: int) -> None:
    """Blocks until the daemon's Watch stream shows ``queued`` waiting admissions."""
    call = daemon.admin.watch(pb.WatchRequest(), timeout=WAIT_S)
    try:
        for ev in call:
            if ev.WhichOneof("event") == "queue" and ev.queue.queued == queued:
                return
    finally:
        call.cancel()


def test_a_task_is_admitted_runs_and_is_released(daemon: Daemon, client: Client) -> None:
    with client.task("small", task_type="detect", timeout=10) as lease:
        assert (lease.model, lease.gpu_index, lease.warm) == ("small", 0, False)
        assert lease.gpu_uuid == daemon.status().gpus[0].uuid
        assert lease.cuda_device == 0
        assert lease.ttl_ms == 2000 and lease.working_mib == 100
        assert lease.runtime_endpoint == ""
        assert leases_on_the_daemon(daemon) == [lease.lease_id]
        assert not lease.lost.is_set()
    assert leases_on_the_daemon(daemon) == []
    with client.task("small") as again:
        assert again.warm
    stats = client.stats()
    assert (stats.tasks, stats.succeeded, stats.failed, stats.in_flight) == (2, 2, 0, 0)
    assert (stats.warm, stats.cold, stats.warm_ratio) == (1, 1, 0.5)
    assert stats.mean_wait_ms > 0 and stats.mean_hold_ms > 0


def test_a_lease_is_kept_alive_past_its_ttl(daemon: Daemon, client: Client, client_log: Recorder) -> None:
    with client.task("small") as lease:
        # Four renewals at a third of the 2 s TTL: held well past the TTL.
        client_log.wait_for(f"lease {lease.lease_id} renewed (4)")
        assert not lease.lost.is_set()
        assert leases_on_the_daemon(daemon) == [lease.lease_id]
        assert lease.renewals >= 4
    assert leases_on_the_daemon(daemon) == []


def test_a_body_that_raises_still_releases_and_counts_as_failed(daemon: Daemon, client: Client) -> None:
    with pytest.raises(ValueError, match="bad frame"):
        with client.task("small"):
            raise ValueError("bad frame")
    assert leases_on_the_daemon(daemon) == []
    s = client.stats()
    assert (s.tasks, s.succeeded, s.failed, s.leases_lost) == (1, 0, 1, 0)


def test_an_unknown_model_is_not_retried(client: Client) -> None:
    with pytest.raises(ModelNotFound) as e:
        client.admit("no-such-model")
    assert e.value.code == "NOT_FOUND"
    assert "small" in e.value.details, "the daemon lists the models it knows"
    s = client.stats()
    assert (s.admission_failures, s.retries) == (1, 0)


def test_a_task_type_the_model_does_not_serve_is_invalid(client: Client) -> None:
    with pytest.raises(InvalidRequest):
        client.admit("small", task_type="text-to-image")


def test_a_wrong_token_is_refused(daemon: Daemon) -> None:
    with Client(daemon.task_socket, "forged-token") as c, pytest.raises(PermissionDenied) as e:
        c.admit("small")
    assert "VISION_TOKEN" in e.value.details


def test_an_admission_that_waits_too_long_times_out(daemon: Daemon, client: Client) -> None:
    held = client.admit("big")
    with pytest.raises(AdmissionTimeout) as e:
        client.admit("big", timeout=0.3)
    assert isinstance(e.value, TimeoutError)
    assert e.value.code == "DEADLINE_EXCEEDED"
    held.release()
    # timeout=0 never queues: refused at once, without retrying.
    held = client.admit("big")
    with pytest.raises(NodeBusy):
        client.admit("big", timeout=0)
    held.release()
    assert client.stats().retries == 0


def test_a_full_queue_is_retried_until_there_is_room(daemon: Daemon, client: Client, client_log: Recorder) -> None:
    held = client.admit("big")
    outcomes: dict[str, object] = {}

    def run(name: str) -> None:
        try:
            with client.task("big", timeout=WAIT_S) as lease:
                outcomes[name] = lease.lease_id
        except Exception as e:  # recorded for the asserts below
            outcomes[name] = e

    queued = threading.Thread(target=run, args=("queued",))
    queued.start()
    queue_depth_reaches(daemon, 1)  # the queue (of one) is now full
    retrying = threading.Thread(target=run, args=("retrying",))
    retrying.start()
    client_log.wait_for("admitting 'big': RESOURCE_EXHAUSTED")
    held.release()
    queued.join(WAIT_S)
    retrying.join(WAIT_S)
    assert isinstance(outcomes.get("queued"), int), outcomes
    assert isinstance(outcomes.get("retrying"), int), outcomes
    assert client.stats().retries >= 1
    # With a queue of one, this pod's own bound (per_pod_queue_limit, at most
    # queue_limit) is full as soon as the node's is: either refusal counts.
    outcomes_seen = daemon.status().counters.outcomes
    assert outcomes_seen["queue_full"] + outcomes_seen["pod_queue_full"] >= 1
    assert leases_on_the_daemon(daemon) == []


def test_a_lease_revoked_mid_task_raises_lease_lost(daemon: Daemon, client: Client) -> None:
    with pytest.raises(LeaseLost) as lost:
        with client.task("small") as lease:
            daemon.fault(lease.gpu_uuid, reason="Xid 79: GPU has fallen off the bus")
            assert lease.lost.wait(WAIT_S), "the client noticed the revocation"
            with pytest.raises(LeaseLost):
                lease.check()
            # The body carries on as if nothing happened: leaving must still raise.
    assert lost.value.lease_id == lease.lease_id
    assert "revoked" in lost.value.reason
    assert leases_on_the_daemon(daemon) == []
    s = client.stats()
    assert (s.leases_lost, s.failed, s.succeeded) == (1, 1, 0)
    daemon.fault(lease.gpu_uuid, faulted=False)


def test_a_lease_that_cannot_be_renewed_is_lost_when_it_expires(daemon: Daemon, client: Client) -> None:
    lease = client.admit("small")
    daemon.stop()  # the daemon dies: KeepAlives fail until the lease's TTL has passed
    assert lease.lost.wait(WAIT_S)
    assert "could not be renewed before it expired" in (lease.lost_reason or "")
    with pytest.raises(LeaseLost):
        lease.release()


def test_a_missing_daemon_is_retried_until_the_timeout(tmp_path: object) -> None:
    fast = RetryPolicy(initial_backoff_s=0.01, max_backoff_s=0.05)
    with Client(f"{tmp_path}/no-daemon.sock", "t", retry=fast) as c:
        with pytest.raises(Unavailable) as e:
            c.admit("small", timeout=0.5)
        assert "gave up after" in str(e.value)
        assert c.stats().retries >= 1


def test_watch_yields_typed_events_of_a_cold_task(daemon: Daemon, client: Client) -> None:
    events = client.watch(timeout=WAIT_S)
    assert isinstance(next(events), QueueChanged)  # the stream is open: nothing is missed
    with client.task("small") as lease:
        pass
    seen: list[object] = []
    for ev in events:
        seen.append(ev)
        if isinstance(ev, LeaseReleased):
            break
    events.close()
    kinds = [type(e) for e in seen]
    for kind in (ModelLoading, ModelLoaded, LeaseGranted, LeaseReleased):
        assert kind in kinds, kinds
    assert kinds.index(ModelLoaded) < kinds.index(LeaseGranted) < kinds.index(LeaseReleased)
    granted = next(e for e in seen if isinstance(e, LeaseGranted))
    assert granted.lease.lease_id == lease.lease_id and granted.lease.model == "small"


def test_from_env_reads_what_allocate_sets(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISION_SOCKET", daemon.task_socket)
    monkeypatch.setenv("VISION_TOKEN", daemon.token)
    with Client.from_env() as c, c.task("small") as lease:
        assert lease.model == "small"


def test_cuda_device_follows_the_containers_visible_devices(daemon: Daemon, client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    uuid = daemon.status().gpus[0].uuid
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", uuid)
    with client.task("small") as lease:
        assert lease.cuda_device == 0
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "GPU-00000000-0000-0000-0000-000000000000")
    with client.task("small") as lease:
        assert lease.cuda_device is None, "this container cannot see the lease's GPU"


def test_close_releases_what_is_still_held(daemon: Daemon) -> None:
    c = Client(daemon.task_socket, daemon.token)
    c.admit("small")
    c.admit("small")
    assert len(leases_on_the_daemon(daemon)) == 2
    c.close()
    assert leases_on_the_daemon(daemon) == []
    with pytest.raises(VisionError, match="closed"):
        c.admit("small")


def test_status_and_models_come_from_the_daemon(client: Client) -> None:
    status = client.status()
    assert status.node == "clients-test" and status.slots == 8
    assert sorted(m.name for m in client.models()) == ["big", "small"]
