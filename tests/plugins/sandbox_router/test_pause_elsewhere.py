"""A sandbox frozen by another process (another worker or replica, the CLI, Manage, a rollout) while a
worker still holds its cached address: the user's next request through that worker wakes it instead
of waiting on the frozen app (whose port still accepts connections) for ``read_timeout``."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from tests.plugins.sandbox_router.conftest import JSON, CloudFactory

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
    ada = await serving.sign_in("ada@example.com")
    assert (await serving.until_running(ada))["event"] == "ready"
    user_id = await serving.user_id(ada)
    home = serving.root / (await serving.sandbox(user_id)).sandbox_id / "home"  # type: ignore[operator]
    child = int((home / ".child.pid").read_text())

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
    assert int((home / ".child.pid").read_text()) == child  # thawed, not restarted
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
    ada = await serving.sign_in("ada@example.com")
    assert (await serving.until_running(ada))["event"] == "ready"
    user_id = await serving.user_id(ada)
    home = serving.root / (await serving.sandbox(user_id)).sandbox_id / "home"  # type: ignore[operator]
    child = int((home / ".child.pid").read_text())

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


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]
