"""A :class:`~proxy_core.ratelimit.RateLimiter` whose counters live in the store's ``rate_limits``
table: every worker and replica counts against one limit, and a restart forgets nothing.

Each hit is one transaction holding the key's lock (concurrent hits in different processes queue up,
so none is lost). Keys are stored as SHA-256 digests: the table holds no addresses or emails. Rows of
windows long past are deleted now and then by the hits themselves.

On Postgres these transactions commit without waiting for the disk (``SET LOCAL synchronous_commit =
off``): that wait was most of a hit's cost (``python -m bench.ratelimit``), and all a crash of the
database server can lose is its last fraction of a second of counts, never their consistency.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ..ratelimit import Decision, Policy, judge
from .base import Store

_PURGE_EVERY = 1000  # hits


def _now() -> datetime:
    return datetime.now(UTC)


class StoreRateLimiter:
    def __init__(self, db: Store, name: str, policy: Policy, clock: Callable[[], datetime] = _now) -> None:
        self.db = db
        self.name = name
        self.policy = policy
        self._clock = clock
        self._hits = 0

    async def hit(self, key: str, limit: int | None = None) -> Decision:
        digest = hashlib.sha256(key.encode()).hexdigest()
        now = self._clock()
        async with self.db.transaction() as tx:
            if tx.dialect == "postgres":
                await tx.execute("SET LOCAL synchronous_commit = off")
            await tx.xact_lock(f"ratelimit:{self.name}:{digest}")
            row = await tx.fetchrow(
                "SELECT hits, window_ends, wait_until FROM rate_limits WHERE name = $1 AND key = $2",
                self.name,
                digest,
            )
            if row is None or row["window_ends"] <= now:
                hits, window_ends, wait_until = 0, now + timedelta(seconds=self.policy.window), None
            else:
                hits, window_ends, wait_until = row["hits"], row["window_ends"], row["wait_until"]
            wait_left = (wait_until - now).total_seconds() if wait_until is not None else 0.0
            decision = judge(self.policy, limit, hits, (window_ends - now).total_seconds(), wait_left)
            if decision.allowed:
                hits += 1
                wait = self.policy.wait_after(hits)
                await tx.execute(
                    "INSERT INTO rate_limits (name, key, hits, window_ends, wait_until) "
                    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name, key) DO UPDATE SET hits = excluded.hits, "
                    "window_ends = excluded.window_ends, wait_until = excluded.wait_until",
                    self.name,
                    digest,
                    hits,
                    window_ends,
                    now + timedelta(seconds=wait) if wait else None,
                )
        self._hits += 1
        if self._hits % _PURGE_EVERY == 0:
            await self.purge()
        return decision

    async def purge(self) -> int:
        """Delete counters whose window and back-off are over."""
        now = self._clock()
        return await self.db.execute(
            "DELETE FROM rate_limits WHERE name = $1 AND window_ends <= $2 "
            "AND (wait_until IS NULL OR wait_until <= $2)",
            self.name,
            now,
        )
