"""Starts that fail, the healer's reports, idle pauses, reconciliation, limits and export."""

from __future__ import annotations

import asyncio
import io
import re
import tarfile
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from plugins.sandbox_router.providers.base import (
    Handle,
    ProgressCallback,
    ProviderRateLimited,
    ProviderUnavailable,
    SandboxProvider,
    SandboxSpec,
)
from plugins.sandbox_router.providers.local import LocalProvider
from plugins.sandbox_router.store import STATES
from plugins.vkey import KeyService
from tests.plugins.sandbox_router.conftest import JSON, Cloud, CloudFactory


class Counting(LocalProvider):
    """The local provider counting lifecycle calls, with failures to inject."""

    def __init__(self, base: LocalProvider) -> None:
        self.__dict__.update(base.__dict__)
        self.calls: dict[str, int] = {}
        self.refuse: list[Exception] = []

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if self.refuse:
            raise self.refuse.pop(0)

    async def create(self, spec: SandboxSpec, on_progress: ProgressCallback) -> Handle:
        self._count("create")
        return await super().create(spec, on_progress)

    async def resume(self, handle: Handle, on_progress: ProgressCallback) -> Handle:
        self._count("resume")
        return await super().resume(handle, on_progress)


def counting(cloud: Cloud) -> Counting:
    provider = Counting(cloud.router.provider)  # type: ignore[arg-type]
    cloud.router.provider = cloud.router.lifecycle.provider = provider
    return provider


def _swap(cloud: Cloud, provider: SandboxProvider) -> None:
    cloud.router.provider = cloud.router.lifecycle.provider = provider


@pytest.mark.parametrize("pause", ["stop", "freeze"])
async def test_never_healthy_is_an_error_with_reason_and_try_again(
    make_cloud: CloudFactory, pause: str
) -> None:
    """The unhealthy app's processes are ended, not frozen (``pause = "freeze"``): "Try again" starts
    the app afresh instead of thawing the one that failed."""
    cloud = await make_cloud(health_timeout=1, local={"pause": pause})
    (cloud.router.provider.template_dir / "NEVER_HEALTHY").write_text("")  # type: ignore[attr-defined]
    ada = await cloud.sign_in("ada@example.com")
    final = await cloud.until_running(ada)
    assert final["event"] == "failed"
    assert "did not become healthy within 1 s" in final["error"]
    user_id = await cloud.user_id(ada)
    row = await cloud.sandbox(user_id)
    assert row.state == "error" and "healthy" in (row.error_message or "")

    async with ada.get(cloud.at("/studio/")) as answer:  # a failure page, not an endless spinner
        assert answer.status == 200
        assert "Try again" in await answer.text()
    async with ada.get(cloud.at("/api/mastra/x"), headers=JSON) as answer:
        assert answer.status == 503
        assert "healthy" in (await answer.json())["error"]["message"]
    async with ada.post(cloud.at("/api/sandbox/retry"), headers=JSON) as answer:
        assert answer.status == 403  # no CSRF token

    home = cloud.root / (row.sandbox_id or "") / "home"
    assert not (home.parent / "state.json").exists(), "its processes ended"
    failed = (home / ".child.pid").read_text()
    (home / "NEVER_HEALTHY").unlink()
    token = await _csrf(cloud, ada)
    async with ada.post(cloud.at("/api/sandbox/retry"), headers={**JSON, "X-CSRF-Token": token}) as answer:
        assert answer.status == 202
    assert (await cloud.until_running(ada))["event"] == "ready"
    assert (home / ".child.pid").read_text() != failed, "started afresh, not the failed app thawed"


async def test_provider_down_is_a_clear_failure(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud()
    provider = counting(cloud)
    provider.refuse.append(ProviderUnavailable("The sandbox provider cannot be reached."))
    ada = await cloud.sign_in("ada@example.com")
    final = await cloud.until_running(ada)
    assert final == {**final, "event": "failed", "error": "The sandbox provider cannot be reached."}
    assert provider.calls == {"create": 1}


async def test_a_hanging_provider_is_a_bounded_failure(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud(start_timeout=0.5)
    provider = counting(cloud)

    async def hang(spec: SandboxSpec, on_progress: ProgressCallback) -> Handle:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    provider.create = hang  # type: ignore[method-assign]
    ada = await cloud.sign_in("ada@example.com")
    final = await cloud.until_running(ada)
    assert final["event"] == "failed"
    assert final["error"] == "The sandbox provider did not finish starting your sandbox within 0.5 s."


async def test_rate_limited_starts_wait_in_a_queue(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud()
    provider = counting(cloud)
    provider.refuse.append(ProviderRateLimited("slow down", retry_after=1.0))
    ada = await cloud.sign_in("ada@example.com")
    async with ada.get(cloud.at("/studio/")) as answer:
        assert answer.status == 200
    await asyncio.sleep(0.3)
    async with ada.get(cloud.at("/api/sandbox/status"), headers=JSON) as answer:
        status = await answer.json()
    assert status["phase"] == "starting" and status["position"] == 1
    assert "number 1 in the queue" in status["message"]
    assert (await cloud.until_running(ada))["event"] == "ready"
    assert provider.calls == {"create": 2}


async def test_concurrent_starts_per_replica_are_limited(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud(max_concurrent_starts=1)
    gate = asyncio.Event()
    provider = counting(cloud)
    original = provider.create

    async def slow_create(spec: SandboxSpec, on_progress: ProgressCallback) -> Handle:
        await gate.wait()
        return await original(spec, on_progress)

    provider.create = slow_create  # type: ignore[method-assign]
    ada = await cloud.sign_in("ada@example.com")
    bob = await cloud.sign_in("bob@example.com")
    async with ada.get(cloud.at("/api/x"), headers=JSON) as answer:
        assert answer.status == 503
    async with bob.get(cloud.at("/api/x"), headers=JSON) as answer:
        assert answer.status == 429
        assert answer.headers["Retry-After"]
    gate.set()
    assert (await cloud.until_running(ada))["event"] == "ready"
    assert (await cloud.until_running(bob))["event"] == "ready"


async def test_per_user_request_cap(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud(max_requests_per_user=2)
    ada = await cloud.sign_in("ada@example.com")
    await cloud.until_running(ada)
    streams = [await ada.get(cloud.at("/api/mastra/stream"), headers=JSON) for _ in range(2)]
    async with ada.get(cloud.at("/api/mastra/x"), headers=JSON) as answer:
        assert answer.status == 429
    for stream in streams:
        stream.close()
    await asyncio.sleep(0.2)
    async with ada.get(cloud.at("/api/mastra/x"), headers=JSON) as answer:
        assert answer.status == 200


@pytest.mark.parametrize(
    ("restart", "pause"),
    [("echo restarted > healer-restarted", "stop"), ("exit 1", "stop"), ("exit 1", "freeze")],
    ids=["pm2", "no-pm2", "no-pm2-freeze"],
)
async def test_healer_reports(make_cloud: CloudFactory, restart: str, pause: str) -> None:
    cloud = await make_cloud(healer_restart_command=restart, local={"pause": pause})
    ada = await cloud.sign_in("ada@example.com")
    await cloud.until_running(ada)
    user_id = await cloud.user_id(ada)
    async with ada.get(cloud.at("/api/mastra/env"), headers=JSON) as answer:
        key = (await answer.json())["SHMASTRA_VIRTUAL_KEY"]

    async with aiohttp.ClientSession() as healer:

        async def report(body: Any, auth: str = f"Bearer {key}") -> int:
            async with healer.post(
                cloud.at("/api/sandbox/heal"), json=body, headers={"Authorization": auth}
            ) as answer:
                return answer.status

        assert await report({"status": "healing", "message": "x"}, auth="") == 401
        assert (
            await report({"status": "healing", "message": "x"}, auth=f"Bearer vk_{user_id}_{'0' * 64}") == 401
        )
        assert await report({"status": "fine"}) == 400
        assert await report({"status": "healing", "message": "restarting the app"}) == 204
        row = await cloud.sandbox(user_id)
        assert (row.healer_status, row.healer_message, row.state) == (
            "healing",
            "restarting the app",
            "running",
        )

        assert await report({"status": "broken", "message": "gave up after 3 attempts"}) == 204
        row = await cloud.sandbox(user_id)
        assert row.state == "broken" and row.error_message == "gave up after 3 attempts"
        async with ada.get(cloud.at("/api/sandbox/status"), headers=JSON) as answer:
            status = await answer.json()
        assert status["phase"] == "failed" and status["healer_message"] == "gave up after 3 attempts"
        async with ada.get(cloud.at("/studio/")) as answer:
            assert "Try again" in await answer.text()

        home = cloud.root / (row.sandbox_id or "") / "home"
        child = (home / ".child.pid").read_text()
        token = await _csrf(cloud, ada)
        async with ada.post(
            cloud.at("/api/sandbox/retry"), headers={**JSON, "X-CSRF-Token": token}
        ) as answer:
            assert answer.status == 202
        assert (await cloud.until_running(ada))["event"] == "ready"
        if restart.startswith("echo"):  # the process manager restarted the healer; the app kept running
            assert (home / "healer-restarted").exists()
            assert (home / ".child.pid").read_text() == child
            assert (await cloud.sandbox(user_id)).healer_status == "healing"
        else:  # no process manager: the whole sandbox was restarted (a fresh healer with it)
            assert (home / ".child.pid").read_text() != child


async def test_idle_sandboxes_are_paused_and_activity_keeps_them(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud(idle_timeout=1)
    ada = await cloud.sign_in("ada@example.com")
    await cloud.until_running(ada)
    user_id = await cloud.user_id(ada)
    sweeper = cloud.router.sweeper

    async with ada.post(cloud.at("/api/sandbox/ping"), headers=JSON) as answer:
        assert answer.status == 204
    assert await sweeper.pause_idle() == 0  # just pinged
    stream = await ada.get(cloud.at("/api/mastra/stream"), headers=JSON)
    await asyncio.sleep(1.5)
    assert await sweeper.pause_idle() == 0  # an open stream is activity
    stream.close()
    await asyncio.sleep(1.5)
    await cloud.router.activity.flush()
    assert await sweeper.pause_idle() == 1
    row = await cloud.sandbox(user_id)
    assert row.state == "paused" and row.error_message == "idle for 1 s"


async def test_metrics_count_sandboxes_per_state_as_of_the_leaders_sweep(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud()
    ada, bob = await cloud.sign_in("ada@example.com"), await cloud.sign_in("bob@example.com")
    await cloud.until_running(ada)
    await cloud.until_running(bob)
    assert await cloud.router.lifecycle.pause(await _user(cloud, bob), "test")
    assert _sandbox_gauge(await _metrics(cloud)) == {}  # nothing counted before a sweep

    await cloud.router.sweeper.sweep()
    counted = _sandbox_gauge(await _metrics(cloud))
    assert counted == {state: 1 if state in ("running", "paused") else 0 for state in STATES}


class _Follower:
    """A contender that never leads (another replica does)."""

    async def is_leader(self) -> bool:
        return False

    async def close(self) -> None:
        return None


async def test_a_process_that_stops_leading_stops_reporting_sandbox_counts(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud(sweep_interval=0.05)
    await cloud.until_running(await cloud.sign_in("ada@example.com"))
    for _ in range(200):
        if _sandbox_gauge(await _metrics(cloud)).get("running") == 1:
            break
        await asyncio.sleep(0.05)
    assert _sandbox_gauge(await _metrics(cloud))["running"] == 1  # the leader's loop counted

    cloud.router.sweeper.leader = _Follower()  # the new leader's counts are added up with this one's
    for _ in range(200):
        if not _sandbox_gauge(await _metrics(cloud)):
            break
        await asyncio.sleep(0.05)
    assert _sandbox_gauge(await _metrics(cloud)) == {}


async def _metrics(cloud: Cloud) -> str:
    async with aiohttp.ClientSession() as anyone, anyone.get(cloud.at("/metrics")) as answer:
        assert answer.status == 200
        return await answer.text()


def _sandbox_gauge(metrics: str) -> dict[str, int]:
    """``state -> value`` of the ``..._sandbox_router_sandboxes{state=...}`` samples."""
    found = re.findall(r'^\w+_sandbox_router_sandboxes\{state="(\w+)"\} (\d+)$', metrics, re.M)
    return {state: int(value) for state, value in found}


async def test_gateway_calls_count_as_activity(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud(idle_timeout=1)
    ada = await cloud.sign_in("ada@example.com")
    await cloud.until_running(ada)
    user_id = await cloud.user_id(ada)
    await asyncio.sleep(1.2)
    await cloud.router.on_gateway_activity({user_id: 0.0})
    await cloud.router.activity.flush()
    assert await cloud.router.sweeper.pause_idle() == 0


async def test_reconciler_fixes_drift_orphans_and_stuck_starts(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud()
    ada = await cloud.sign_in("ada@example.com")
    await cloud.until_running(ada)
    bob = await cloud.sign_in("bob@example.com")
    await cloud.until_running(bob)
    lifecycle = cloud.router.lifecycle
    ada_id = await _user(cloud, ada)
    bob_id = await _user(cloud, bob)
    provider = cloud.router.provider

    ada_row = await cloud.sandbox(ada_id)
    assert ada_row.handle is not None
    await provider.pause(ada_row.handle)  # paused behind the store's back
    bob_row = await cloud.sandbox(bob_id)
    assert bob_row.handle is not None
    await provider.kill(bob_row.handle)  # removed behind its back
    orphan = await provider.create(SandboxSpec(str(uuid.uuid4()), {}), lambda _: None)
    carol = uuid.uuid4()
    await cloud.db.execute(
        "INSERT INTO users (id, email, role) VALUES ($1, 'carol@example.com', 'member')", carol
    )
    await lifecycle.store.ensure(carol, "local")
    await cloud.db.execute(
        "UPDATE sandboxes SET state = 'resuming', updated_at = '2020-01-01T00:00:00+00:00' WHERE user_id = $1",
        carol,
    )

    await cloud.router.sweeper.reconcile()
    assert (await cloud.sandbox(ada_id)).state == "paused"
    bob_now = await cloud.sandbox(bob_id)
    assert bob_now.state == "paused" and bob_now.sandbox_id is None
    assert orphan.sandbox_id not in {s.sandbox_id for s in await provider.list()}
    carol_now = await cloud.sandbox(carol)
    assert carol_now.state == "error" and "interrupted" in (carol_now.error_message or "")

    async with bob.get(cloud.at("/api/x"), headers=JSON) as answer:
        assert answer.status == 503
    assert (await cloud.until_running(bob))["event"] == "ready"  # a new sandbox for Bob
    assert (await cloud.sandbox(bob_id)).sandbox_id not in (None, bob_row.sandbox_id)


async def test_reconciler_records_a_pause_at_the_provider_under_the_users_lock(
    make_cloud: CloudFactory, db_url: str
) -> None:
    """A start in flight holds the user's lock: the reconciler does not write over it (it leaves that
    user for the next sweep, without waiting long) and still reconciles everyone else."""
    cloud = await make_cloud(database=db_url)
    ada = await cloud.sign_in("ada@example.com")
    await cloud.until_running(ada)
    bob = await cloud.sign_in("bob@example.com")
    await cloud.until_running(bob)
    ada_id, bob_id = await _user(cloud, ada), await _user(cloud, bob)
    lifecycle, provider, sweeper = cloud.router.lifecycle, cloud.router.provider, cloud.router.sweeper
    sweeper.lock_wait = 0.3
    ada_row, bob_row = await cloud.sandbox(ada_id), await cloud.sandbox(bob_id)
    assert ada_row.handle is not None and bob_row.handle is not None
    await provider.pause(ada_row.handle)  # both paused behind the store's back
    await provider.pause(bob_row.handle)

    async with cloud.db.user_lock(f"sandbox_router:{ada_id}"):  # ada's start is resuming it
        await asyncio.wait_for(sweeper.reconcile(), 10)
        assert (await cloud.sandbox(ada_id)).state == "running"  # not written under her start
        assert (await cloud.sandbox(bob_id)).state == "paused"  # the sweep went on
        handle = await provider.resume(ada_row.handle, lambda _: None)  # the start ends
        await lifecycle.store.set_state(ada_id, "running", handle=handle)

    await sweeper.reconcile()
    assert (await cloud.sandbox(ada_id)).state == "running"
    reasons = [e["reason"] for e in await lifecycle.store.events(ada_id)]
    assert "paused at the provider" not in reasons
    assert [e["reason"] for e in await lifecycle.store.events(bob_id)][-1] == "paused at the provider"


async def test_export_is_the_project_without_modules_or_secrets(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud()
    ada = await cloud.sign_in("ada@example.com")
    await cloud.until_running(ada)
    async with ada.get(cloud.at("/api/sandbox/export"), headers=JSON) as answer:
        assert answer.status == 200, await answer.text()
        assert answer.headers["Content-Type"] == "application/gzip"
        archive = await answer.read()
    names = _names(archive)
    assert "shmastra/package.json" in names and "shmastra/src/mastra/index.ts" in names
    assert "shmastra/.env.example" in names
    assert not any("node_modules" in n or n.endswith("/.env") for n in names)
    assert b"vk_" not in _contents(archive)

    bob = await cloud.sign_in("bob@example.com")
    async with bob.get(cloud.at("/api/sandbox/export?user=ada@example.com"), headers=JSON) as answer:
        assert answer.status == 403
    admin = await cloud.sign_in("admin@example.com")
    async with admin.get(cloud.at("/api/sandbox/export?user=ADA@example.com"), headers=JSON) as answer:
        assert answer.status == 200
        assert _names(await answer.read()) == names
    async with admin.get(cloud.at("/api/sandbox/export?user=nobody@example.com"), headers=JSON) as answer:
        assert answer.status == 404


_BIG = 8 * 1024 * 1024
"""Bytes of random (incompressible) data in the project of the big-export test."""


async def test_a_big_export_streams_through_flat_memory(make_cloud: CloudFactory, tmp_path: Path) -> None:
    cloud = await make_cloud()
    ada = await cloud.sign_in("ada@example.com")
    await cloud.until_running(ada)
    user_id = await cloud.user_id(ada)
    row = await cloud.sandbox(user_id)
    assert row.handle is not None
    made = await cloud.router.lifecycle.provider.run(
        row.handle,
        'cd "${SANDBOX_HOME:-/home/user}/shmastra" && mkdir -p .git dist/.mastra '
        f"&& head -c {_BIG} /dev/urandom > big.bin && head -c {_BIG} /dev/urandom > .git/pack "
        "&& echo SECRET=1 > .env.local && echo x > dist/.mastra/out.js",
        limit=60,
    )
    assert made.exit_code == 0, made.stderr

    target = tmp_path / "export.tar.gz"
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        with target.open("wb") as file:
            async with ada.get(cloud.at("/api/sandbox/export"), headers=JSON) as answer:
                assert answer.status == 200, await answer.text()
                async for chunk in answer.content.iter_chunked(64 * 1024):
                    file.write(chunk)
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    assert target.stat().st_size > _BIG  # the whole archive went through...
    assert peak < _BIG // 4, f"the proxy held {peak} bytes at once"  # ...never all of it at once

    with tarfile.open(target, mode="r:gz") as tar:
        files = {m.name: tar.extractfile(m) for m in tar.getmembers() if m.isfile()}
        assert "shmastra/big.bin" in files and "shmastra/package.json" in files
        assert not any(
            "node_modules" in n or "/.git/" in n or ".mastra" in n or "/.env" in n.replace(".env.example", "")
            for n in files
        ), sorted(files)
        assert all(f"vk_{user_id}".encode() not in f.read() for f in files.values() if f is not None)


async def test_disabled_user_cannot_start(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud()
    ada = await cloud.sign_in("ada@example.com")
    await cloud.until_running(ada)
    await KeyService(cloud.db).set_disabled("ada@example.com", True)
    await asyncio.sleep(0.3)
    async with ada.get(cloud.at("/studio/"), allow_redirects=False) as answer:
        assert answer.status == 302  # disabling ended the session: back to sign-in, which refuses
        assert answer.headers["Location"].startswith("/auth/sign-in")


def _names(archive: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return sorted(m.name for m in tar.getmembers() if m.isfile())


def _contents(archive: bytes) -> bytes:
    out = b""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar.getmembers():
            extracted = tar.extractfile(member)
            if extracted is not None:
                out += extracted.read()
    return out


async def _user(cloud: Cloud, session: aiohttp.ClientSession) -> uuid.UUID:
    async with session.get(cloud.at("/api/mastra/whoami"), headers=JSON) as answer:
        return uuid.UUID((await answer.json())["user_id"])


async def _csrf(cloud: Cloud, session: aiohttp.ClientSession) -> str:
    """This session's CSRF token, as the status API gives it to the page."""
    async with session.get(cloud.at("/api/sandbox/status"), headers=JSON) as answer:
        assert answer.status == 200
        token: str = (await answer.json())["csrf_token"]
    return token


async def test_provider_timeout_is_extended_at_most_once_per_interval(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud(extend_every=60)
    provider = counting(cloud)
    extended: list[float] = []

    async def extend(handle: Handle, seconds: float) -> None:
        extended.append(seconds)

    provider.extend = extend  # type: ignore[method-assign]
    ada = await cloud.sign_in("ada@example.com")
    await cloud.until_running(ada)
    for _ in range(5):
        async with ada.get(cloud.at("/api/mastra/x"), headers=JSON) as answer:
            assert answer.status == 200
    async with ada.post(cloud.at("/api/sandbox/ping"), headers=JSON) as answer:
        assert answer.status == 204
    await asyncio.sleep(0.1)
    assert extended == [600 + 60]
