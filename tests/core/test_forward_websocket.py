"""WebSocket proxying over real loopback servers: frames both ways, subprotocols, close codes, ping/pong,
and the error paths that must not leak."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from proxy_core.app import METRICS
from proxy_core.stages.upstream import UpstreamStage
from proxy_core.testing import make_app, run_proxy, stage


def ws_upstream(events: list[Any] | None = None) -> web.Application:
    """Echoes frames; ``close:<code>`` makes it close with that code; records what it saw."""
    seen = events if events is not None else []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("v2.chat",), autoping=False)
        await ws.prepare(request)
        seen.append(("protocol", ws.ws_protocol))
        seen.append(("header", request.headers.get("X-Forwarded-For")))
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    if msg.data.startswith("close:"):
                        await ws.close(code=int(msg.data[6:]), message=b"bye")
                        break
                    await ws.send_str("echo:" + msg.data)
                elif msg.type is WSMsgType.BINARY:
                    await ws.send_bytes(msg.data[::-1])
                elif msg.type is WSMsgType.PING:
                    seen.append(("ping", msg.data))
                    await ws.pong(msg.data)
        finally:  # a dropped connection cancels the handler: it ended too
            seen.append(("closed", ws.close_code))
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    app.router.add_get("/forbidden", _forbidden)
    return app


async def _forbidden(request: web.Request) -> web.Response:
    raise web.HTTPForbidden(text="no")


async def _proxy(aiohttp_server: Any, aiohttp_client: Any, events: list[Any]) -> Any:
    upstream = await aiohttp_server(ws_upstream(events))
    app = make_app([stage(UpstreamStage, url=str(upstream.make_url("/")))])
    return await aiohttp_client(app)


async def test_text_and_binary_frames_are_relayed(aiohttp_server: Any, aiohttp_client: Any) -> None:
    events: list[Any] = []
    client = await _proxy(aiohttp_server, aiohttp_client, events)
    async with client.ws_connect("/ws") as ws:
        await ws.send_str("hello")
        assert (await ws.receive()).data == "echo:hello"
        await ws.send_bytes(b"\x01\x02\x03")
        assert (await ws.receive()).data == b"\x03\x02\x01"
    assert ("header", "127.0.0.1") in events


async def test_subprotocol_is_negotiated_with_the_upstream(aiohttp_server: Any, aiohttp_client: Any) -> None:
    events: list[Any] = []
    client = await _proxy(aiohttp_server, aiohttp_client, events)
    async with client.ws_connect("/ws", protocols=("v1.chat", "v2.chat")) as ws:
        assert ws.protocol == "v2.chat"
    assert ("protocol", "v2.chat") in events


async def test_client_close_code_reaches_the_upstream(aiohttp_server: Any, aiohttp_client: Any) -> None:
    events: list[Any] = []
    client = await _proxy(aiohttp_server, aiohttp_client, events)
    ws = await client.ws_connect("/ws")
    await ws.send_str("x")
    await ws.receive()
    await ws.close(code=4000, message=b"done")
    async with asyncio.timeout(5):
        while ("closed", 4000) not in events:
            await asyncio.sleep(0.01)


async def test_upstream_close_code_reaches_the_client(aiohttp_server: Any, aiohttp_client: Any) -> None:
    client = await _proxy(aiohttp_server, aiohttp_client, [])
    async with client.ws_connect("/ws") as ws:
        await ws.send_str("close:4001")
        msg = await ws.receive()
        assert msg.type is WSMsgType.CLOSE
        assert msg.data == 4001
        assert msg.extra == "bye"


async def test_ping_and_pong_are_relayed(aiohttp_server: Any, aiohttp_client: Any) -> None:
    events: list[Any] = []
    client = await _proxy(aiohttp_server, aiohttp_client, events)
    async with client.ws_connect("/ws", autoping=False) as ws:
        await ws.ping(b"are-you-there")
        msg = await ws.receive()
        assert msg.type is WSMsgType.PONG
        assert msg.data == b"are-you-there"
    assert ("ping", b"are-you-there") in events


async def test_upstream_refusing_the_upgrade_keeps_its_status(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    client = await _proxy(aiohttp_server, aiohttp_client, [])
    resp = await client.get(
        "/forbidden",
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )
    assert resp.status == 403


async def test_dead_upstream_gives_502_on_upgrade(aiohttp_client: Any, unused_tcp_port: int) -> None:
    app = make_app([stage(UpstreamStage, url=f"http://127.0.0.1:{unused_tcp_port}")])
    client = await aiohttp_client(app)
    resp = await client.get(
        "/ws",
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Accept": "application/json",
        },
    )
    assert resp.status == 502
    assert app[METRICS].upstream_errors.get(("upstream", "connect")) == 1


async def test_abrupt_client_disconnect_closes_the_upstream_socket(aiohttp_server: Any) -> None:
    events: list[Any] = []
    upstream = await aiohttp_server(ws_upstream(events))
    app = make_app([stage(UpstreamStage, url=str(upstream.make_url("/")))])
    async with run_proxy(app) as url:
        reader, writer = await asyncio.open_connection(url.host, url.port)
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        assert b"101" in await reader.readline()
        async with asyncio.timeout(5):
            while app[METRICS].open_websockets.get(("upstream",)) != 1:
                await asyncio.sleep(0.01)
        writer.transport.abort()  # no close frame: the socket just dies
        async with asyncio.timeout(5):
            while not any(e[0] == "closed" for e in events):
                await asyncio.sleep(0.01)
            while app[METRICS].open_websockets.get(("upstream",)) != 0:
                await asyncio.sleep(0.01)


async def test_upstream_dying_drops_the_client_connection(aiohttp_server: Any, aiohttp_client: Any) -> None:
    async def dies(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()
        assert request.transport is not None
        request.transport.abort()
        return ws

    upstream_app = web.Application()
    upstream_app.router.add_get("/ws", dies)
    upstream = await aiohttp_server(upstream_app)
    app = make_app([stage(UpstreamStage, url=str(upstream.make_url("/")))])
    client = await aiohttp_client(app)
    async with client.ws_connect("/ws") as ws:
        await ws.send_str("trigger")
        msg = await ws.receive()
        # as on a direct connection: no close frame, the connection drops (1006, abnormal closure)
        assert msg.type is WSMsgType.CLOSED
        assert ws.close_code == 1006
    async with asyncio.timeout(5):
        while app[METRICS].open_websockets.get(("upstream",)) != 0:
            await asyncio.sleep(0.01)


async def test_many_websockets_open_and_close_without_leaking(aiohttp_server: Any) -> None:
    upstream = await aiohttp_server(ws_upstream())
    app = make_app([stage(UpstreamStage, url=str(upstream.make_url("/")))])
    async with run_proxy(app) as url, aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(url / "ws") for _ in range(50)]
        assert app[METRICS].open_websockets.get(("upstream",)) == 50
        for i, ws in enumerate(sockets):
            if i % 2:
                await ws.close()
            else:
                await ws.send_str("close:1000")
                await ws.receive()
        async with asyncio.timeout(5):
            while app[METRICS].open_websockets.get(("upstream",)) != 0:
                await asyncio.sleep(0.01)
        for ws in sockets:
            await ws.close()
