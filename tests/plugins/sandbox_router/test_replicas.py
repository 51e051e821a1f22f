"""Two replicas on one Postgres share the sandboxes: a burst of requests to a paused sandbox through
both of them makes exactly one resume, and every request is answered."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from plugins.auth import USER_DIRECTORY, UserDirectory
from tests.plugins.sandbox_router.conftest import JSON, Cloud, CloudFactory
from tests.plugins.sandbox_router.test_lifecycle import counting


async def test_500_requests_through_two_replicas_resume_once(
    make_cloud: CloudFactory, pg_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "shared-sandboxes"
    first = await make_cloud(database=pg_url, root=root, max_requests_per_user=1000)
    second = await make_cloud(database=pg_url, root=root, max_requests_per_user=1000)
    ada = await first.sign_in("ada@example.com")
    assert (await first.until_running(ada))["event"] == "ready"
    user_id = await first.user_id(ada)
    assert await first.router.lifecycle.pause(user_id, "test")
    providers = [counting(first), counting(second)]

    cookies = {m.key: m.value for m in ada.cookie_jar}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, cookies=cookies) as burst:

        async def one(index: int) -> int:
            replica = (first, second)[index % 2]
            async with burst.get(replica.at(f"/api/mastra/agents?n={index}"), headers=JSON) as answer:
                await answer.read()
                return answer.status

        statuses = await asyncio.gather(*(one(i) for i in range(500)))
    assert len(statuses) == 500
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert 503 in statuses

    assert (await second.until_running(ada))["event"] == "ready"
    for replica in (first, second):
        async with ada.get(replica.at("/api/mastra/agents"), headers=JSON) as answer:
            assert answer.status == 200
    resumes = sum(p.calls.get("resume", 0) for p in providers)
    creates = sum(p.calls.get("create", 0) for p in providers)
    assert (resumes, creates) == (1, 0)
    states = [e["state"] for e in await first.router.lifecycle.store.events(user_id)]
    assert states == ["provisioning", "running", "paused", "resuming", "running"]


async def test_the_elected_sweeper_pauses_an_idle_sandbox_once(
    make_cloud: CloudFactory, pg_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "shared-sandboxes"
    options = {"database": pg_url, "root": root, "idle_timeout": 1, "sweep_interval": 0.2}
    first = await make_cloud(**options)
    second = await make_cloud(**options)
    ada = await first.sign_in("ada@example.com")
    assert (await first.until_running(ada))["event"] == "ready"
    user_id = await first.user_id(ada)

    for _ in range(100):  # the leader's loop, not a direct call
        if (await second.sandbox(user_id)).state == "paused":
            break
        await asyncio.sleep(0.1)
    row = await second.sandbox(user_id)
    assert row.state == "paused" and row.error_message == "idle for 1 s"
    await asyncio.sleep(0.6)  # further sweeps by either replica change nothing
    states = [e["state"] for e in await first.router.lifecycle.store.events(user_id)]
    assert states == ["provisioning", "running", "paused"]


async def test_a_user_disabled_on_one_replica_loses_streams_on_the_other(
    make_cloud: CloudFactory, pg_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "shared-sandboxes"
    first = await make_cloud(database=pg_url, root=root)
    second = await make_cloud(database=pg_url, root=root)
    ada = await first.sign_in("ada@example.com")
    assert (await first.until_running(ada))["event"] == "ready"
    stream = await ada.get(second.at("/api/mastra/stream"), headers={"Accept": "text/event-stream"})
    assert (await stream.content.readline()).startswith(b"data: 0")

    await user_directory_of(first).set_disabled("ada@example.com", True)  # the first replica's signal

    async def cut() -> bool:
        try:
            while await stream.content.readany():
                pass
        except aiohttp.ClientPayloadError:
            return True
        return False

    assert await asyncio.wait_for(cut(), 10)  # the second replica's periodic check ended it
    stream.close()


def user_directory_of(cloud: Cloud) -> UserDirectory:
    return cloud.app[USER_DIRECTORY]
