"""The store-backed rate limiter: one count for every process (two Database objects here, as two
replicas), back-off included; refused hits are not counted; nothing but a digest of the key stored."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from proxy_core.db import Database, StoreRateLimiter
from proxy_core.ratelimit import Policy
from tests.db.backends import MakeDatabase


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at


async def opened(make_db: MakeDatabase) -> Database:
    db = make_db()
    await db.open()
    assert (await db.readiness()).ready
    return db


async def test_replicas_share_one_count_with_back_off(make_db: MakeDatabase) -> None:
    clock = Clock()
    policy = Policy(limit=4, window=3600, backoff=30)
    one, two = [StoreRateLimiter(await opened(make_db), "test", policy, clock) for _ in range(2)]
    assert (await one.hit("ann@example.com\0192.0.2.1")).allowed
    assert (await two.hit("ann@example.com\0192.0.2.1")).allowed
    refused = await one.hit("ann@example.com\0192.0.2.1")
    assert (refused.allowed, refused.retry_after) == (False, 30.0)
    clock.at += timedelta(seconds=30)
    assert (await two.hit("ann@example.com\0192.0.2.1")).allowed
    clock.at += timedelta(seconds=30)
    assert (await one.hit("ann@example.com\0192.0.2.1")).retry_after == 30.0  # doubled: 60 s
    clock.at += timedelta(seconds=30)
    assert (await one.hit("ann@example.com\0192.0.2.1")).allowed  # the fourth: the limit
    clock.at += timedelta(seconds=200)
    assert not (await two.hit("ann@example.com\0192.0.2.1")).allowed
    clock.at += timedelta(hours=1)
    assert (await two.hit("ann@example.com\0192.0.2.1")).allowed  # a new window
    rows = await one.db.fetch("SELECT key FROM rate_limits")
    assert len(rows) == 1 and "ann" not in rows[0]["key"] and len(rows[0]["key"]) == 64


async def test_concurrent_hits_in_two_processes_never_exceed_the_limit(make_db: MakeDatabase) -> None:
    limiters = [StoreRateLimiter(await opened(make_db), "race", Policy(limit=5, window=60)) for _ in range(2)]
    decisions = await asyncio.gather(*(limiters[n % 2].hit("ip") for n in range(12)))
    assert sum(d.allowed for d in decisions) == 5


async def test_a_limit_given_with_the_hit_replaces_the_policys(make_db: MakeDatabase) -> None:
    clock = Clock()
    one, two = [
        StoreRateLimiter(await opened(make_db), "per-call", Policy(limit=5, window=60), clock)
        for _ in range(2)
    ]
    assert [(await limiter.hit("user", 2)).allowed for limiter in (one, two, one)] == [True, True, False]
    clock.at += timedelta(seconds=20)
    assert (await two.hit("user", 2)).retry_after == 40.0
    assert (await two.hit("user", 3)).allowed  # a raised limit counts the same window on
    assert not (await one.hit("user", 3)).allowed
    assert (await one.hit("user")).allowed  # the policy's 5 when none is given


async def test_old_counters_are_purged(make_db: MakeDatabase) -> None:
    clock = Clock()
    limiter = StoreRateLimiter(await opened(make_db), "purge", Policy(limit=1, window=60), clock)
    await limiter.hit("a")
    clock.at += timedelta(seconds=30)
    await limiter.hit("b")
    clock.at += timedelta(seconds=31)
    assert await limiter.purge() == 1
    assert len(await limiter.db.fetch("SELECT key FROM rate_limits")) == 1  # b lives on
