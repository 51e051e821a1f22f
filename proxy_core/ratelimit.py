"""Rate limits: ``limit`` hits per ``window`` seconds per key, optionally with exponential back-off
between hits (from the third hit on, each must wait ``backoff`` seconds, doubled each time).

Two implementations of one :class:`RateLimiter` protocol: :class:`LocalRateLimiter` counts in this
process (cheap; N workers or replicas each count on their own), and
:class:`~proxy_core.db.StoreRateLimiter` counts in the shared store (every worker and replica, and
restarts, see the same counters), for limits an attacker must not multiply.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0
    """Seconds until a hit may be allowed again (0 when allowed)."""


@dataclass(frozen=True, slots=True)
class Policy:
    limit: int
    window: float
    backoff: float = 0.0

    def wait_after(self, hits: int) -> float:
        """The wait after the ``hits``-th hit of a window: none after the first (a second try at once
        is normal), ``backoff`` seconds after the second, doubled after each further hit."""
        return self.backoff * 2 ** (hits - 2) if self.backoff and hits >= 2 else 0.0


class RateLimiter(Protocol):
    policy: Policy

    async def hit(self, key: str, limit: int | None = None) -> Decision:
        """Count one hit for ``key`` when allowed; a refused hit is not counted. ``limit`` replaces
        the policy's for this hit, for limits that vary by key (a user's own allowance, say)."""
        ...


@dataclass(slots=True)
class _Counter:
    hits: int
    window_ends: float
    wait_until: float


class LocalRateLimiter:
    """:class:`RateLimiter` counting in this process."""

    def __init__(
        self, policy: Policy, clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._max_keys = max_keys
        self._counters: dict[str, _Counter] = {}

    async def hit(self, key: str, limit: int | None = None) -> Decision:
        return self.hit_now(key, limit)

    def hit_now(self, key: str, limit: int | None = None) -> Decision:
        """:meth:`hit` for synchronous callers."""
        now = self._clock()
        counter = self._counters.get(key)
        if counter is None or counter.window_ends <= now:
            if len(self._counters) >= self._max_keys:
                self._counters = {k: c for k, c in self._counters.items() if c.window_ends > now}
            counter = self._counters[key] = _Counter(0, now + self.policy.window, now)
        decision = judge(
            self.policy, limit, counter.hits, counter.window_ends - now, counter.wait_until - now
        )
        if decision.allowed:
            counter.hits += 1
            counter.wait_until = now + self.policy.wait_after(counter.hits)
        return decision


def judge(policy: Policy, limit: int | None, hits: int, window_left: float, wait_left: float) -> Decision:
    """Whether one more hit is allowed, given the window's hits so far and the seconds left;
    ``limit`` (when not ``None``) replaces the policy's."""
    if wait_left > 0:
        return Decision(False, wait_left)
    if hits >= (policy.limit if limit is None else limit):
        return Decision(False, max(window_left, 0.0))
    return Decision(True)
