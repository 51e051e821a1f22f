"""An e2b sandbox's endpoint used the way the router uses it: proxy_core's Forwarder sends requests,
SSE and WebSockets through the E2B edge (the stand-in) to the sandbox's app, with the endpoint's
headers set over anything the client sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from plugins.sandbox_router.providers.base import SandboxSpec
from plugins.sandbox_router.providers.e2b import E2BConfig, E2BProvider
from proxy_core import Next, Stage, StageConfig
from proxy_core.forward import Upstream
from proxy_core.testing import make_app, stage
from tests.standins.e2b import E2BStandin, running_e2b_standin


class SandboxConfig(StageConfig):
    url: str
    headers: dict[str, str]


class ToSandbox(Stage[SandboxConfig]):
    """The router's last step, reduced to one fixed sandbox."""

    name = "to_sandbox"
    config_class = SandboxConfig

    async def __call__(self, request: web.Request, next: Next) -> web.StreamResponse:
        outgoing = self.context.forwarder.build(request, Upstream.from_url(self.config.url))
        for name, value in self.config.headers.items():
            outgoing.headers[name] = value  # replaces whatever the client sent under that name
        return await self.context.forwarder.send(request, outgoing, stage=self.name)


def whoami_app(owner: str) -> web.Application:
    async def whoami(request: web.Request) -> web.Response:
        return web.json_response(
            {"owner": owner, "token_seen": "e2b-traffic-access-token" in request.headers}
        )

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str(f"{owner}:{message.data}")
        return ws

    async def raw(request: web.Request) -> web.Response:
        return web.json_response({"raw_path": request.raw_path, "many": request.headers.getall("X-Many")})

    app = web.Application()
    app.router.add_get("/api/mastra/whoami", whoami)
    app.router.add_get("/raw/{tail:.*}", raw)
    app.router.add_get("/api/mastra/agents/a1/browser/ws", echo)
    return app


@pytest.fixture
async def standin(tmp_path: Path) -> AsyncIterator[E2BStandin]:
    async with running_e2b_standin(tmp_path / "e2b") as running:
        yield running


async def test_requests_and_websockets_reach_only_the_users_own_sandbox(
    standin: E2BStandin, aiohttp_server: Any, aiohttp_client: Any
) -> None:
    provider = E2BProvider(E2BConfig.model_validate({**standin.settings, "start_command": ""}))
    mine = await provider.create(SandboxSpec(user_id="ada", env={}), lambda _: None)
    theirs = await provider.create(SandboxSpec(user_id="bob", env={}), lambda _: None)
    for handle, owner in ((mine, "ada"), (theirs, "bob")):
        server = await aiohttp_server(whoami_app(owner))
        standin.wire(handle.sandbox_id, 4111, server.make_url("/"))
    endpoint = provider.endpoint(mine)
    client = await aiohttp_client(
        make_app([stage(ToSandbox, url=str(endpoint.base_url), headers=dict(endpoint.headers))])
    )

    answer = await client.get(
        "/api/mastra/whoami",
        headers={
            "E2b-Sandbox-Id": theirs.sandbox_id,  # a client naming another sandbox
            "e2b-traffic-access-token": theirs.data["traffic_access_token"],
            "Host": f"4111-{theirs.sandbox_id}.{standin.domain}",
        },
    )
    assert answer.status == 200
    assert await answer.json() == {"owner": "ada", "token_seen": False}  # the token stops at the edge

    answer = await client.get("/raw/a%2Fb/..%2F?q=%20x", headers=[("X-Many", "1"), ("X-Many", "2")])
    assert await answer.json() == {"raw_path": "/raw/a%2Fb/..%2F?q=%20x", "many": ["1", "2"]}

    ws = await client.ws_connect("/api/mastra/agents/a1/browser/ws")
    await ws.send_str("frame")
    assert (await ws.receive()).data == "ada:frame"
    await ws.close()


async def test_a_paused_sandbox_is_woken_by_forwarded_traffic(
    standin: E2BStandin, aiohttp_server: Any, aiohttp_client: Any
) -> None:
    provider = E2BProvider(E2BConfig.model_validate({**standin.settings, "start_command": ""}))
    handle = await provider.create(SandboxSpec(user_id="ada", env={}), lambda _: None)
    standin.wire(handle.sandbox_id, 4111, (await aiohttp_server(whoami_app("ada"))).make_url("/"))
    await provider.pause(handle)
    endpoint = provider.endpoint(handle)
    client = await aiohttp_client(
        make_app([stage(ToSandbox, url=str(endpoint.base_url), headers=dict(endpoint.headers))])
    )

    answer = await client.get("/api/mastra/whoami")

    assert answer.status == 200
    assert standin.auto_resumed == [handle.sandbox_id]


async def test_a_sandbox_gone_at_the_edge_is_a_bad_gateway(standin: E2BStandin, aiohttp_client: Any) -> None:
    provider = E2BProvider(E2BConfig.model_validate({**standin.settings, "start_command": ""}))
    handle = await provider.create(SandboxSpec(user_id="ada", env={}), lambda _: None)
    endpoint = provider.endpoint(handle)
    await provider.kill(handle)
    client = await aiohttp_client(
        make_app([stage(ToSandbox, url=str(endpoint.base_url), headers=dict(endpoint.headers))])
    )

    answer = await client.get("/api/mastra/whoami", headers={"Accept": "application/json"})

    assert answer.status == 502
    assert "was not found" in (await answer.json())["message"]
