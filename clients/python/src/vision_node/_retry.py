"""When to try an admission again: exponential backoff with full jitter,
bounded by the caller's timeout.

Sans-I/O: the clock and the randomness come in as arguments, so the sync and
the asyncio clients share this and the tests drive it deterministically.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

#: Codes worth another attempt: the queue was full / no slot was free
#: (RESOURCE_EXHAUSTED), or the daemon was restarting, had no healthy GPU, or
#: a load failed (UNAVAILABLE).
RETRYABLE = frozenset({"RESOURCE_EXHAUSTED", "UNAVAILABLE"})

#: How much longer than the admission's own timeout the RPC may take: the
#: daemon answers DEADLINE_EXCEEDED itself when its wait ends, and that answer
#: (which says why) should arrive before grpcio's local deadline fires.
RPC_GRACE_S = 2.0


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff between admission attempts.

    The n-th wait (from 0) is uniform in ``[0, min(max_backoff_s,
    initial_backoff_s * multiplier**n)]`` ("full jitter"), so that pods
    refused together do not come back together.
    """

    initial_backoff_s: float = 0.05
    max_backoff_s: float = 2.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.initial_backoff_s <= 0 or self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("need 0 < initial_backoff_s <= max_backoff_s")
        if self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")

    def cap(self, attempt: int) -> float:
        """The largest wait after failed attempt number ``attempt`` (from 0)."""
        # Bounded exponent: no float overflow however many attempts.
        return min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** min(attempt, 64))


class Attempts:
    """The attempts of one admission with ``timeout_s`` (None: the daemon's
    default wait, and a single attempt), starting at ``now``."""

    def __init__(
        self,
        policy: RetryPolicy,
        timeout_s: float | None,
        now: float,
        rng: random.Random | None = None,
    ) -> None:
        if timeout_s is not None and timeout_s < 0:
            raise ValueError(f"timeout must be >= 0 seconds, got {timeout_s}")
        self._policy = policy
        self._deadline = None if timeout_s is None else now + timeout_s
        self._rng = rng or random.Random()
        #: Failed attempts so far.
        self.failures = 0

    def request_timeout_ms(self, now: float) -> int | None:
        """The AdmitRequest's ``timeout_ms`` for an attempt made at ``now``:
        what is left of the caller's timeout (None: the daemon's default)."""
        if self._deadline is None:
            return None
        return max(0, int((self._deadline - now) * 1000))

    def rpc_timeout_s(self, now: float) -> float | None:
        """The gRPC deadline of that attempt."""
        ms = self.request_timeout_ms(now)
        return None if ms is None else ms / 1000 + RPC_GRACE_S

    def after_failure(self, code: str, now: float) -> float | None:
        """Seconds to wait before the next attempt after one failed with
        ``code`` at ``now``, or None to give up (not retryable, or the next
        attempt would start past the deadline)."""
        self.failures += 1
        if code not in RETRYABLE or self._deadline is None:
            return None
        delay = self._rng.uniform(0, self._policy.cap(self.failures - 1))
        if now + delay >= self._deadline:
            return None
        return delay
