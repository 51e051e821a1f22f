"""A small in-process cache whose entries expire: what a stage keeps between requests so its hot path
need not ask the store every time (sessions, keys, used sign-in states).

:class:`SingleFlight` goes with it: when an entry runs out while many requests want it, they share
one read of the store instead of each queueing its own behind the others.

Bounded: at ``max_entries`` the expired entries are dropped, then the oldest. Reads are one dict
look-up and one clock call. Not shared between processes: whatever it holds may be up to ``ttl``
seconds stale elsewhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """``key → value`` for ``ttl`` seconds each (``put`` may give an entry its own ``ttl``)."""

    def __init__(
        self, ttl: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        """The live value under ``key``, or ``None`` (an expired entry is dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        """Keep ``value`` for ``ttl`` seconds (the cache's own by default); a ``ttl`` of 0 keeps nothing."""
        lifetime = self.ttl if ttl is None else ttl
        if lifetime <= 0:
            self._entries.pop(key, None)
            return
        now = self.clock()
        if key not in self._entries and len(self._entries) >= self.max_entries:
            self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
            while len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]
        self._entries[key] = (now + lifetime, value)

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)

    def discard_where(self, predicate: Callable[[V], bool]) -> int:
        """Drop every entry whose value matches; how many were dropped."""
        doomed = [key for key, (_, value) in self._entries.items() if predicate(value)]
        for key in doomed:
            del self._entries[key]
        return len(doomed)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._entries))


class SingleFlight(Generic[K, V]):
    """Concurrent loads of one key share one call: the first caller's ``load()``, awaited by all (a
    caller that is cancelled does not cancel it for the others)."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[V]] = {}

    async def run(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        running = self._running.get(key)
        if running is None:
            running = self._running[key] = asyncio.ensure_future(load())
            running.add_done_callback(partial(self._done, key))
        return await asyncio.shield(running)

    def _done(self, key: K, future: asyncio.Future[V]) -> None:
        if self._running.get(key) is future:
            del self._running[key]
        if not future.cancelled():
            future.exception()  # retrieved: the callers left awaiting it get it raised
