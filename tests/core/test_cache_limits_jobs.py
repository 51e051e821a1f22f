"""The small shared pieces of the core: the TTL cache, the in-process rate limiter, and supervised
background jobs (restarted with back-off after a crash, cancelled at shutdown)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from proxy_core.cache import TTLCache
from proxy_core.ratelimit import LocalRateLimiter, Policy
from proxy_core.tasks import BackgroundJobs, every


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entries_live_for_their_ttl() -> None:
    clock = Clock()
    cache: TTLCache[str, int] = TTLCache(5.0, clock=clock)
    cache.put("a", 1)
    cache.put("b", 2, ttl=10.0)
    cache.put("c", 3, ttl=0)  # kept for no time at all
    clock.now = 104.9
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, 2, None)
    clock.now = 105.0
    assert (cache.get("a"), cache.get("b")) == (None, 2)
    assert len(cache) == 1


def test_a_full_cache_drops_the_expired_then_the_oldest() -> None:
    clock = Clock()
    cache: TTLCache[int, str] = TTLCache(5.0, max_entries=3, clock=clock)
    cache.put(1, "old", ttl=1.0)
    cache.put(2, "two")
    cache.put(3, "three")
    clock.now = 102.0
    cache.put(4, "four")  # 1 expired: dropped, nothing else
    assert sorted(cache) == [2, 3, 4]
    cache.put(5, "five")  # full of live entries: the oldest goes
    assert sorted(cache) == [3, 4, 5]


def test_entries_are_discarded_by_value() -> None:
    cache: TTLCache[str, tuple[str, int]] = TTLCache(60.0)
    for key, owner in (("s1", "ann"), ("s2", "bob"), ("s3", "ann")):
        cache.put(key, (owner, 0))
    assert cache.discard_where(lambda value: value[0] == "ann") == 2
    assert list(cache) == ["s2"]


async def test_the_local_limiter_counts_a_window_and_backs_off() -> None:
    clock = Clock()
    limiter = LocalRateLimiter(Policy(limit=4, window=60.0, backoff=10.0), clock)
    assert [(await limiter.hit("k")).allowed for _ in range(2)] == [True, True]
    refused = await limiter.hit("k")  # after the second hit: wait 10 s
    assert (refused.allowed, refused.retry_after) == (False, 10.0)
    clock.now += 10
    assert (await limiter.hit("k")).allowed
    clock.now += 10  # the wait doubled: 20 s
    assert (await limiter.hit("k")).retry_after == 10.0
    clock.now += 10
    assert (await limiter.hit("k")).allowed  # the fourth hit of the window, at 130: now wait 40 s
    clock.now += 10
    assert (await limiter.hit("k")).retry_after == 30.0
    assert (await limiter.hit("other")).allowed  # keys count on their own
    clock.now += 20  # the window (100..160) is over: counting starts again
    assert (await limiter.hit("k")).allowed
    limited = LocalRateLimiter(Policy(limit=1, window=60.0), clock)
    assert (await limited.hit("k")).allowed
    clock.now += 15
    assert (await limited.hit("k")).retry_after == 45.0  # the limit, till the window ends


async def test_a_limit_given_with_the_hit_replaces_the_policys() -> None:
    clock = Clock()
    limiter = LocalRateLimiter(Policy(limit=5, window=60.0), clock)
    assert [(await limiter.hit("small", 2)).allowed for _ in range(3)] == [True, True, False]
    clock.now += 20
    assert (await limiter.hit("small", 2)).retry_after == 40.0  # refused till its window ends
    assert (await limiter.hit("small")).allowed  # the policy's 5 when none is given
    assert [(await limiter.hit("big", 7)).allowed for _ in range(8)] == [True] * 7 + [False]


async def test_a_crashing_job_is_logged_and_restarted_with_back_off(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[float] = []
    loop = asyncio.get_running_loop()

    async def flaky() -> None:
        runs.append(loop.time())
        if len(runs) < 3:
            raise RuntimeError("boom")
        await asyncio.Event().wait()  # then it keeps running

    async with BackgroundJobs("test", backoff=0.01, max_backoff=1.0) as jobs:
        task = jobs.start("flaky", flaky)
        while len(runs) < 3:
            await asyncio.sleep(0.005)
        assert jobs.crashes == 2 and not task.done() and len(jobs) == 1
    assert task.cancelled() or task.done()
    assert len(jobs) == 0
    assert runs[2] - runs[1] >= runs[1] - runs[0]  # the second wait is the doubled one
    assert caplog.text.count("test: background job 'flaky' crashed; restarting") == 2


async def test_jobs_are_cancelled_and_awaited_at_shutdown() -> None:
    cleaned = asyncio.Event()
    calls: list[int] = []

    async def tick() -> None:
        calls.append(1)

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # clean-up that itself awaits
            cleaned.set()

    jobs = BackgroundJobs("test")
    jobs.start("forever", forever)
    jobs.start("tick", every(0.001, tick))
    while not calls:
        await asyncio.sleep(0.001)
    await jobs.stop()
    assert cleaned.is_set()


async def test_a_job_that_returns_is_done_and_one_without_restart_stays_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)

    async def once() -> None:
        return None

    async def broken() -> None:
        raise RuntimeError("no")

    async with BackgroundJobs("test", backoff=0.001) as jobs:
        done = jobs.start("once", once)
        down = jobs.start("broken", broken, restart=False)
        await asyncio.wait([done, down])
    assert jobs.crashes == 1
    assert "test: background job 'broken' crashed" in caplog.text and "restarting" not in caplog.text
