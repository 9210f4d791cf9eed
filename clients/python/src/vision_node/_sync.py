"""The blocking client: ``Client`` and the ``Lease`` it hands out.

Threads: each held lease has one that renews it (KeepAlive at a third of its
TTL), and the client has one that reads the daemon's Watch stream, so that a
revocation is noticed at once rather than at the next renewal. Both only set
``lease.lost``; the task's own thread learns of it at its next
``lease.check()`` or ``lease.infer()``, or when the ``with`` block ends.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

import grpc

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


class Lease(LeaseView):
    """A lease on GPU memory for one task; see ``Client.task()``.

    Kept alive in the background until released. If the daemon takes it back
    (its GPU failed, the pod's allocation was released) or it cannot be
    renewed before it expires, ``lost`` is set and ``lost_reason`` says why;
    ``check()`` then raises ``LeaseLost``, and so does leaving the ``with``
    block (or ``release()``).
    """

    def __init__(self, client: Client, lease: pb.Lease, cuda_device: int | None) -> None:
        self.info = _events.LeaseInfo.from_pb(lease)
        self.cuda_device = cuda_device
        self.lost: threading.Event = threading.Event()
        self.lost_reason = None
        self._client = client
        self._lock = threading.Lock()
        self._held = True
        self._wake = threading.Event()
        self._granted_at = time.monotonic()
        self._expires_at = self._granted_at + lease.expires_in_ms / 1000
        self._renewals = 0
        self._keeper = threading.Thread(
            target=self._keep_alive, name=f"vision-lease-{lease.lease_id}", daemon=True
        )

    def triton_client(self) -> Any:
        """A ``tritonclient.grpc.InferenceServerClient`` for this lease's
        runtime endpoint (shared by the client's leases on that endpoint)."""
        return self._client._triton_client(self.runtime_endpoint)

    def infer(self, inputs: Any, outputs: Any = None, *, model_name: str | None = None, **kwargs: Any) -> Any:
        """Runs one inference through the node's Triton server and returns
        tritonclient's ``InferResult``.

        ``inputs`` and ``outputs`` are tritonclient ``InferInput`` /
        ``InferRequestedOutput`` lists; ``model_name`` defaults to the name
        the model server knows the lease's model by (``lease.runtime_model``,
        which the daemon takes from the catalog's ``runtime_name``); other
        keyword arguments go to ``InferenceServerClient.infer``.
        Raises ``LeaseLost`` if the lease was lost before or during the call.
        """
        self.check()
        result = self.triton_client().infer(model_name or self.infer_model, inputs, outputs=outputs, **kwargs)
        self.check()
        return result

    def release(self) -> None:
        """Ends the lease (idempotent). Raises ``LeaseLost`` if it had been lost."""
        self._end(ok=True)
        self.check()

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._end(ok=exc_type is None)
        if exc_type is None:
            self.check()

    # Internals.
    def _start(self) -> None:
        self._keeper.start()

    def _poke(self) -> None:
        """Renew now (the Watch stream may have missed a revocation)."""
        self._wake.set()

    def _set_lost(self, reason: str, *, force: bool = False) -> None:
        with self._lock:
            if self.lost.is_set() or (not self._held and not force):
                return
            self.lost_reason = reason
            self.lost.set()
        self._wake.set()
        log.warning("lease %d (%s on %s) lost: %s", self.lease_id, self.model, self.gpu_uuid, reason)

    def _keep_alive(self) -> None:
        period = keepalive_period_s(self.ttl_ms)
        delay = period
        stub, token = self._client._stub, self._client._token
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            if not self._held or self.lost.is_set():
                return
            sent = time.monotonic()
            try:
                reply = stub.keep_alive(
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

    def _end(self, ok: bool) -> None:
        with self._lock:
            if not self._held:
                return
            self._held = False
        self._wake.set()
        if not self.lost.is_set():
            try:
                self._client._stub.release(
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
        hold_ms = (time.monotonic() - self._granted_at) * 1000
        self._client._forget(self)
        self._client._stats.ended(hold_ms, ok=ok and not lost, lost=lost)


class _Task:
    """``with client.task(...) as lease``: admits on entry, releases on exit."""

    def __init__(self, client: Client, args: dict[str, Any]) -> None:
        self._client = client
        self._args = args
        self._lease: Lease | None = None

    def __enter__(self) -> Lease:
        self._lease = self._client.admit(**self._args)
        return self._lease

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._lease is not None:
            self._lease.__exit__(exc_type, exc, tb)


class Client:
    """A connection to vision-node-daemon's task socket, for one pod.

    ``Client.from_env()`` inside a pod; ``Client(socket=..., token=...)``
    elsewhere. Thread-safe; close it (or use it as a context manager) to stop
    its background thread and release leases still held.
    """

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
        self._channel = grpc.insecure_channel(target(self._socket), options=CHANNEL_OPTIONS)
        self._stub = Stub(self._channel)
        self._stats = StatsRecorder()
        self._lock = threading.Lock()
        self._leases: dict[int, Lease] = {}
        self._closed = threading.Event()
        self._watcher: threading.Thread | None = None
        self._watch_call: Any = None
        self._gpus: list[tuple[int, str]] = []
        self._tritons: dict[str, Any] = {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, retry: RetryPolicy | None = None) -> Client:
        """The client for this container: VISION_SOCKET and VISION_TOKEN (or
        VISION_VRAM_TOKEN), as the device plugin's Allocate set them."""
        socket, token = socket_and_token(environ)
        return cls(socket, token, retry=retry)

    @property
    def socket(self) -> str:
        return self._socket

    def task(
        self,
        model: str,
        task_type: str = "",
        *,
        timeout: float | None = 30.0,
        priority: int = 0,
    ) -> _Task:
        """``with client.task(model) as lease:`` runs the block holding a
        lease (see ``admit()`` for the arguments): the lease is kept alive
        meanwhile and released when the block ends, normally or by an
        exception. If the lease was lost, leaving the block raises
        ``LeaseLost``."""
        return _Task(self, {"model": model, "task_type": task_type, "timeout": timeout, "priority": priority})

    def admit(
        self,
        model: str,
        task_type: str = "",
        *,
        timeout: float | None = 30.0,
        priority: int = 0,
    ) -> Lease:
        """Waits for a lease to run one task of ``model`` and returns it, kept
        alive until ``lease.release()`` (or the end of ``with lease:``).

        ``timeout`` (seconds) bounds the whole wait: the daemon's queue and
        load, and retries after RESOURCE_EXHAUSTED (queue full) or UNAVAILABLE
        (daemon restarting), with jittered exponential backoff. 0 never
        queues; None waits the daemon's default, once. ``priority``: higher
        runs first. Raises a ``VisionError`` subclass when refused.
        """
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
                granted = self._stub.admit(request, timeout=attempts.rpc_timeout_s(now)).lease
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
                if self._closed.wait(delay):
                    raise VisionError("the client was closed while admitting") from e
        lease = Lease(self, granted, self._cuda_device(granted))
        self._stats.granted((time.monotonic() - started) * 1000, granted.warm)
        with self._lock:
            self._leases[lease.lease_id] = lease
        lease._start()
        return lease

    def stats(self) -> Stats:
        """This client's task counts and times."""
        return self._stats.snapshot()

    def watch(self, *, timeout: float | None = None) -> Iterator[_events.Event]:
        """The daemon's Watch stream as typed events: this pod's lease events
        and the node's, starting with the queue depth. Iterate; leaving the
        loop (or closing the iterator) cancels the stream. With ``timeout``
        (seconds), the iteration simply ends then."""
        self._check_open()
        call = self._stub.watch(pb.WatchRequest(token=self._token), timeout=timeout)
        try:
            for ev in call:
                yield _events.from_pb(ev)
        except grpc.RpcError as e:
            code = code_name(e)
            if (self._closed.is_set() and code == "CANCELLED") or (timeout is not None and code == "DEADLINE_EXCEEDED"):
                return
            raise from_rpc(e, "Watch") from e
        finally:
            call.cancel()

    def status(self) -> pb.StatusResponse:
        """The node's status (GPUs, pool, resident models, queue) and this
        pod's leases: the ``vision.v1.StatusResponse`` message."""
        self._check_open()
        try:
            response: pb.StatusResponse = self._stub.status(pb.StatusRequest(token=self._token), timeout=CALL_TIMEOUT_S)
            return response
        except grpc.RpcError as e:
            raise from_rpc(e, "Status") from e

    def models(self) -> list[pb.ModelInfo]:
        """The daemon's model catalog, with where each model is resident."""
        self._check_open()
        try:
            return list(self._stub.list_models(pb.ListModelsRequest(), timeout=CALL_TIMEOUT_S).models)
        except grpc.RpcError as e:
            raise from_rpc(e, "ListModels") from e

    def close(self) -> None:
        """Releases leases still held, stops the background thread, closes the channel."""
        if self._closed.is_set():
            return
        with self._lock:
            held = list(self._leases.values())
        for lease in held:
            lease._end(ok=False)
        self._closed.set()
        with self._lock:
            call = self._watch_call
        if call is not None:
            call.cancel()
        for triton in self._tritons.values():
            try:
                triton.close()
            except Exception:  # closing is best effort
                pass
        self._channel.close()
        if self._watcher is not None:
            self._watcher.join(timeout=CALL_TIMEOUT_S)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Internals.
    def _check_open(self) -> None:
        if self._closed.is_set():
            raise VisionError("the client is closed")

    def _forget(self, lease: Lease) -> None:
        with self._lock:
            self._leases.pop(lease.lease_id, None)

    def _cuda_device(self, lease: pb.Lease) -> int | None:
        if all(u != lease.gpu_uuid for _, u in self._gpus):
            try:
                gpus = self._stub.status(pb.StatusRequest(token=self._token), timeout=CALL_TIMEOUT_S).gpus
                self._gpus = [(g.index, g.uuid) for g in gpus]
            except grpc.RpcError as e:
                log.debug("no GPU list for cuda_device (%s); using the lease's GPU alone", code_name(e))
        return cuda_device_index(lease.gpu_uuid, lease.gpu_index, self._gpus, os.environ)

    def _triton_client(self, endpoint: str) -> Any:
        url = triton_url(endpoint)
        with self._lock:
            client = self._tritons.get(url)
            if client is None:
                client = import_triton(aio=False).InferenceServerClient(url=url)
                self._tritons[url] = client
            return client

    def _ensure_watcher(self) -> None:
        with self._lock:
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch_leases, name="vision-watch", daemon=True)
                self._watcher.start()

    def _poke_leases(self) -> None:
        with self._lock:
            held = list(self._leases.values())
        for lease in held:
            lease._poke()

    def _watch_leases(self) -> None:
        """Marks this client's leases lost as soon as the daemon says so."""
        failures = 0
        while not self._closed.is_set():
            with self._lock:
                if self._closed.is_set():
                    return
                call = self._watch_call = self._stub.watch(pb.WatchRequest(token=self._token))
            try:
                for ev in call:
                    failures = 0
                    if ev.missed:
                        self._poke_leases()
                    loss = loss_in(ev)
                    if loss is not None:
                        with self._lock:
                            lease = self._leases.get(loss[0])
                        if lease is not None:
                            lease._set_lost(loss[1])
            except grpc.RpcError as e:
                if self._closed.is_set():
                    return
                log.debug("Watch stream ended (%s); reconnecting", code_name(e))
            # Whatever happened while the stream was down, the renewals find out.
            self._poke_leases()
            failures += 1
            if self._closed.wait(min(5.0, 0.05 * 2**failures)):
                return
