"""A signed-in user reaches their own sandbox: provisioned on first visit behind the progress page,
then everything forwarded (HTTP, SSE, WebSocket) with the app token added and no cloud cookie."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.plugins.sandbox_router.conftest import JSON, CloudFactory


async def test_first_visit_provisions_and_lands_in_studio(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud()
    browser = await cloud.sign_in("ada@example.com")

    async with browser.get(cloud.at("/"), allow_redirects=False) as answer:
        assert answer.status == 302
        assert answer.headers["Location"] == "/studio/"
    async with browser.get(cloud.at("/studio/")) as answer:
        assert answer.status == 200
        assert answer.headers["Cache-Control"] == "no-store"
        page = await answer.text()
        assert "Starting your sandbox" in page and "/api/sandbox/events" in page
    async with browser.get(cloud.at("/api/mastra/agents"), headers=JSON) as answer:
        assert answer.status == 503
        assert answer.headers["Retry-After"]

    final = await cloud.until_running(browser)
    assert final["event"] == "ready"
    user_id = await cloud.user_id(browser)
    row = await cloud.sandbox(user_id)
    assert row.state == "running" and row.template_version == "standin-1"

    async with browser.get(cloud.at("/studio/")) as answer:
        assert answer.status == 200
        html = await answer.text()
    host, port = cloud.url.host, str(cloud.url.port)
    assert f"window.MASTRA_SERVER_HOST = '{host}'" in html
    assert f"window.MASTRA_SERVER_PORT = '{port}'" in html
    assert "window.MASTRA_SERVER_PROTOCOL = 'http'" in html
    assert "window.MASTRA_API_PREFIX = '/api/mastra'" in html
    assert "window.MASTRA_STUDIO_BASE_PATH = '/studio'" in html
    assert "localhost" not in html and "4111" not in html
    assert f"Studio of {user_id}" in html
    assert '<script src="/api/sandbox/cloud.js" defer></script>' in html  # keep-alive, download link
    assert '<script src="/auth/menu.js" defer></script>' in html  # auth's cloud menu
    async with browser.get(cloud.at("/api/sandbox/cloud.js")) as answer:
        assert answer.headers["Content-Type"].startswith("text/javascript")
        script = await answer.text()
    assert "/api/sandbox/ping" in script and "Download my project" in script
    async with browser.get(cloud.at("/api/mastra/x"), headers=JSON) as answer:
        assert "cloud.js" not in await answer.text()  # only HTML pages get the scripts


async def test_app_token_added_and_cloud_credentials_kept_back(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud()
    browser = await cloud.sign_in("ada@example.com")
    await cloud.until_running(browser)
    user_id = await cloud.user_id(browser)
    token = (await cloud.sandbox(user_id)).app_token
    assert token

    headers = {**JSON, "Authorization": "Bearer forged", "x-mastra-auth-token": "forged", "X-CSRF-Token": "x"}
    async with browser.post(
        cloud.at("/api/mastra/agents/a/generate?x=1"), headers=headers, data=b"{}"
    ) as answer:
        assert answer.status == 200, await answer.text()
        seen = await answer.json()
    assert seen["path"] == "/api/mastra/agents/a/generate" and seen["body"] == "{}"
    assert seen["user_id"] == str(user_id)
    sent = {k.lower(): v for k, v in seen["headers"].items()}
    assert sent["x-mastra-auth-token"] == token
    assert sent["authorization"] == f"Bearer {token}"
    assert "cookie" not in sent and "x-csrf-token" not in sent
    assert all("auth_session" not in value for value in sent.values())

    async with browser.get(cloud.at("/api/mastra/env"), headers=JSON) as answer:
        env = await answer.json()
    key = env["OPENAI_API_KEY"]
    assert key.startswith(f"vk_{user_id}_")
    for name in ("ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_GENERATIVE_AI_API_KEY", "COMPOSIO_API_KEY"):
        assert env[name] == key
    assert env["MASTRA_AUTH_TOKEN"] == token != key
    assert env["OPENAI_BASE_URL"].endswith("/api/gateway/openai/v1")
    assert env["ANTHROPIC_BASE_URL"].endswith("/api/gateway/anthropic/v1")
    assert env["GEMINI_BASE_URL"].endswith("/api/gateway/gemini/v1beta")
    assert env["MASTRA_STUDIO_BASE_PATH"] == "/studio" and env["MASTRA_API_PREFIX"] == "/api/mastra"
    assert env["SHMASTRA_VIRTUAL_KEY"] == key and env["MASTRA_TELEMETRY_DISABLED"] == "1"
    assert env["USER_ID"] == str(user_id)
    assert env["HEALER_STARTUP_GRACE"] == "60" and env["HEALER_BUILD_STUCK_SECONDS"] == "20"


async def test_the_healers_patience_is_configured_per_cloud(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud(healer={"startup_grace": 240, "build_stuck": 90.5})
    browser = await cloud.sign_in("ada@example.com")
    await cloud.until_running(browser)
    async with browser.get(cloud.at("/api/mastra/env"), headers=JSON) as answer:
        env = await answer.json()
    assert env["HEALER_STARTUP_GRACE"] == "240" and env["HEALER_BUILD_STUCK_SECONDS"] == "90.5"


async def test_real_provider_keys_never_reach_the_sandbox(
    make_cloud: CloudFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-team-key")
    monkeypatch.setenv("DATABASE_PASSWORD", "hunter2")
    cloud = await make_cloud()
    browser = await cloud.sign_in("ada@example.com")
    await cloud.until_running(browser)
    async with browser.get(cloud.at("/api/mastra/env"), headers=JSON) as answer:
        env = await answer.json()
    assert "sk-real-team-key" not in env.values() and "hunter2" not in env.values()
    assert "DATABASE_PASSWORD" not in env


async def test_event_stream_and_websocket_are_forwarded(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud()
    browser = await cloud.sign_in("ada@example.com")
    await cloud.until_running(browser)

    async with browser.get(
        cloud.at("/api/mastra/stream?count=3"), headers={"Accept": "text/event-stream"}
    ) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        assert await answer.text() == "data: 0\n\ndata: 1\n\ndata: 2\n\n"

    async with browser.ws_connect(cloud.at("/api/mastra/ws")) as ws:
        await ws.send_str("hello")
        message = await ws.receive()
        assert message.type == aiohttp.WSMsgType.TEXT and message.data == "echo:hello"


async def test_files_survive_pause_and_resume(make_cloud: CloudFactory, db_url: str) -> None:
    cloud = await make_cloud(database=db_url)  # the store on SQLite and on Postgres
    browser = await cloud.sign_in("ada@example.com")
    await cloud.until_running(browser)
    user_id = await cloud.user_id(browser)
    async with browser.post(
        cloud.at("/api/mastra/files?name=note.txt"), data=b"kept", headers=JSON
    ) as answer:
        assert answer.status == 204
    home = cloud.root / (await cloud.sandbox(user_id)).sandbox_id / "home"  # type: ignore[operator]
    child = int((home / ".child.pid").read_text())

    assert await cloud.router.lifecycle.pause(user_id, "test")
    row = await cloud.sandbox(user_id)
    assert row.state == "paused" and row.error_message == "test"
    assert not _alive(child), "the child that ignores SIGTERM must be gone with its group"

    async with browser.get(cloud.at("/api/mastra/files?name=note.txt"), headers=JSON) as answer:
        assert answer.status == 503  # the first request after a pause starts it again
    assert (await cloud.until_running(browser))["event"] == "ready"
    async with browser.get(cloud.at("/api/mastra/files?name=note.txt"), headers=JSON) as answer:
        assert answer.status == 200
        assert await answer.read() == b"kept"
    states = [e["state"] for e in await cloud.router.lifecycle.store.events(user_id)]
    assert states == ["provisioning", "running", "paused", "resuming", "running"]

    store = cloud.router.lifecycle.store
    events = await store.events(user_id)
    first_run = (events[2]["at"] - events[1]["at"]).total_seconds()
    assert await store.running_seconds(user_id, events[0]["at"], events[3]["at"]) == first_run
    since_pause = await store.running_seconds(user_id, events[2]["at"], events[4]["at"])
    assert since_pause == 0.0
    assert await store.running_seconds(user_id, events[1]["at"], events[4]["at"]) == first_run


async def test_a_frozen_sandbox_resumes_with_its_processes(make_cloud: CloudFactory) -> None:
    """``pause = "freeze"`` (the default): pausing stops the processes where they are, and the first
    request afterwards thaws the same processes (no new start)."""
    cloud = await make_cloud(local={"pause": "freeze"})
    browser = await cloud.sign_in("ada@example.com")
    await cloud.until_running(browser)
    user_id = await cloud.user_id(browser)
    home = cloud.root / (await cloud.sandbox(user_id)).sandbox_id / "home"  # type: ignore[operator]
    child = int((home / ".child.pid").read_text())

    assert await cloud.router.lifecycle.pause(user_id, "test")
    assert (await cloud.sandbox(user_id)).state == "paused"
    assert _state(child) == "T", "frozen, not ended"
    async with browser.get(cloud.at("/api/mastra/files?name=none"), headers=JSON) as answer:
        assert answer.status == 503  # the first request after a pause wakes it
    assert (await cloud.until_running(browser))["event"] == "ready"
    assert _alive(child) and _state(child) != "T"
    assert int((home / ".child.pid").read_text()) == child  # the same processes: nothing restarted
    states = [e["state"] for e in await cloud.router.lifecycle.store.events(user_id)]
    assert states == ["provisioning", "running", "paused", "resuming", "running"]


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


async def test_requests_finding_the_route_expired_share_one_store_read(make_cloud: CloudFactory) -> None:
    """When a user's cached route runs out under load, the requests in flight wait for one read of the
    store, not one each (they queued behind each other: 50 connections saw 100-150 ms stalls)."""
    cloud = await make_cloud(route_cache_seconds=30)
    browser = await cloud.sign_in("ada@example.com")
    await cloud.until_running(browser)
    async with browser.get(cloud.at("/api/mastra/warm"), headers=JSON) as answer:
        assert answer.status == 200
    user_id = await cloud.user_id(browser)
    router = cloud.router
    store = router.lifecycle.store
    reads: list[object] = []
    of_user = store.of_user

    async def counted(user_id: Any) -> Any:
        reads.append(user_id)
        await asyncio.sleep(0.2)  # a busy store: the other requests arrive meanwhile
        return await of_user(user_id)

    store.of_user = counted  # type: ignore[method-assign]
    router.forget_route(user_id)  # as if it had expired

    async def get(n: int) -> int:
        async with browser.get(cloud.at(f"/api/mastra/n{n}"), headers=JSON) as answer:
            return answer.status

    assert await asyncio.gather(*(get(n) for n in range(20))) == [200] * 20
    assert reads == [user_id]
