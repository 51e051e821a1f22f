"""The ``e2b`` provider with the real ``e2b`` SDK against the local E2B stand-in: lifecycle calls and
what E2B receives, reaching the app port, commands and files."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from plugins.sandbox_router.providers.base import (
    Handle,
    Progress,
    ProviderTimeout,
    SandboxGone,
    SandboxSpec,
)
from plugins.sandbox_router.providers.e2b import E2BConfig, E2BProvider
from tests.standins.e2b import E2BStandin, running_e2b_standin

SPEC = SandboxSpec(
    user_id="user-1",
    env={"USER_ID": "user-1", "OPENAI_API_KEY": "vk_user-1_abc", "MASTRA_API_PREFIX": "/api/mastra"},
    metadata={"email": "ada@example.com"},
)

START_SH = """#!/bin/sh
echo $$ > app.pid
exec python3 -m http.server "$PORT" --bind 127.0.0.1
"""


@pytest.fixture
def template(tmp_path: Path) -> Path:
    """A template whose start script serves its home folder (``/health`` is a file) on ``$PORT``."""
    folder = tmp_path / "template"
    folder.mkdir()
    (folder / "start.sh").write_text(START_SH)
    (folder / "start.sh").chmod(0o755)
    (folder / "health").write_text('{"success":true}')
    return folder


@pytest.fixture
async def standin(tmp_path: Path, template: Path) -> AsyncIterator[E2BStandin]:
    async with running_e2b_standin(tmp_path / "e2b", templates={"shmastra": template}) as running:
        yield running


def make_provider(standin: E2BStandin, **settings: Any) -> E2BProvider:
    return E2BProvider(
        E2BConfig.model_validate(
            {
                **standin.settings,
                "request_timeout": 10,
                "app_check_command": 'kill -0 "$(cat app.pid 2>/dev/null)" 2>/dev/null',
                "start_command": "./start.sh",
                **settings,
            }
        )
    )


@pytest.fixture
async def provider(standin: E2BStandin) -> AsyncIterator[E2BProvider]:
    made = make_provider(standin)
    yield made
    await made.close()


async def get_health(provider: E2BProvider, handle: Handle, headers: dict[str, str] | None = None) -> int:
    endpoint = provider.endpoint(handle)
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            endpoint.base_url.with_path("/health"),
            headers=endpoint.headers if headers is None else headers,
        ) as answer,
    ):
        return answer.status


async def wait_healthy(provider: E2BProvider, handle: Handle) -> None:
    for _ in range(400):
        if await get_health(provider, handle) == 200:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the app never answered /health")


async def test_create_asks_for_the_template_metadata_env_lifecycle_and_private_network(
    standin: E2BStandin,
) -> None:
    provider = make_provider(standin, template_tag="v7", sandbox_timeout=900)
    steps: list[Progress] = []

    handle = await provider.create(SPEC, steps.append)

    [created] = standin.recorded("create")
    assert created.body == {
        "templateID": "shmastra:v7",
        "timeout": 900,
        "autoPause": True,
        "autoResume": {"enabled": True},
        "metadata": {"email": "ada@example.com", "user_id": "user-1", "shmastra_cloud": "shmastra-cloud"},
        "envVars": dict(SPEC.env),
        "network": {"allowPublicTraffic": False},
    }
    assert created.headers["idempotency-key"]
    sandbox = standin.sandboxes[handle.sandbox_id]
    assert handle.data["traffic_access_token"] == sandbox.traffic_token
    assert [s.step for s in steps] == ["create", "created", "app", "app"]
    assert [s.percent for s in steps] == sorted(s.percent for s in steps)


async def test_create_starts_the_app_and_its_port_needs_the_traffic_token(
    provider: E2BProvider, standin: E2BStandin
) -> None:
    handle = await provider.create(SPEC, lambda _: None)

    await wait_healthy(provider, handle)
    endpoint = provider.endpoint(handle)
    routing = {k: v for k, v in endpoint.headers.items() if k != "e2b-traffic-access-token"}
    assert await get_health(provider, handle, headers=routing) == 403
    forged = {**endpoint.headers, "e2b-traffic-access-token": "guess"}
    assert await get_health(provider, handle, headers=forged) == 403
    assert len(standin.sandboxes[handle.sandbox_id].processes) == 2  # the check, then start.sh


async def test_an_app_already_running_is_not_started_again(standin: E2BStandin) -> None:
    provider = make_provider(standin, app_check_command="true")
    handle = await provider.create(SPEC, lambda _: None)
    assert len(standin.sandboxes[handle.sandbox_id].processes) == 1


async def test_a_failed_app_start_removes_the_sandbox(standin: E2BStandin) -> None:
    provider = make_provider(standin, app_check_command="sleep 30", request_timeout=3)

    with pytest.raises(ProviderTimeout):
        await provider.create(SPEC, lambda _: None)

    assert standin.sandboxes == {}
    assert len(standin.recorded("kill")) == 1


async def test_resume_wakes_a_paused_sandbox_with_its_files_and_app(
    provider: E2BProvider, standin: E2BStandin
) -> None:
    handle = await provider.create(SPEC, lambda _: None)
    await wait_healthy(provider, handle)
    await provider.write_file(handle, "work.txt", b"kept")
    await provider.pause(handle)
    sandbox = standin.sandboxes[handle.sandbox_id]
    assert sandbox.state == "paused"

    steps: list[Progress] = []
    resumed = await provider.resume(handle, steps.append)

    assert resumed == handle
    assert sandbox.state == "running"
    assert sandbox.resumes == 1
    assert standin.recorded("connect")[-1].body == {"timeout": 600}
    assert [s.step for s in steps] == ["resume", "resumed", "app"]
    assert await provider.read_file(handle, "work.txt") == b"kept"
    await wait_healthy(provider, handle)
    assert len(sandbox.processes) == 3  # the first check, start.sh, the check after resume


async def test_a_sandbox_paused_with_a_hung_guest_is_rebooted_from_its_disk(
    provider: E2BProvider, standin: E2BStandin
) -> None:
    handle = await provider.create(SPEC, lambda _: None)
    await wait_healthy(provider, handle)
    await provider.write_file(handle, "work.txt", b"kept")
    await provider.pause(handle)
    sandbox = standin.sandboxes[handle.sandbox_id]
    sandbox.guest_unresponsive = True

    await provider.resume(handle, lambda _: None)

    assert [r.body for r in standin.recorded("connect")] == [
        {"timeout": 600},
        {"timeout": 600, "memory": False},
    ]
    assert sandbox.reboots == 1
    assert await provider.read_file(handle, "work.txt") == b"kept"
    await wait_healthy(provider, handle)  # the app was started again after the cold boot


async def test_resume_of_a_running_sandbox_only_renews_it(provider: E2BProvider, standin: E2BStandin) -> None:
    handle = await provider.create(SPEC, lambda _: None)
    await provider.resume(handle, lambda _: None)
    assert standin.sandboxes[handle.sandbox_id].resumes == 0


async def test_pausing_twice_is_not_an_error(provider: E2BProvider, standin: E2BStandin) -> None:
    handle = await provider.create(SPEC, lambda _: None)
    await provider.pause(handle)
    await provider.pause(handle)
    assert len(standin.recorded("pause")) == 2
    assert standin.sandboxes[handle.sandbox_id].state == "paused"


async def test_killed_sandbox_is_gone(provider: E2BProvider, standin: E2BStandin) -> None:
    handle = await provider.create(SPEC, lambda _: None)
    await provider.kill(handle)
    await provider.kill(handle)  # a missing sandbox is not an error

    assert standin.sandboxes == {}
    with pytest.raises(SandboxGone):
        await provider.resume(handle, lambda _: None)
    with pytest.raises(SandboxGone):
        await provider.pause(handle)
    with pytest.raises(SandboxGone):
        await provider.extend(handle, 600)
    with pytest.raises(SandboxGone):
        await provider.run(handle, "true", limit=5)


async def test_a_sandbox_killed_behind_our_back_is_gone(provider: E2BProvider, standin: E2BStandin) -> None:
    handle = await provider.create(SPEC, lambda _: None)
    assert (await provider.run(handle, "true", limit=10)).exit_code == 0
    await make_provider(standin).kill(handle)  # another replica, the Manage UI, E2B's dashboard

    with pytest.raises(SandboxGone):
        await provider.run(handle, "true", limit=10)
    with pytest.raises(SandboxGone):
        await provider.read_file(handle, "anything")


async def test_extend_renews_the_ttl_from_now(provider: E2BProvider, standin: E2BStandin) -> None:
    handle = await provider.create(SPEC, lambda _: None)
    await provider.extend(handle, 1800)
    assert standin.recorded("timeout")[-1].body == {"timeout": 1800}
    assert standin.sandboxes[handle.sandbox_id].end_at > time.time() + 1700


async def test_list_pages_through_this_clouds_sandboxes_only(standin: E2BStandin) -> None:
    provider = make_provider(standin, page_size=2, app_check_command="true")
    other_cloud = make_provider(standin, cloud_id="another-cloud", app_check_command="true")
    handles = [
        await provider.create(SandboxSpec(user_id=f"user-{n}", env={}), lambda _: None) for n in range(5)
    ]
    await other_cloud.create(SandboxSpec(user_id="stranger", env={}), lambda _: None)
    await provider.pause(handles[1])

    listed = await provider.list()

    assert sorted(item.sandbox_id for item in listed) == sorted(h.sandbox_id for h in handles)
    by_id = {item.sandbox_id: item for item in listed}
    assert by_id[handles[1].sandbox_id].state == "paused"
    assert by_id[handles[0].sandbox_id].state == "running"
    assert by_id[handles[3].sandbox_id].metadata["user_id"] == "user-3"
    pages = standin.recorded("list")
    assert len(pages) == 3
    assert [p.query.get("nextToken") for p in pages] == [None, "2", "4"]
    assert all(p.query["limit"] == "2" and p.query["state"] == "running,paused" for p in pages)


async def test_a_command_runs_in_the_home_with_the_sandbox_env(provider: E2BProvider) -> None:
    handle = await provider.create(SPEC, lambda _: None)

    result = await provider.run(handle, 'echo "$USER_ID" && pwd && echo oops >&2 && exit 3', limit=10)

    assert result.exit_code == 3
    assert result.stdout.splitlines()[0] == "user-1"
    assert result.stdout.splitlines()[1].endswith("/home/user")
    assert result.stderr == "oops\n"
    assert (await provider.run(handle, "true", limit=10)).exit_code == 0


async def test_a_command_past_its_limit_is_a_timeout(provider: E2BProvider) -> None:
    handle = await provider.create(SPEC, lambda _: None)
    with pytest.raises(ProviderTimeout):
        await provider.run(handle, "sleep 30", limit=0.5)


async def test_files_round_trip_under_the_home(provider: E2BProvider, standin: E2BStandin) -> None:
    handle = await provider.create(SPEC, lambda _: None)
    data = bytes(range(256)) * 64

    await provider.write_file(handle, "project/src/data.bin", data)

    assert await provider.read_file(handle, "project/src/data.bin") == data
    assert (standin.sandboxes[handle.sandbox_id].home / "project/src/data.bin").read_bytes() == data
    assert await provider.read_file(handle, "/home/user/project/src/data.bin") == data
    with pytest.raises(FileNotFoundError):
        await provider.read_file(handle, "missing.txt")


async def test_commands_and_files_reconnect_after_a_restart(
    provider: E2BProvider, standin: E2BStandin
) -> None:
    handle = await provider.create(SPEC, lambda _: None)
    await provider.pause(handle)
    fresh = make_provider(standin)  # another replica, or this one after a restart

    assert (await fresh.run(handle, "echo hi", limit=10)).stdout == "hi\n"
    assert standin.sandboxes[handle.sandbox_id].state == "running"


async def test_traffic_to_a_paused_sandbox_resumes_it(provider: E2BProvider, standin: E2BStandin) -> None:
    handle = await provider.create(SPEC, lambda _: None)
    await wait_healthy(provider, handle)
    await provider.pause(handle)

    assert await get_health(provider, handle) == 200
    assert standin.auto_resumed == [handle.sandbox_id]


async def test_the_app_port_relays_websockets(
    provider: E2BProvider, standin: E2BStandin, aiohttp_server: Any
) -> None:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str("echo:" + message.data)
        return ws

    app = web.Application()
    app.router.add_get("/ws", echo)
    server = await aiohttp_server(app)
    handle = await provider.create(SPEC, lambda _: None)
    standin.wire(handle.sandbox_id, 4111, server.make_url("/"))
    endpoint = provider.endpoint(handle)

    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(endpoint.base_url.with_path("/ws"), headers=endpoint.headers) as ws:
            await ws.send_str("hi")
            assert (await ws.receive()).data == "echo:hi"


async def test_without_a_sandbox_url_the_app_is_at_the_sdks_host(
    standin: E2BStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("E2B_SANDBOX_URL", raising=False)
    provider = make_provider(standin, sandbox_url=None, start_command="", env_file="")  # no daemon calls
    handle = await provider.create(SPEC, lambda _: None)

    endpoint = provider.endpoint(handle)

    assert str(endpoint.base_url) == f"https://4111-{handle.sandbox_id}.e2b.local/"
    assert endpoint.headers == {"e2b-traffic-access-token": handle.data["traffic_access_token"]}
    stored_before_hosts = E2BProvider(E2BConfig.model_validate({"api_key": "k", "domain": "e2b.app"}))
    old = stored_before_hosts.endpoint(Handle("sbx1", {"traffic_access_token": "t"}))
    assert str(old.base_url) == "https://4111-sbx1.e2b.app/"


async def test_secrets_never_reach_the_log(standin: E2BStandin, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    provider = make_provider(standin)
    handle = await provider.create(SPEC, lambda _: None)
    await provider.pause(handle)
    await provider.resume(handle, lambda _: None)
    standin.fail("pause", 500)
    with pytest.raises(Exception, match="server error"):
        await provider.pause(handle)

    sandbox = standin.sandboxes[handle.sandbox_id]
    assert handle.sandbox_id in caplog.text
    assert standin.api_key not in caplog.text
    assert sandbox.traffic_token not in caplog.text
    assert sandbox.envd_token not in caplog.text


async def test_the_app_port_streams_server_sent_events(
    provider: E2BProvider, standin: E2BStandin, aiohttp_server: Any
) -> None:
    release = asyncio.Event()

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        await release.wait()
        await response.write(b"data: second\n\n")
        return response

    app = web.Application()
    app.router.add_get("/studio/refresh-events", events)
    server = await aiohttp_server(app)
    handle = await provider.create(SPEC, lambda _: None)
    standin.wire(handle.sandbox_id, 4111, server.make_url("/"))
    endpoint = provider.endpoint(handle)

    async with aiohttp.ClientSession() as session:
        url = endpoint.base_url.with_path("/studio/refresh-events")
        async with session.get(url, headers=endpoint.headers) as answer:
            assert await answer.content.readuntil(b"\n\n") == b"data: first\n\n"  # before the app ends
            release.set()
            assert await answer.content.readuntil(b"\n\n") == b"data: second\n\n"


async def test_a_sandbox_past_its_ttl_is_listed_paused(provider: E2BProvider, standin: E2BStandin) -> None:
    handle = await provider.create(SPEC, lambda _: None)
    standin.sandboxes[handle.sandbox_id].end_at = time.time() - 1  # E2B's timer ran out

    [listed] = await provider.list()

    assert (listed.sandbox_id, listed.state) == (handle.sandbox_id, "paused")
    await provider.resume(handle, lambda _: None)
    assert standin.sandboxes[handle.sandbox_id].state == "running"


async def test_a_slow_api_within_the_bound_still_answers(tmp_path: Path) -> None:
    async with running_e2b_standin(tmp_path / "slow", latency=0.2) as slow:
        provider = make_provider(slow, request_timeout=5, start_command="")
        handle = await provider.create(SPEC, lambda _: None)
        await provider.pause(handle)
        assert [item.state for item in await provider.list()] == ["paused"]


async def test_list_filters_on_a_cloud_id_with_reserved_characters(standin: E2BStandin) -> None:
    odd = make_provider(standin, cloud_id="team a&b=c/100%", start_command="")
    plain = make_provider(standin, cloud_id="team a", start_command="")
    mine = await odd.create(SPEC, lambda _: None)
    await plain.create(SPEC, lambda _: None)

    assert [item.sandbox_id for item in await odd.list()] == [mine.sandbox_id]
    assert (await odd.list())[0].metadata["shmastra_cloud"] == "team a&b=c/100%"


async def test_files_are_carried_from_one_sandbox_to_another(
    provider: E2BProvider, standin: E2BStandin
) -> None:
    """What a reprovision keeping files does: pack in the old sandbox, write into the new one through
    the SDK's files API, unpack there; skipped names (at any depth, or from the home) stay behind."""
    old = await provider.create(SPEC, lambda _: None)
    new = await provider.create(SPEC, lambda _: None)
    await provider.write_file(old, "project/src/agent.ts", b"export const agent = 1;\n")
    await provider.write_file(old, "project/node_modules/dep/index.js", b"dependency")
    await provider.write_file(old, "notes.md", b"mine")
    await provider.write_file(old, "cache/build.bin", b"rebuilt")
    archive = await provider.pack_files(old, ["node_modules", "./cache", "./start.sh"], limit=30)
    listed = await provider.run(old, "ls -a", limit=10)
    assert ".pack-" not in listed.stdout  # the archive does not stay behind

    await provider.unpack_files(new, archive, "carried", limit=30)
    assert await provider.read_file(new, "carried/project/src/agent.ts") == b"export const agent = 1;\n"
    assert await provider.read_file(new, "carried/notes.md") == b"mine"
    assert await provider.read_file(new, "carried/health") == b'{"success":true}'
    home = standin.sandboxes[new.sandbox_id].home
    assert (home / "carried" / "project").is_dir()
    for left in ("carried/project/node_modules", "carried/cache", "carried/start.sh"):
        assert not (home / left).exists(), left
    listed = await provider.run(new, "ls -a", limit=10)
    assert ".unpack-" not in listed.stdout
    assert provider.keeps_files
