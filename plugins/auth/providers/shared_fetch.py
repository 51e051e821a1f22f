"""One value fetched from a provider, cached for a while, with one fetch in flight at a time.

Callers that arrive while a fetch is running wait for that same fetch (no lock is held across the
network call, and a slow provider costs every waiter one timeout, not one each in turn). A failure
reaches every waiter and is remembered for ``retry_after`` seconds, so the sign-ins that follow fail
at once instead of each waiting for a provider that does not answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedFetch(Generic[T]):
    def __init__(self, fetch: Callable[[], Awaitable[T]], *, ttl: float, retry_after: float) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._retry_after = retry_after
        self._value: T | None = None
        self._fetched_at = 0.0
        self._failure: tuple[float, BaseException] | None = None
        self._in_flight: asyncio.Task[T] | None = None

    @property
    def cached(self) -> T | None:
        """The last value fetched, however old (``None`` before the first success)."""
        return self._value

    @property
    def fetched_at(self) -> float:
        """``time.monotonic()`` of the last success (0 before the first)."""
        return self._fetched_at

    async def get(self, *, fresher_than: float | None = None) -> T:
        """The cached value while it is younger than ``ttl`` (and fetched after ``fresher_than``),
        else the result of the one fetch in flight, started when none is."""
        clock = time.monotonic()
        if (
            self._value is not None
            and clock - self._fetched_at <= self._ttl
            and (fresher_than is None or self._fetched_at >= fresher_than)
        ):
            return self._value
        if self._in_flight is None:
            if self._failure is not None and clock - self._failure[0] < self._retry_after:
                raise self._failure[1].with_traceback(None)  # not a traceback growing per re-raise
            self._in_flight = asyncio.get_running_loop().create_task(self._run())
        # shielded: a waiter that gives up (its request was cancelled) does not cancel the others' fetch
        return await asyncio.shield(self._in_flight)

    async def _run(self) -> T:
        try:
            value = await self._fetch()
        except Exception as exc:
            self._failure = (time.monotonic(), exc)
            raise
        else:
            self._value, self._fetched_at, self._failure = value, time.monotonic(), None
            return value
        finally:
            self._in_flight = None

    async def close(self) -> None:
        """Cancel a fetch still running (at shutdown)."""
        task, self._in_flight = self._in_flight, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
