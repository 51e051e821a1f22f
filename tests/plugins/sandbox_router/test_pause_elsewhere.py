"""A sandbox frozen by another process (another worker or replica, the CLI, Manage, a rollout) while a
worker still holds its cached address: the user's next request through that worker wakes it instead
of waiting on the frozen app (whose port still accepts connections) for ``read_timeout``."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from tests.plugins.sandbox_router.conftest import JSON, Cloud, CloudFactory

ROUTE_CACHE = 2.0
READ_TIMEOUT = 4.0


async def test_a_sandbox_frozen_by_another_replica_is_woken_not_waited_on(
    make_cloud: CloudFactory, db_url: str, tmp_path: Path
) -> None:
    options = {
        "database": db_url,
        "root": tmp_path / "shared-sandboxes",
        "local": {"pause": "freeze"},
        "route_cache_seconds": ROUTE_CACHE,
        "read_timeout": READ_TIMEOUT,
    }
    serving = await make_cloud(**options)
    other = await make_cloud(**options)  # another worker or replica on the same store and machine
    ada, user_id = await _running(serving)
    child = await _child(serving, user_id)

    async with ada.get(serving.at("/api/mastra/files?name=none"), headers=JSON) as answer:
        assert answer.status == 404  # answered by the app: the serving worker now caches its address
    pausing = asyncio.create_task(other.router.lifecycle.pause(user_id, "paused elsewhere"))
    await asyncio.sleep(0.2)
    assert (await serving.sandbox(user_id)).state == "paused"
    async with ada.get(serving.at("/api/mastra/files?name=none"), headers=JSON) as answer:
        assert answer.status == 404  # not frozen while a worker may still forward to it
    assert await pausing
    assert _state(child) == "T", "frozen"

    began = time.monotonic()
    async with ada.get(serving.at("/api/mastra/files?name=none"), headers=JSON) as answer:
        waited = time.monotonic() - began
        assert answer.status == 503, "woken, not forwarded to the frozen app until the read timeout"
        assert answer.headers["Retry-After"] == "2"
    assert waited < READ_TIMEOUT / 2
    assert (await serving.until_running(ada))["event"] == "ready"
    async with ada.get(serving.at("/api/mastra/files?name=none"), headers=JSON) as answer:
        assert answer.status == 404
    assert _state(child) != "T"
    assert await _child(serving, user_id) == child  # thawed, not restarted
    states = [e["state"] for e in await serving.router.lifecycle.store.events(user_id)]
    assert states == ["provisioning", "running", "paused", "resuming", "running"]


async def test_a_sandbox_frozen_by_the_cli_is_woken_not_waited_on(
    make_cloud: CloudFactory, sqlite_url: str, template: Path, tmp_path: Path
) -> None:
    """``shmastra-cloud sandboxes pause`` in its own process, on the default route cache, while a
    worker serves the user: requests through the worker's cached address are answered until the
    sandbox is frozen; the first one after that (waiting, if it comes early, for the CLI's lock on the
    user) wakes it."""
    root = tmp_path / "sandboxes"
    serving = await make_cloud(
        database=sqlite_url,
        root=root,
        local={"pause": "freeze"},
        route_cache_seconds=5,
        read_timeout=READ_TIMEOUT,
    )
    config = tmp_path / "proxy.toml"
    config.write_text(
        f'[database]\nurl = "{sqlite_url}"\n\n[[pipeline]]\nstage = "sandbox_router"\n'
        f'template_dir = "{template}"\nroute_cache_seconds = 5\n\n'
        f'[pipeline.local]\nroot = "{root}"\ncache_dir = "{tmp_path / "template-cache"}"\n'
        'hidden_paths = []\nstop_grace = 1.0\npause = "freeze"\n'
    )
    ada, user_id = await _running(serving)
    child = await _child(serving, user_id)

    async with ada.get(serving.at("/api/mastra/files?name=none"), headers=JSON) as answer:
        assert answer.status == 404  # the serving worker caches the address for 5 s from here
    cached_at = time.monotonic()
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy_core.cli", "sandboxes", "pause", "ada@example.com", "-c", str(config)
    )
    while (await serving.sandbox(user_id)).state != "paused":
        assert cli.returncode is None, "the CLI ended without pausing"
        await asyncio.sleep(0.05)
    assert time.monotonic() - cached_at < 4, "the CLI was too slow to start for this test to mean much"
    async with ada.get(serving.at("/api/mastra/files?name=none"), headers=JSON) as answer:
        assert answer.status == 404  # through the cached address, answered: not frozen yet

    await asyncio.sleep(max(0.0, cached_at + 5.1 - time.monotonic()))  # the worker's address expired
    began = time.monotonic()
    async with ada.get(serving.at("/api/mastra/files?name=none"), headers=JSON) as answer:
        assert answer.status == 503, "woken, not forwarded to the frozen app until the read timeout"
    assert time.monotonic() - began < READ_TIMEOUT / 2
    assert await cli.wait() == 0
    assert (await serving.until_running(ada))["event"] == "ready"
    async with ada.get(serving.at("/api/mastra/files?name=none"), headers=JSON) as answer:
        assert answer.status == 404
    assert _state(child) != "T", "the resume came after the freeze, not before it"
    states = [e["state"] for e in await serving.router.lifecycle.store.events(user_id)]
    assert states == ["provisioning", "running", "paused", "resuming", "running"]


async def test_the_idle_sweep_freezes_a_long_idle_sandbox_without_waiting_out_route_caches(
    make_cloud: CloudFactory, db_url: str
) -> None:
    """No worker can still route to a sandbox idle for minutes: the sweep freezes it once the
    workers' activity has had time to reach the store (activity_lag), not route_grace later."""
    cloud = await make_cloud(
        database=db_url, local={"pause": "freeze"}, route_cache_seconds=30, idle_timeout=60
    )
    lifecycle = cloud.router.lifecycle
    assert lifecycle.activity_lag < 1 < 30 < lifecycle.route_grace
    ada, user_id = await _running(cloud)
    child = await _child(cloud, user_id)
    async with ada.get(cloud.at("/api/mastra/files?name=none"), headers=JSON) as answer:
        assert answer.status == 404
    await _idle_since(cloud, user_id, timedelta(minutes=10))

    began = time.monotonic()
    assert await cloud.router.sweeper.pause_idle() == 1
    assert time.monotonic() - began < 5, "frozen at once, not after route_grace (30.5 s)"
    assert _state(child) == "T"
    assert (await cloud.sandbox(user_id)).state == "paused"


async def test_the_idle_sweep_leaves_a_sandbox_resumed_a_moment_ago(make_cloud: CloudFactory) -> None:
    """Resuming is activity the store may not have yet (workers write activity in batches): the row
    changed state just now, so the sweep does not pause it on its old last activity."""
    cloud = await make_cloud(local={"pause": "freeze"}, idle_timeout=60)
    _, user_id = await _running(cloud)
    await cloud.router.activity.flush()
    old = datetime.now(UTC) - timedelta(minutes=10)
    await cloud.db.execute("UPDATE sandboxes SET last_activity_at = $1 WHERE user_id = $2", old, user_id)
    assert await cloud.router.sweeper.pause_idle() == 0
    assert (await cloud.sandbox(user_id)).state == "running"


async def test_a_pause_right_after_a_request_still_waits_out_route_caches(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud(local={"pause": "freeze"}, route_cache_seconds=ROUTE_CACHE)
    ada, user_id = await _running(cloud)
    async with ada.get(cloud.at("/api/mastra/files?name=none"), headers=JSON) as answer:
        assert answer.status == 404

    began = time.monotonic()
    assert await cloud.router.lifecycle.pause(user_id, "paused by an administrator")
    assert time.monotonic() - began >= cloud.router.lifecycle.route_grace
    assert _state(await _child(cloud, user_id)) == "T"


async def test_a_request_not_yet_in_the_store_keeps_an_idle_sandbox_from_freezing_early(
    make_cloud: CloudFactory, db_url: str, tmp_path: Path
) -> None:
    """A sandbox idle for minutes by its row, but a worker routed a request to it a moment ago and its
    record of that is still in the worker's activity writer (here for up to a second): a pause from
    elsewhere (the idle sweep's activity check read the row before the record arrived, or the CLI)
    waits for the record, sees it, and waits out the worker's route; requests through it are answered."""
    options = {
        "database": db_url,
        "root": tmp_path / "shared-sandboxes",
        "local": {"pause": "freeze"},
        "route_cache_seconds": 5,
        "read_timeout": READ_TIMEOUT,
        "batch_interval": 1.0,
    }
    serving = await make_cloud(**options)
    other = await make_cloud(**options)
    assert other.router.lifecycle.activity_lag < other.router.lifecycle.route_grace
    ada, user_id = await _running(serving)
    child = await _child(serving, user_id)
    await _idle_since(serving, user_id, timedelta(minutes=10))

    async with ada.get(serving.at("/api/mastra/files?name=none"), headers=JSON) as answer:
        assert answer.status == 404  # cached for 5 s; its activity reaches the store within ~1 s
    pausing = asyncio.create_task(other.router.lifecycle.pause(user_id, "paused elsewhere"))
    await asyncio.sleep(0.5)
    assert (await serving.sandbox(user_id)).state == "paused"
    began = time.monotonic()
    async with ada.get(serving.at("/api/mastra/files?name=none"), headers=JSON) as answer:
        assert answer.status == 404, "answered through the cached address: not frozen yet"
    assert time.monotonic() - began < READ_TIMEOUT / 2
    assert await pausing
    assert _state(child) == "T"
    async with ada.get(serving.at("/api/mastra/files?name=none"), headers=JSON) as answer:
        assert answer.status == 503  # the address expired: woken
    assert (await serving.until_running(ada))["event"] == "ready"


async def test_caching_an_address_is_activity_even_when_the_request_is_refused(
    make_cloud: CloudFactory,
) -> None:
    """A request refused for too many in flight still leaves the worker holding the address it read,
    and later requests go through it: the pause's wait counts from the activity recorded then."""
    cloud = await make_cloud(max_requests_per_user=1, stream_check_interval=3600)
    ada, user_id = await _running(cloud)
    stream = await ada.get(cloud.at("/api/mastra/stream"), headers=JSON)
    try:
        await asyncio.sleep(1.2)  # the address cached for the stream expired (0.5 s), TOUCH_EVERY passed
        await cloud.router.activity.flush()
        before = (await cloud.sandbox(user_id)).last_activity_at
        async with ada.get(cloud.at("/api/mastra/files?name=none"), headers=JSON) as answer:
            assert answer.status == 429
        assert cloud.router.cached_row(user_id) is not None
        await cloud.router.activity.flush()
        after = (await cloud.sandbox(user_id)).last_activity_at
        assert before is not None and after is not None and after > before
    finally:
        stream.close()


async def _running(cloud: Cloud) -> tuple[aiohttp.ClientSession, uuid.UUID]:
    """Ada, signed in, and her user id, once her sandbox runs."""
    ada = await cloud.sign_in("ada@example.com")
    assert (await cloud.until_running(ada))["event"] == "ready"
    return ada, await cloud.user_id(ada)


async def _child(cloud: Cloud, user_id: uuid.UUID) -> int:
    home = cloud.root / ((await cloud.sandbox(user_id)).sandbox_id or "") / "home"
    return int((home / ".child.pid").read_text())


async def _idle_since(cloud: Cloud, user_id: uuid.UUID, idle: timedelta) -> None:
    """The row says the last activity and change of state were ``idle`` ago (this worker's own
    records written first)."""
    await cloud.router.activity.flush()
    await cloud.db.execute(
        "UPDATE sandboxes SET last_activity_at = $1, state_changed_at = $1 WHERE user_id = $2",
        datetime.now(UTC) - idle,
        user_id,
    )


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]
