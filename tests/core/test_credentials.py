"""A stage's own cookies and headers never reach an upstream, on HTTP or on the WebSocket handshake;
the application's other cookies and headers pass untouched."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import WSMsgType, web
from multidict import CIMultiDict

from proxy_core import Next, Stage, StageConfig
from proxy_core.credentials import OwnedCredentials
from proxy_core.stages.upstream import UpstreamStage
from proxy_core.testing import echo_app, make_app, stage


class Gatekeeper(Stage[StageConfig]):
    """A stage that signs clients in with a cookie and a token header, as ``auth`` does."""

    name = "gatekeeper"

    async def __call__(self, request: web.Request, next: Next) -> web.StreamResponse:
        return await next(request)

    def owned_credentials(self) -> OwnedCredentials:
        return OwnedCredentials.of(
            cookies=("cloud_session", "cloud_session_flow"),
            headers=("X-Cloud-Token",),
            header_prefixes=("X-Cloud-Id-",),
        )


def test_owned_cookies_are_removed_and_the_rest_kept_byte_for_byte() -> None:
    owned = OwnedCredentials.of(cookies=("s", "s_flow"))
    headers = CIMultiDict(
        [("Cookie", "app=1; s=SECRET; theme=dark%20blue"), ("Cookie", "s_flow=X"), ("Accept", "*/*")]
    )
    owned.strip(headers)
    assert headers.getall("Cookie") == ["app=1; theme=dark%20blue"]
    assert headers["Accept"] == "*/*"
    untouched = CIMultiDict([("Cookie", "a=1;b=2")])
    owned.strip(untouched)
    assert untouched["Cookie"] == "a=1;b=2"  # nothing owned: the very same value
    only_owned = CIMultiDict([("Cookie", " s=1 ")])
    owned.strip(only_owned)
    assert "Cookie" not in only_owned


@pytest.mark.parametrize(
    "name", ["X-Cloud-Token", "x-cloud-token", "X_Cloud_Token", "X-Cloud-Id-Email", "x_cloud_id_role"]
)
def test_owned_headers_match_whatever_the_case_or_underscores(name: str) -> None:
    owned = OwnedCredentials.of(headers=("X-Cloud-Token",), header_prefixes=("X-Cloud-Id-",))
    headers = CIMultiDict([(name, "forged"), ("X-Cloud-Other", "kept")])
    owned.strip(headers)
    assert list(headers) == ["X-Cloud-Other"]


def test_declarations_merge() -> None:
    merged = OwnedCredentials.of(cookies=("a",)) | OwnedCredentials.of(
        headers=("B",), header_prefixes=("C-",)
    )
    assert merged == OwnedCredentials.of(cookies=("a",), headers=("b",), header_prefixes=("c-",))
    assert not OwnedCredentials()


async def test_the_stages_credentials_never_reach_the_upstream(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    upstream = await aiohttp_server(echo_app())
    app = make_app([stage(Gatekeeper), stage(UpstreamStage, url=str(upstream.make_url("/")))])
    client = await aiohttp_client(app)
    response = await client.get(
        "/page",
        headers={
            "Cookie": "cloud_session=SECRET; studio_pref=1; cloud_session_flow=FLOW",
            "X-Cloud-Token": "SECRET",
            "X_Cloud_Id_Email": "boss@example.com",
            "Authorization": "Bearer app-token",
        },
    )
    seen = (await response.json())["headers"]
    assert seen["Cookie"] == "studio_pref=1"
    assert "SECRET" not in str(seen) and "FLOW" not in str(seen) and "boss" not in str(seen)
    assert seen["Authorization"] == "Bearer app-token"  # not declared by any stage: the app's own


async def test_a_proxy_without_declarations_forwards_every_cookie(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    upstream = await aiohttp_server(echo_app())
    client = await aiohttp_client(make_app([stage(UpstreamStage, url=str(upstream.make_url("/")))]))
    response = await client.get("/", headers={"Cookie": "cloud_session=x; a=1"})
    assert (await response.json())["headers"]["Cookie"] == "cloud_session=x; a=1"


async def test_the_websocket_handshake_carries_no_credentials_of_the_proxy(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    handshakes: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        handshakes.append(dict(request.headers))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    ws_app = web.Application()
    ws_app.router.add_get("/ws", handler)
    upstream = await aiohttp_server(ws_app)
    app = make_app([stage(Gatekeeper), stage(UpstreamStage, url=str(upstream.make_url("/")))])
    client = await aiohttp_client(app)
    headers = {"Cookie": "cloud_session=SECRET; hmr=1", "X-Cloud-Token": "SECRET", "X-Cloud-Id-Role": "admin"}
    async with client.ws_connect("/ws", headers=headers) as ws:
        await ws.send_str("hi")
        assert (await ws.receive_str()) == "hi"
    (seen,) = handshakes
    assert seen["Cookie"] == "hmr=1"
    assert "SECRET" not in str(seen) and "admin" not in str(seen)


async def test_an_upstream_cannot_set_the_stages_cookies(aiohttp_server: Any, aiohttp_client: Any) -> None:
    """Session fixation: a page from the upstream (a sandbox) planting the proxy's session cookie."""

    async def plant(request: web.Request) -> web.Response:
        response = web.Response(text="x" * (int(request.query.get("size", "1"))))
        response.headers.add("Set-Cookie", "cloud_session=ATTACKER; Path=/; HttpOnly")
        response.headers.add("Set-Cookie", "cloud_session_flow=X; Path=/auth")
        response.headers.add("Set-Cookie", "studio_pref=1; Path=/")
        return response

    planting = web.Application()
    planting.router.add_get("/", plant)
    upstream = await aiohttp_server(planting)
    app = make_app([stage(Gatekeeper), stage(UpstreamStage, url=str(upstream.make_url("/")))])
    client = await aiohttp_client(app)
    for size in (3_000_000, 1):  # streamed, and answered in one piece
        response = await client.get(f"/?size={size}")
        await response.read()
        assert response.headers.getall("Set-Cookie") == ["studio_pref=1; Path=/"]
