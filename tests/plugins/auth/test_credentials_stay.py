"""The cloud's credentials never leave it, and upstreams learn who is asking only through headers the
cloud owns: signed in, the upstream sees neither the session cookie nor the flow cookie (HTTP and the
WebSocket handshake), sees the app's own cookies untouched, and never a client's identity header."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from plugins.auth import IDENTITY, AuthStage, identity_headers
from proxy_core import Next, Stage, StageConfig, Upstream
from proxy_core.testing import make_app, run_proxy, stage

from .kit import SECRET, browser, cookie, email_sign_in

FORGED = {
    "X_Forwarded_User": "boss",
    "X-Auth_User": "boss",
    "X-Webauth-User": "boss",
    "X-Authenticated-User": "boss",
    "X-Role": "admin",
    "X_Remote_User": "boss",
    "X-Shmastra-User-Email": "boss@example.com",
    "X_Shmastra_User_Role": "admin",
    "x-shmastra-anything": "boss",
}


def recording_upstream(seen: list[dict[str, str]]) -> web.Application:
    """Records each request's headers; ``/ws`` is a WebSocket echo."""

    async def ws(request: web.Request) -> web.WebSocketResponse:
        seen.append(dict(request.headers))
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for msg in socket:
            if msg.type is WSMsgType.TEXT:
                await socket.send_str(msg.data)
        return socket

    async def page(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/ws", ws)
    app.router.add_route("*", "/{tail:.*}", page)
    return app


class PassIdentity(Stage[StageConfig]):
    """A forwarding stage after ``auth`` (as ``sandbox_router`` is): adds the cloud's identity headers."""

    name = "pass_identity"
    upstream_url = ""

    async def __call__(self, request: web.Request, next: Next) -> web.StreamResponse:
        forwarder = self.context.forwarder
        outgoing = forwarder.build(request, Upstream.from_url(self.upstream_url))
        if (identity := request.get(IDENTITY)) is not None:
            outgoing.headers.update(identity_headers(identity))
        return await forwarder.send(request, outgoing, stage=self.name)


@pytest.fixture
async def upstream(aiohttp_server: Any) -> tuple[TestServer, list[dict[str, str]]]:
    seen: list[dict[str, str]] = []
    server: TestServer = await aiohttp_server(recording_upstream(seen))
    return server, seen


async def test_cloud_cookies_and_forged_identities_never_reach_the_upstream(
    upstream: tuple[TestServer, list[dict[str, str]]], sqlite_url: str, tmp_path: Path
) -> None:
    server, seen = upstream
    PassIdentity.upstream_url = str(server.make_url("/"))
    app = make_app(
        [
            stage(
                AuthStage,
                cookie_secret=SECRET,
                email_code={"delivery": "mailbox", "mailbox_dir": str(tmp_path / "mail")},
                allowed_domains=["example.com"],
                public_paths=["/public/*"],
                data_dir=str(tmp_path),
            ),
            stage(PassIdentity),
        ],
        f'[server]\naccess_log = false\n[database]\nurl = "{sqlite_url}"\n',
    )
    async with run_proxy(app) as url, browser() as b:
        base = str(url)
        async with b.get(base + "/public/x", headers=FORGED) as response:
            assert response.status == 200
        await email_sign_in(b, _Proxy(url), tmp_path / "mail", "ann@example.com")
        session = cookie(b, "auth_session")
        assert session
        b.cookie_jar.update_cookies({"studio_theme": "dark", "auth_session_flow": "stale-flow"})
        async with b.get(base + "/app", headers=FORGED) as response:
            assert response.status == 200
        async with b.ws_connect(base + "/ws", headers=FORGED) as ws:
            await ws.send_str("hi")
            assert await ws.receive_str() == "hi"

    public, page, handshake = seen[0], seen[-2], seen[-1]
    for headers in (public, page, handshake):
        text = str(headers)
        assert session not in text and "stale-flow" not in text and "auth_session" not in text
        assert "boss" not in text
        assert not {k.lower().replace("_", "-") for k in FORGED} & {
            k.lower().replace("_", "-") for k in headers if not k.lower().startswith("x-shmastra-")
        }
    assert "X-Shmastra-User-Email" not in public  # public paths: no identity at all
    for headers in (page, handshake):
        assert "studio_theme=dark" in headers["Cookie"]
        assert headers["X-Shmastra-User-Email"] == "ann@example.com"
        assert headers["X-Shmastra-User-Role"] == "member"
        assert sorted(k for k in headers if k.lower().startswith("x-shmastra-")) == [
            "X-Shmastra-User-Email",
            "X-Shmastra-User-Id",
            "X-Shmastra-User-Role",
        ]


class _Proxy:
    def __init__(self, url: Any) -> None:
        self.url = url

    def at(self, path: str) -> Any:
        return self.url.with_path(path)


async def test_gateway_calls_do_not_carry_the_cloud_cookies_to_a_provider(
    aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch, sqlite_url: str, tmp_path: Path
) -> None:
    """``vkey`` runs before ``auth``, yet the forwarder still strips ``auth``'s identity prefix (and
    vkey itself sends no cookie to a provider)."""
    from datetime import timedelta

    from plugins.auth.users import Users
    from plugins.vkey import KEY_CACHE, KeyService, VKeyStage
    from proxy_core.db import DATABASE
    from tests.plugins.vkey.conftest import ENV, REAL, provider_urls
    from tests.standins.llm_providers import STATE, standin_app

    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    standin = await aiohttp_server(standin_app(REAL), access_log=None)
    app = make_app(
        [
            stage(VKeyStage, providers=provider_urls(standin)),
            stage(AuthStage, cookie_secret=SECRET, data_dir=str(tmp_path)),
        ],
        f'[server]\naccess_log = false\n[database]\nurl = "{sqlite_url}"\n',
    )
    async with run_proxy(app) as url, browser() as b:
        await Users(app[DATABASE]).create("ada@example.com")
        issued = await KeyService(app[DATABASE], app[KEY_CACHE], timedelta(hours=1)).issue("ada@example.com")
        headers = {
            "Authorization": f"Bearer {issued.key}",
            "Cookie": "auth_session=SESSION; auth_session_flow=FLOW; provider_pref=1",
            "X-Shmastra-User-Role": "admin",
        }
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        async with b.post(
            str(url) + "/api/gateway/openai/v1/chat/completions", json=body, headers=headers
        ) as r:
            assert r.status == 200, await r.text()
    (received,) = standin.app[STATE].received
    assert "cookie" not in received.headers  # vkey sends a provider no cookie at all
    assert "x-shmastra-user-role" not in received.headers
    assert "SESSION" not in str(received.headers) and "FLOW" not in str(received.headers)
