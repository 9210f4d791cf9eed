"""The asyncio client: ``AsyncClient`` and ``AsyncLease``, the same names as
the blocking client's, awaited.

One difference: a lease lost inside ``async with client.task(...)``
interrupts the block at its next ``await`` (the task is cancelled, as
``asyncio.timeout`` does, and the block raises ``LeaseLost``), on Python 3.11
and later. On 3.10 the block learns of it at its next ``lease.check()`` or
at its end.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

from . import _events
from ._common import (
    CALL_TIMEOUT_S,
    KEEPALIVE_RETRY_S,
    Stats,
    StatsRecorder,
    import_triton,
    socket_and_token,
    triton_url,
)
from ._cuda import cuda_device_index
from ._errors import VisionError, code_name, details_of, from_rpc
from ._lease import LEASE_GONE, LeaseView, gone_at_release, keepalive_period_s, loss_in, renewal_failed
from ._proto.vision.v1 import admission_pb2 as pb
from ._retry import Attempts, RetryPolicy
from ._rpc import CHANNEL_OPTIONS, Stub, target

log = logging.getLogger("vision_node")


class AsyncLease(LeaseView):
    """``Lease`` for asyncio: ``lost`` is an ``asyncio.Event``; ``release()``
    and ``infer()`` are coroutines."""

    def __init__(self, client: AsyncClient, lease: pb.Lease, cuda_device: int | None) -> None:
        self.info = _events.LeaseInfo.from_pb(lease)
        self.cuda_device = cuda_device
        self.lost: asyncio.Event = asyncio.Event()
        self.lost_reason = None
        self._client = client
        self._held = True
        self._wake = asyncio.Event()
        self._granted_at = time.monotonic()
        self._expires_at = self._granted_at + lease.expires_in_ms / 1000
        self._renewals = 0
        self._on_lost: list[Callable[[], None]] = []
        self._keeper: asyncio.Task[None] | None = None

    def triton_client(self) -> Any:
        """A ``tritonclient.grpc.aio.InferenceServerClient`` for the lease's runtime endpoint."""
        return self._client._triton_client(self.runtime_endpoint)

    async def infer(self, inputs: Any, outputs: Any = None, *, model_name: str | None = None, **kwargs: Any) -> Any:
        """See ``Lease.infer``."""
        self.check()
        result = await self.triton_client().infer(model_name or self.infer_model, inputs, outputs=outputs, **kwargs)
        self.check()
        return result

    async def release(self) -> None:
        """Ends the lease (idempotent). Raises ``LeaseLost`` if it had been lost."""
        await self._end(ok=True)
        self.check()

    async def __aenter__(self) -> AsyncLease:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._end(ok=exc_type is None)
        if exc_type is None:
            self.check()

    # Internals.
    def _start(self) -> None:
        self._keeper = asyncio.get_running_loop().create_task(self._keep_alive())

    def _poke(self) -> None:
        self._wake.set()

    def _set_lost(self, reason: str, *, force: bool = False) -> None:
        if self.lost.is_set() or (not self._held and not force):
            return
        self.lost_reason = reason
        self.lost.set()
        self._wake.set()
        log.warning("lease %d (%s on %s) lost: %s", self.lease_id, self.model, self.gpu_uuid, reason)
        for callback in self._on_lost:
            callback()

    async def _keep_alive(self) -> None:
        period = keepalive_period_s(self.ttl_ms)
        delay = period
        stub, token = self._client._stub, self._client._token
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            if not self._held or self.lost.is_set():
                return
            sent = time.monotonic()
            try:
                reply = await stub.keep_alive(
                    pb.KeepAliveRequest(token=token, lease_id=self.lease_id),
                    timeout=max(0.05, min(CALL_TIMEOUT_S, self._expires_at - sent)),
                )
            except grpc.RpcError as e:
                lost = renewal_failed(code_name(e), details_of(e), time.monotonic(), self._expires_at)
                if lost is not None:
                    self._set_lost(lost)
                    return
                delay = min(period, KEEPALIVE_RETRY_S)
                continue
            self._expires_at = sent + reply.expires_in_ms / 1000
            self._renewals += 1
            log.debug("lease %d renewed (%d): expires in %d ms", self.lease_id, self._renewals, reply.expires_in_ms)
            delay = period

    async def _end(self, ok: bool) -> None:
        if not self._held:
            return
        self._held = False
        self._wake.set()
        if not self.lost.is_set():
            try:
                await self._client._stub.release(
                    pb.ReleaseRequest(token=self._client._token, lease_id=self.lease_id),
                    timeout=CALL_TIMEOUT_S,
                )
            except grpc.RpcError as e:
                if code_name(e) in LEASE_GONE:
                    self._set_lost(gone_at_release(code_name(e), details_of(e)), force=True)
                else:
                    log.warning(
                        "could not release lease %d (%s: %s); the daemon reclaims it within %d ms",
                        self.lease_id,
                        code_name(e),
                        details_of(e),
                        self.ttl_ms,
                    )
        lost = self.lost.is_set()
        self._client._forget(self)
        self._client._stats.ended((time.monotonic() - self._granted_at) * 1000, ok=ok and not lost, lost=lost)


class _AsyncTask:
    """``async with client.task(...) as lease``; a lost lease cancels the
    block at its next await and the block raises ``LeaseLost``."""

    def __init__(self, client: AsyncClient, args: dict[str, Any]) -> None:
        self._client = client
        self._args = args
        self._lease: AsyncLease | None = None
        self._host: asyncio.Task[Any] | None = None
        self._inside = False
        self._interrupted = False

    async def __aenter__(self) -> AsyncLease:
        lease = await self._client.admit(**self._args)
        self._lease = lease
        self._host = asyncio.current_task()
        lease._on_lost.append(self._interrupt)
        self._inside = True
        if lease.lost.is_set():
            self._interrupt()
        return lease

    def _interrupt(self) -> None:
        host = self._host
        # Task.uncancel (3.11) tells our cancellation from anyone else's.
        if self._inside and host is not None and not self._interrupted and hasattr(host, "uncancel"):
            self._interrupted = True
            host.cancel(msg="vision_node: the lease was lost")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._inside = False
        lease = self._lease
        assert lease is not None
        ours = False
        if self._interrupted and self._host is not None:
            # Withdraw our cancellation; if nobody else cancelled the task, the
            # CancelledError it raised was ours and becomes LeaseLost.
            # (_interrupt cancels only where Task.uncancel exists: 3.11+.)
            uncancel: Callable[[], int] = getattr(self._host, "uncancel")
            ours = uncancel() == 0
        body_failed = exc_type is not None and not (ours and exc_type is asyncio.CancelledError)
        await lease._end(ok=not body_failed)
        if exc_type is None or (ours and exc_type is asyncio.CancelledError):
            lease.check()
        return False


class AsyncClient:
    """``Client`` for asyncio: the same methods, awaited (``watch()`` is an
    async iterator; ``stats()`` stays synchronous). It may be built anywhere,
    and is then bound to the event loop of its first call."""

    def __init__(
        self,
        socket: str | os.PathLike[str],
        token: str,
        *,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not token:
            raise ValueError("token is required: the VISION_TOKEN of this pod")
        self._socket = os.fspath(socket)
        self._token = token
        self._retry = retry or RetryPolicy()
        self._rng = random.Random()
        # Made on first use: a grpc.aio channel belongs to the event loop that
        # is running when it is made, so the client may be built outside one.
        self._channel: Any = None
        self._stub_: Stub | None = None
        self._stats = StatsRecorder()
        self._leases: dict[int, AsyncLease] = {}
        self._closed = False
        self._closing = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._gpus: list[tuple[int, str]] = []
        self._tritons: dict[str, Any] = {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, retry: RetryPolicy | None = None) -> AsyncClient:
        """See ``Client.from_env``."""
        socket, token = socket_and_token(environ)
        return cls(socket, token, retry=retry)

    @property
    def socket(self) -> str:
        return self._socket

    @property
    def _stub(self) -> Stub:
        if self._stub_ is None:
            self._channel = grpc.aio.insecure_channel(target(self._socket), options=CHANNEL_OPTIONS)
            self._stub_ = Stub(self._channel)
        return self._stub_

    def task(
        self,
        model: str,
        task_type: str = "",
        *,
        timeout: float | None = 30.0,
        priority: int = 0,
    ) -> _AsyncTask:
        """``async with client.task(model) as lease:``; see ``Client.task``."""
        return _AsyncTask(self, {"model": model, "task_type": task_type, "timeout": timeout, "priority": priority})

    async def admit(
        self,
        model: str,
        task_type: str = "",
        *,
        timeout: float | None = 30.0,
        priority: int = 0,
    ) -> AsyncLease:
        """See ``Client.admit``."""
        self._check_open()
        self._ensure_watcher()
        started = time.monotonic()
        attempts = Attempts(self._retry, timeout, started, self._rng)
        while True:
            now = time.monotonic()
            request = pb.AdmitRequest(token=self._token, model=model, task_type=task_type, priority=priority)
            wait_ms = attempts.request_timeout_ms(now)
            if wait_ms is not None:
                request.timeout_ms = wait_ms
            try:
                granted = (await self._stub.admit(request, timeout=attempts.rpc_timeout_s(now))).lease
                break
            except grpc.RpcError as e:
                delay = attempts.after_failure(code_name(e), time.monotonic())
                if delay is None:
                    self._stats.refused()
                    note = ""
                    if attempts.failures > 1:
                        note = f"gave up after {attempts.failures} attempts in {time.monotonic() - started:.1f} s"
                    raise from_rpc(e, f"admitting {model!r}", note) from e
                self._stats.retried()
                log.info("admitting %r: %s; attempt %d in %.2f s", model, code_name(e), attempts.failures + 1, delay)
                await asyncio.sleep(delay)
                self._check_open()
        lease = AsyncLease(self, granted, await self._cuda_device(granted))
        self._stats.granted((time.monotonic() - started) * 1000, granted.warm)
        self._leases[lease.lease_id] = lease
        lease._start()
        return lease

    def stats(self) -> Stats:
        return self._stats.snapshot()

    async def watch(self, *, timeout: float | None = None) -> AsyncIterator[_events.Event]:
        """See ``Client.watch``: ``async for event in client.watch()``."""
        self._check_open()
        call = self._stub.watch(pb.WatchRequest(token=self._token), timeout=timeout)
        try:
            async for ev in call:
                yield _events.from_pb(ev)
        except grpc.RpcError as e:
            code = code_name(e)
            if (self._closed and code == "CANCELLED") or (timeout is not None and code == "DEADLINE_EXCEEDED"):
                return
            raise from_rpc(e, "Watch") from e
        finally:
            call.cancel()

    async def status(self) -> pb.StatusResponse:
        self._check_open()
        try:
            response: pb.StatusResponse = await self._stub.status(
                pb.StatusRequest(token=self._token), timeout=CALL_TIMEOUT_S
            )
            return response
        except grpc.RpcError as e:
            raise from_rpc(e, "Status") from e

    async def models(self) -> list[pb.ModelInfo]:
        self._check_open()
        try:
            reply = await self._stub.list_models(pb.ListModelsRequest(), timeout=CALL_TIMEOUT_S)
            return list(reply.models)
        except grpc.RpcError as e:
            raise from_rpc(e, "ListModels") from e

    async def close(self) -> None:
        """Releases leases still held, stops the background task, closes the channel."""
        if self._closed:
            return
        for lease in list(self._leases.values()):
            await lease._end(ok=False)
        self._closed = True
        self._closing.set()
        if self._watcher is not None:
            self._watcher.cancel()
            try:
                await self._watcher
            except asyncio.CancelledError:
                pass
        for triton in self._tritons.values():
            try:
                await triton.close()
            except Exception:  # closing is best effort
                pass
        if self._channel is not None:
            await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # Internals.
    def _check_open(self) -> None:
        if self._closed:
            raise VisionError("the client is closed")

    def _forget(self, lease: AsyncLease) -> None:
        self._leases.pop(lease.lease_id, None)

    async def _cuda_device(self, lease: pb.Lease) -> int | None:
        if all(u != lease.gpu_uuid for _, u in self._gpus):
            try:
                reply = await self._stub.status(pb.StatusRequest(token=self._token), timeout=CALL_TIMEOUT_S)
                self._gpus = [(g.index, g.uuid) for g in reply.gpus]
            except grpc.RpcError as e:
                log.debug("no GPU list for cuda_device (%s); using the lease's GPU alone", code_name(e))
        return cuda_device_index(lease.gpu_uuid, lease.gpu_index, self._gpus, os.environ)

    def _triton_client(self, endpoint: str) -> Any:
        url = triton_url(endpoint)
        client = self._tritons.get(url)
        if client is None:
            client = import_triton(aio=True).InferenceServerClient(url=url)
            self._tritons[url] = client
        return client

    def _ensure_watcher(self) -> None:
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch_leases())

    def _poke_leases(self) -> None:
        for lease in list(self._leases.values()):
            lease._poke()

    async def _watch_leases(self) -> None:
        failures = 0
        while not self._closed:
            call = self._stub.watch(pb.WatchRequest(token=self._token))
            try:
                async for ev in call:
                    failures = 0
                    if ev.missed:
                        self._poke_leases()
                    loss = loss_in(ev)
                    if loss is not None:
                        lease = self._leases.get(loss[0])
                        if lease is not None:
                            lease._set_lost(loss[1])
            except grpc.RpcError as e:
                if self._closed:
                    return
                log.debug("Watch stream ended (%s); reconnecting", code_name(e))
            finally:
                call.cancel()
            self._poke_leases()
            failures += 1
            try:
                await asyncio.wait_for(self._closing.wait(), min(5.0, 0.05 * 2**failures))
                return
            except asyncio.TimeoutError:
                pass
