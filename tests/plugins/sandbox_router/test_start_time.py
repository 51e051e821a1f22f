"""What shortens or bounds a start: health polling that backs off, and the cap on running sandboxes."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

import aiohttp
import orjson
import pytest

from plugins.sandbox_router.lifecycle import health_progress, health_waits
from plugins.sandbox_router.providers.base import Handle, ProgressCallback, SandboxSpec
from tests.plugins.sandbox_router.conftest import JSON, Cloud, CloudFactory


def test_health_polling_backs_off_from_the_first_wait_to_the_longest() -> None:
    waits = list(itertools.islice(health_waits(0.1, 0.25), 6))
    assert waits == pytest.approx([0.1, 0.125, 0.15625, 0.1953125, 0.244140625, 0.25])
    assert list(itertools.islice(health_waits(2.0, 0.5), 2)) == [0.5, 0.5]


@pytest.mark.parametrize("pause", ["stop", "freeze"])
async def test_past_max_running_the_least_recently_used_sandbox_is_paused(
    make_cloud: CloudFactory, pause: str
) -> None:
    """With ``freeze`` the pause waits out the workers' cached routes (``route_grace``) in the
    background: the new start does not wait for it."""
    cloud = await make_cloud(max_running=2, local={"pause": pause})
    ada = await cloud.sign_in("ada@example.com")
    assert (await cloud.until_running(ada))["event"] == "ready"
    ada_id = await cloud.user_id(ada)
    bob = await cloud.sign_in("bob@example.com")
    assert (await cloud.until_running(bob))["event"] == "ready"
    bob_id = await cloud.user_id(bob)
    async with ada.post(cloud.at("/api/sandbox/ping"), headers=JSON) as answer:
        assert answer.status == 204  # ada started first but used hers last: bob's is the one to go
    await cloud.router.activity.flush()

    cat = await cloud.sign_in("cat@example.com")
    assert (await cloud.until_running(cat))["event"] == "ready"
    cat_id = await cloud.user_id(cat)
    states = {
        name: (await cloud.sandbox(u)).state
        for name, u in [("ada", ada_id), ("bob", bob_id), ("cat", cat_id)]
    }
    assert states == {"ada": "running", "bob": "paused", "cat": "running"}
    assert "max_running" in ((await cloud.sandbox(bob_id)).error_message or "")
    bob_sandbox = (await cloud.sandbox(bob_id)).sandbox_id or ""
    async with asyncio.timeout(cloud.router.lifecycle.route_grace + 5):
        while {s.sandbox_id: s.state for s in await cloud.router.provider.list()}[bob_sandbox] != "paused":
            await asyncio.sleep(0.05)

    assert (await cloud.until_running(bob))["event"] == "ready"  # bob comes back; another one goes
    async with asyncio.timeout(5):  # freeze: the pause runs beside bob's start
        while len(running := await _running(cloud, ada_id, bob_id, cat_id)) > 2:
            await asyncio.sleep(0.05)
    assert len(running) == 2 and bob_id in running


async def _running(cloud: Cloud, *users: uuid.UUID) -> list[uuid.UUID]:
    return [user for user in users if (await cloud.sandbox(user)).state == "running"]


def test_the_health_step_moves_from_80_to_95_percent_over_the_last_start() -> None:
    assert health_progress(0.0, 20.0).percent == 80
    assert health_progress(10.0, 20.0).percent == 87
    assert health_progress(60.0, 20.0).percent == 95
    assert "took 20 s" in health_progress(1.0, 20.0).message


async def test_a_later_start_shows_the_health_step_against_the_last_start(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud(health_interval=0.01, health_interval_max=0.01)
    lifecycle = cloud.router.lifecycle
    ada = await cloud.sign_in("ada@example.com")
    assert (await cloud.until_running(ada))["event"] == "ready"
    assert lifecycle.app_start_estimate is not None and lifecycle.app_start_estimate > 0

    await cloud.router.lifecycle.pause(ada_id := await cloud.user_id(ada), "test")
    watch = lifecycle.start(ada_id)  # a resume: the health step now knows how long the last one took
    seen: set[tuple[str, int, str]] = set()
    while not watch.done.is_set():
        seen.add((watch.step, watch.percent, watch.message))
        await asyncio.sleep(0.001)
    health = [(percent, message) for step, percent, message in seen if step == "health"]
    assert any(80 <= p <= 95 and "the last start took" in m for p, m in health), seen


async def first_event(cloud: Cloud, session: aiohttp.ClientSession, phase: str = "idle") -> dict[str, Any]:
    """The first event of the progress page's stream in ``phase`` (``idle``: asked to start)."""
    async with session.get(cloud.at("/api/sandbox/events")) as answer:
        async for raw in answer.content:
            if raw.startswith(b"data: "):
                found: dict[str, Any] = orjson.loads(raw[6:])
                if found["phase"] == phase:
                    return found
    raise AssertionError(f"no {phase} event")


async def test_users_past_the_start_limit_see_their_place_in_line(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud(max_concurrent_starts=1)
    release = asyncio.Event()
    provider = cloud.router.provider
    create = provider.create

    async def held_create(spec: SandboxSpec, on_progress: ProgressCallback) -> Handle:
        await release.wait()
        return await create(spec, on_progress)

    provider.create = held_create  # type: ignore[method-assign]
    ada, bob, cat = [await cloud.sign_in(f"{name}@example.com") for name in ("ada", "bob", "cat")]
    assert (await first_event(cloud, ada, "starting"))["position"] is None
    bob_sees = await first_event(cloud, bob)
    cat_sees = await first_event(cloud, cat)
    assert bob_sees["position"] == 1 and "number 1 in line" in bob_sees["message"]
    assert cat_sees["position"] == 2 and "number 2 in line" in cat_sees["message"]
    assert (await first_event(cloud, bob))["position"] == 1  # asking again keeps one's place
    async with cat.get(cloud.at("/studio/")) as answer:  # a browser gets the progress page, not a 429
        assert answer.status == 200 and "number 2 in line" in await answer.text()
    async with cat.get(cloud.at("/api/mastra/x"), headers=JSON) as answer:
        assert answer.status == 429 and "number 2 in line" in await answer.text()

    release.set()
    finals = await asyncio.gather(*(cloud.until_running(s) for s in (ada, bob, cat)))
    assert [f["event"] for f in finals] == ["ready", "ready", "ready"]
