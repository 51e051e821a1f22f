"""One fetch in flight at a time: waiters share it, its failure, and survive each other's cancellation."""

from __future__ import annotations

import asyncio

import pytest

from plugins.auth.providers.shared_fetch import SharedFetch


class Source:
    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.fail: Exception | None = None

    async def __call__(self) -> int:
        self.calls += 1
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return self.calls


async def test_concurrent_callers_share_one_fetch_and_then_the_cache() -> None:
    source = Source()
    shared = SharedFetch(source, ttl=3600, retry_after=0)
    waiters = [asyncio.create_task(shared.get()) for _ in range(3)]
    await asyncio.sleep(0)
    source.release.set()
    assert await asyncio.gather(*waiters) == [1, 1, 1]
    assert await shared.get() == 1 and shared.cached == 1 and source.calls == 1
    assert await shared.get(fresher_than=shared.fetched_at + 1) == 2  # older than asked: fetched again


async def test_a_failure_reaches_every_waiter_and_is_remembered() -> None:
    source = Source()
    source.fail = RuntimeError("provider down")
    shared = SharedFetch(source, ttl=3600, retry_after=3600)
    waiters = [asyncio.create_task(shared.get()) for _ in range(3)]
    await asyncio.sleep(0)
    source.release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results) and source.calls == 1
    with pytest.raises(RuntimeError, match="provider down"):
        await shared.get()
    assert source.calls == 1  # remembered: no new fetch within retry_after


async def test_a_waiter_that_gives_up_does_not_cancel_the_others() -> None:
    source = Source()
    shared = SharedFetch(source, ttl=3600, retry_after=0)
    quitter, stayer = asyncio.create_task(shared.get()), asyncio.create_task(shared.get())
    await asyncio.sleep(0)
    quitter.cancel()
    source.release.set()
    assert await stayer == 1
    with pytest.raises(asyncio.CancelledError):
        await quitter


async def test_close_cancels_a_fetch_in_flight() -> None:
    source = Source()
    shared = SharedFetch(source, ttl=3600, retry_after=0)
    waiter = asyncio.create_task(shared.get())
    await asyncio.sleep(0)
    await shared.close()
    with pytest.raises(asyncio.CancelledError):
        await waiter
