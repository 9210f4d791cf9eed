"""AsyncClient against the real daemon: the same cases, awaited, and a lost
lease interrupting the ``async with`` block."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from conftest import WAIT_S, Daemon

from vision_node import (
    AdmissionTimeout,
    AsyncClient,
    LeaseGranted,
    LeaseLost,
    LeaseReleased,
    ModelNotFound,
    QueueChanged,
    RetryPolicy,
    Unavailable,
)

T = TypeVar("T")


def run(daemon: Daemon, body: Callable[[AsyncClient], Awaitable[T]]) -> T:
    async def main() -> T:
        async with AsyncClient(daemon.task_socket, daemon.token) as c:
            return await asyncio.wait_for(body(c), WAIT_S)

    return asyncio.run(main())


@pytest.fixture(autouse=True)
def _no_gpu_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)


def test_admit_run_release_and_stats(daemon: Daemon) -> None:
    async def body(c: AsyncClient) -> None:
        async with c.task("small", task_type="detect") as lease:
            assert (lease.model, lease.warm, lease.cuda_device) == ("small", False, 0)
            assert [le.lease_id for le in (await c.status()).leases] == [lease.lease_id]
        async with c.task("small") as lease:
            assert lease.warm
        assert list((await c.status()).leases) == []
        s = c.stats()
        assert (s.tasks, s.succeeded, s.warm, s.cold) == (2, 2, 1, 1)

    run(daemon, body)


def test_errors_are_the_same_classes(daemon: Daemon) -> None:
    async def body(c: AsyncClient) -> None:
        with pytest.raises(ModelNotFound):
            await c.admit("no-such-model")
        held = await c.admit("big")
        with pytest.raises(AdmissionTimeout):
            await c.admit("big", timeout=0.3)
        await held.release()

    run(daemon, body)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="interrupting the block needs Task.uncancel (3.11)")
def test_a_lost_lease_interrupts_the_block_at_its_next_await(daemon: Daemon) -> None:
    reached_the_end = False

    async def body(c: AsyncClient) -> None:
        nonlocal reached_the_end
        with pytest.raises(LeaseLost) as lost:
            async with c.task("small") as lease:
                await asyncio.to_thread(daemon.fault, lease.gpu_uuid, True, "Xid 48")
                await asyncio.sleep(WAIT_S)  # interrupted long before this ends
                reached_the_end = True
        assert "revoked" in lost.value.reason
        assert lease.lost.is_set()
        assert c.stats().leases_lost == 1
        # The task was not left cancelled: it can go on awaiting.
        await asyncio.sleep(0)
        assert (asyncio.current_task() or pytest.fail("no task")).cancelling() == 0
        await asyncio.to_thread(daemon.fault, lease.gpu_uuid, False)

    run(daemon, body)
    assert not reached_the_end


def test_a_cancellation_from_elsewhere_is_not_turned_into_lease_lost(daemon: Daemon) -> None:
    async def body(c: AsyncClient) -> None:
        inner_started = asyncio.Event()

        async def task_body() -> None:
            async with c.task("small"):
                inner_started.set()
                await asyncio.sleep(WAIT_S)

        t = asyncio.create_task(task_body())
        await inner_started.wait()
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        assert list((await c.status()).leases) == [], "released on cancellation"

    run(daemon, body)


def test_a_missing_daemon_is_retried_until_the_timeout(tmp_path: object) -> None:
    async def main() -> None:
        fast = RetryPolicy(initial_backoff_s=0.01, max_backoff_s=0.05)
        async with AsyncClient(f"{tmp_path}/no-daemon.sock", "t", retry=fast) as c:
            with pytest.raises(Unavailable):
                await c.admit("small", timeout=0.5)
            assert c.stats().retries >= 1

    asyncio.run(main())


def test_watch_is_an_async_iterator_of_typed_events(daemon: Daemon) -> None:
    async def body(c: AsyncClient) -> list[type]:
        events = c.watch(timeout=WAIT_S)
        first = await events.__anext__()
        assert isinstance(first, QueueChanged)
        async with c.task("small") as lease:
            pass
        kinds: list[type] = []
        async for ev in events:
            kinds.append(type(ev))
            if isinstance(ev, LeaseReleased) and ev.lease.lease_id == lease.lease_id:
                break
        await events.aclose()
        return kinds

    kinds = run(daemon, body)
    assert LeaseGranted in kinds and kinds[-1] is LeaseReleased


def test_a_client_built_outside_the_event_loop_binds_to_the_loop_of_its_first_call(daemon: Daemon) -> None:
    c = AsyncClient(daemon.task_socket, daemon.token)  # e.g. at import time

    async def main() -> bool:
        async with c, c.task("small") as lease:
            return lease.model == "small"

    assert asyncio.run(asyncio.wait_for(main(), WAIT_S))
