"""The WebSocket relay against implementations other than aiohttp (Python ``websockets``, Node ``ws``, a
raw socket), each case run directly and through the proxy: what each side sees must be the same."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import websockets
from aiohttp import web
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from yarl import URL

from proxy_core.app import CONFIG, FORWARDER, METRICS
from proxy_core.server import runner_for
from proxy_core.stages.upstream import UpstreamStage
from proxy_core.testing import make_app, stage

from .ws_peers import (
    NodeServer,
    PythonServer,
    RawClient,
    RawServer,
    Seen,
    frame,
    node_client,
    proxy_to,
    python_client,
    read_frame,
)

CASES = [  # (client behaviour, server behaviour, what must be seen: side, (code, reason))
    ("close_4002", "wait", ("server", (4002, "bye"))),
    ("close_empty", "wait", ("server", (1005, ""))),
    ("wait", "close_4001", ("client", (4001, "server bye"))),
    ("wait", "close_empty", ("client", (1005, ""))),
    ("drop", "wait", ("server", (1006, ""))),
    ("wait", "drop", ("client", (1006, ""))),
]
PAIRS = [("python", "python"), ("python", "node"), ("node", "python"), ("node", "node")]


async def run_case(
    client: str, server: PythonServer | NodeServer, base: str, client_does: str, server_does: str
) -> tuple[Seen, Seen]:
    key = uuid.uuid4().hex
    url = f"{base}/case/{server_does}/{key}"
    if client == "python":
        client_seen = await python_client(url, client_does)
    else:
        report = await node_client(url, client_does)
        client_seen = (report["code"], report["reason"])
    return client_seen, await server.result(key)


@pytest.mark.parametrize(("client", "server_kind"), PAIRS)
@pytest.mark.parametrize(("client_does", "server_does", "expected"), CASES)
async def test_closing_through_the_proxy_is_seen_as_directly(
    client: str, server_kind: str, client_does: str, server_does: str, expected: tuple[str, Seen]
) -> None:
    server = PythonServer() if server_kind == "python" else NodeServer()
    async with server.running():
        direct = await run_case(client, server, server.url, client_does, server_does)
        async with proxy_to(server.url) as (proxy_url, app):
            proxied = await run_case(client, server, str(proxy_url), client_does, server_does)
            async with asyncio.timeout(5):
                while app[METRICS].open_websockets.get(("upstream",)) != 0:
                    await asyncio.sleep(0.01)
    assert proxied == direct
    side, seen = expected
    assert (direct[1] if side == "server" else direct[0]) == seen


@pytest.mark.parametrize(
    ("client_sends", "reply_expected"),
    [
        (frame(0x8, b"", mask=b"\x01\x02\x03\x04"), frame(0x8, b"")),  # an empty close stays empty
        (frame(0x8, b"\x0f\xa2bye", mask=b"\xaa\xbb\xcc\xdd"), frame(0x8, b"\x0f\xa2bye")),
    ],
)
async def test_close_frames_cross_the_proxy_byte_for_byte(client_sends: bytes, reply_expected: bytes) -> None:
    async def exchange(host: str, port: int, upstream: RawServer) -> tuple[list[bytes], list[bytes]]:
        upstream.received.clear()
        upstream.ended.clear()
        client = await RawClient.connect(host, port, "/ws")
        assert client.status == 101
        client.send(client_sends)
        frames = await client.frames_until_eof()
        await client.close()
        async with asyncio.timeout(5):
            await upstream.ended.wait()
        return frames, list(upstream.received)

    upstream = RawServer()
    async with upstream.running():
        direct = await exchange("127.0.0.1", upstream.port, upstream)
        async with proxy_to(f"ws://127.0.0.1:{upstream.port}") as (proxy_url, _):
            assert proxy_url.host is not None and proxy_url.port is not None
            proxied = await exchange(proxy_url.host, proxy_url.port, upstream)
    assert direct == ([reply_expected], [client_sends])
    assert proxied == direct


async def test_a_close_from_the_upstream_reaches_the_client_byte_for_byte() -> None:
    upstream = RawServer()
    upstream.first_frames = [frame(0x8, b"\x0f\xa1server bye")]
    async with upstream.running():
        async with proxy_to(f"ws://127.0.0.1:{upstream.port}") as (proxy_url, _):
            assert proxy_url.host is not None and proxy_url.port is not None
            client = await RawClient.connect(proxy_url.host, proxy_url.port, "/ws")
            assert await _next_frame(client) == frame(0x8, b"\x0f\xa1server bye")
            reply = frame(0x8, b"\x0f\xa1", mask=b"\x05\x06\x07\x08")
            client.send(reply)
            assert await client.frames_until_eof() == []  # the proxy hangs up after the handshake
            await client.close()
            async with asyncio.timeout(5):
                await upstream.ended.wait()
    assert upstream.received == [reply]


async def _next_frame(client: RawClient) -> bytes:
    async with asyncio.timeout(5):
        return await read_frame(client.reader)


@pytest.mark.parametrize("client", ["python", "node"])
async def test_compression_is_negotiated_end_to_end(client: str) -> None:
    size = 1024 * 1024
    server = NodeServer() if client == "python" else PythonServer()  # cross the implementations
    async with server.running():
        async with proxy_to(server.url) as (proxy_url, app):
            key = uuid.uuid4().hex
            url = f"{proxy_url}/case/wait/{key}"
            if client == "python":
                async with connect(url, compression="deflate", max_size=None) as ws:
                    extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
                    await ws.send("a" * size)
                    assert len(await ws.recv()) == size
            else:
                report = await node_client(url, "echo", size)
                assert report["echoed"] == size
                extensions = report["extensions"]  # the negotiated Sec-WebSocket-Extensions
            await server.result(key)
            sessions = app[METRICS].websocket_sessions
            async with asyncio.timeout(5):
                while sessions.get(("upstream", "clean")) != 1:
                    await asyncio.sleep(0.01)
    assert "permessage-deflate" in extensions
    assert "permessage-deflate" in next(iter(server.extensions.values()))


async def test_compression_can_be_turned_off() -> None:
    server = PythonServer()
    async with server.running():
        async with proxy_to(server.url, "[server]\naccess_log = false\nwebsocket_compression = false\n") as (
            proxy_url,
            _,
        ):
            async with connect(f"{proxy_url}/case/wait/x", compression="deflate") as ws:
                assert "Sec-WebSocket-Extensions" not in ws.response.headers
        await server.result("x")
    assert server.extensions["x"] == ""


async def _sends_big(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send("b" * int(message))


@contextlib.asynccontextmanager
async def big_server() -> AsyncIterator[tuple[str, list[Seen]]]:
    seen: list[Seen] = []

    async def handler(ws: ServerConnection) -> None:
        try:
            await _sends_big(ws)
        except websockets.ConnectionClosed:
            pass
        finally:
            received = ws.protocol.close_rcvd
            seen.append((1006, "") if received is None else (int(received.code), received.reason))

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}", seen


async def test_a_message_of_exactly_the_limit_passes_one_byte_more_is_1009_to_both_sides() -> None:
    config = "[server]\naccess_log = false\nwebsocket_max_message = 1000\n"
    async with big_server() as (url, upstream_seen), proxy_to(url, config) as (proxy_url, app):
        async with connect(str(proxy_url), compression=None) as ws:
            await ws.send("1000")
            assert len(await ws.recv()) == 1000
            await ws.send("x" * 997)  # 1000 bytes in all: the limit counts each message
            with pytest.raises(websockets.ConnectionClosed):
                await ws.send("x" * 1001)
                await ws.recv()
            await ws.wait_closed()
            assert (ws.close_code, ws.close_reason) == (1009, "message too big: the limit is 1000 bytes")
        async with asyncio.timeout(5):
            while not upstream_seen:
                await asyncio.sleep(0.01)
        assert upstream_seen == [(1009, "the client sent a message larger than 1000 bytes")]
        assert app[METRICS].websocket_sessions.get(("upstream", "too_big")) == 1


async def test_too_big_from_the_upstream_is_1009_to_both_sides() -> None:
    config = "[server]\naccess_log = false\nwebsocket_max_message = 1000\n"
    async with big_server() as (url, upstream_seen), proxy_to(url, config) as (proxy_url, _):
        async with connect(str(proxy_url), compression=None) as ws:
            await ws.send("1001")
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            assert (ws.close_code, ws.close_reason) == (
                1009,
                "the upstream sent a message larger than 1000 bytes",
            )
        async with asyncio.timeout(5):
            while not upstream_seen:
                await asyncio.sleep(0.01)
        assert upstream_seen == [(1009, "message too big: the limit is 1000 bytes")]


async def test_a_big_message_streams_through() -> None:
    """64 MiB each way through a proxy whose limit allows it; afterwards nothing is held for it."""
    size = 64 * 1024 * 1024
    config = '[server]\naccess_log = false\nwebsocket_max_message = "64MiB"\n'
    async with big_server() as (url, _), proxy_to(url, config) as (proxy_url, app):
        async with connect(str(proxy_url), compression=None, max_size=None) as ws:
            await ws.send(str(size))
            assert len(await ws.recv()) == size
        assert app[METRICS].websocket_buffered.get() == 0


async def test_upgrades_are_refused_while_the_buffer_limit_is_reached() -> None:
    config = "[server]\naccess_log = false\nwebsocket_buffer_limit = 1\n"
    server = PythonServer()
    async with server.running(), proxy_to(server.url, config) as (proxy_url, app):
        relay = app[METRICS]
        app[FORWARDER].websockets.account(1)  # as if a slow receiver held a byte
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with connect(f"{proxy_url}/case/wait/x"):
                pass
        assert refused.value.response.status_code == 503
        assert refused.value.response.headers["Retry-After"] == "1"
        assert relay.websocket_refused.get(("upstream",)) == 1
        app[FORWARDER].websockets.account(-1)
        async with connect(f"{proxy_url}/case/wait/y") as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"


def _refusing_upstream() -> web.Application:
    async def forbidden(request: web.Request) -> web.Response:
        return web.Response(
            status=403,
            text="not you",
            headers={"Retry-After": "7", "X-Why": "policy", "Content-Type": "text/plain; charset=utf-8"},
        )

    async def plain(request: web.Request) -> web.Response:
        return web.Response(text="a page, no upgrade")

    app = web.Application()
    app.router.add_get("/forbidden", forbidden)
    app.router.add_get("/plain", plain)
    return app


@pytest.mark.parametrize(("path", "status"), [("/forbidden", 403), ("/plain", 200)])
async def test_a_refused_upgrade_reaches_the_client_as_the_upstream_sent_it(
    aiohttp_server: Any, path: str, status: int
) -> None:
    upstream = await aiohttp_server(_refusing_upstream())

    async def ask(base: URL) -> tuple[int, dict[str, str], str]:
        client = await RawClient.connect(base.host or "", base.port or 0, path)
        lines = client.head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if line)}
        async with asyncio.timeout(5):
            body = await client.reader.readexactly(int(headers["content-length"]))
        await client.close()
        return client.status, headers, body.decode()

    direct = await ask(upstream.make_url("/"))
    async with proxy_to(str(upstream.make_url("/"))) as (proxy_url, _):
        proxied = await ask(proxy_url)
    assert direct[0] == proxied[0] == status
    assert proxied[2] == direct[2] != ""
    for name in ("content-type", "retry-after", "x-why"):
        assert proxied[1].get(name) == direct[1].get(name)
    if status == 403:
        assert proxied[1]["retry-after"] == "7"


async def test_the_access_log_shows_101_with_the_duration_and_the_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = PythonServer()
    async with server.running():
        async with proxy_to(server.url, "[server]\naccess_log = true\n") as (proxy_url, app):
            async with connect(f"{proxy_url}/case/wait/a") as ws:
                await ws.send("hi")
                await ws.recv()
                await asyncio.sleep(0.2)
                await ws.close(4002, "bye")
            await python_client(f"{proxy_url}/case/wait/b", "drop")
            async with asyncio.timeout(5):
                while app[METRICS].websocket_sessions.get(("upstream", "abnormal")) != 1:
                    await asyncio.sleep(0.01)
            assert app[METRICS].requests.get(("GET", "101")) == 2
            assert app[METRICS].requests.get(("GET", "499")) == 0
    lines = [orjson.loads(line) for line in capsys.readouterr().err.splitlines() if '"access"' in line]
    clean, dropped = sorted((e for e in lines if e["path"].startswith("/case/")), key=lambda e: e["path"])
    assert clean["status"] == dropped["status"] == 101
    assert clean["duration_ms"] >= 200
    assert clean["websocket"]["ended"] == "clean"
    assert clean["websocket"]["by"] == "client"
    assert clean["websocket"]["code"] == 4002
    assert clean["websocket"]["bytes_to_client"] > 0
    assert dropped["websocket"] == dropped["websocket"] | {"ended": "abnormal", "by": "client", "code": None}


async def test_an_upstream_answering_with_a_bad_status_line_is_a_502() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT HTTP\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with proxy_to(f"ws://127.0.0.1:{port}") as (proxy_url, app), aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await s.ws_connect(str(proxy_url).replace("ws://", "http://") + "/ws")
            assert refused.value.status == 502
            assert app[METRICS].upstream_errors.get(("upstream", "protocol")) == 1
    finally:
        server.close()


async def test_a_slow_receiver_pauses_the_sender_instead_of_filling_the_proxy() -> None:
    """The upstream sends 32 MiB to a client that reads nothing: the proxy stops reading the upstream
    once the client's socket is full, so it holds a bounded amount (the gauge), not the 32 MiB."""
    sent = asyncio.Event()

    async def flood(ws: ServerConnection) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            for _ in range(512):
                await ws.send(b"f" * 65536)
            sent.set()
            await ws.wait_closed()

    async with serve(flood, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        config = '[server]\naccess_log = false\nwebsocket_max_message = "1MiB"\n'
        async with proxy_to(f"ws://127.0.0.1:{port}", config) as (proxy_url, app):
            assert proxy_url.host is not None and proxy_url.port is not None
            client = await RawClient.connect(proxy_url.host, proxy_url.port, "/ws")
            gauge = app[METRICS].websocket_buffered
            async with asyncio.timeout(10):
                while gauge.get() == 0:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)
            assert not sent.is_set()  # the upstream is held back by TCP, through the proxy
            assert 0 < gauge.get() <= 1024 * 1024
            client.writer.transport.abort()
            async with asyncio.timeout(5):
                while gauge.get() != 0:
                    await asyncio.sleep(0.01)


async def test_the_served_proxy_on_uvloop_relays_closes_as_directly(
    tmp_path: Any, unused_tcp_port: int
) -> None:
    """``shmastra-cloud serve`` (uvloop, the production runner) between two ``websockets`` peers."""
    server = PythonServer()
    async with server.running():
        config = tmp_path / "proxy.toml"
        config.write_text(
            f"[server]\nport = {unused_tcp_port}\naccess_log = false\n"
            f'[[pipeline]]\nstage = "upstream"\nurl = "{server.url.replace("ws://", "http://")}"\n'
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy_core.cli", "serve", "-c", str(config)
        )
        try:
            proxy = f"ws://127.0.0.1:{unused_tcp_port}"
            async with asyncio.timeout(20):
                while True:
                    with contextlib.suppress(OSError):
                        _, writer = await asyncio.open_connection("127.0.0.1", unused_tcp_port)
                        writer.close()
                        break
                    await asyncio.sleep(0.05)
            for client_does, server_does in [("close_4002", "wait"), ("drop", "wait"), ("wait", "drop")]:
                direct = await run_case("python", server, server.url, client_does, server_does)
                proxied = await run_case("python", server, proxy, client_does, server_does)
                assert proxied == direct
        finally:
            process.terminate()
            await process.wait()


async def test_ended_sessions_leave_no_connection_behind_in_the_server() -> None:
    """The relay takes the client's socket from aiohttp, and hands its end back: aiohttp forgets the
    connection whether the client closed, dropped, or the upstream dropped."""
    server = PythonServer()
    async with server.running():
        app = make_app([stage(UpstreamStage, url=server.url.replace("ws://", "http://"))])
        runner = runner_for(app, app[CONFIG])
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            proxy = f"ws://127.0.0.1:{runner.addresses[0][1]}"
            for client_does, server_does in [("close_4002", "wait"), ("drop", "wait"), ("wait", "drop")]:
                await run_case("python", server, proxy, client_does, server_does)
            assert runner.server is not None
            async with asyncio.timeout(5):
                while runner.server.connections or app[METRICS].open_websockets.get(("upstream",)):
                    await asyncio.sleep(0.01)
            assert app[METRICS].requests.get(("GET", "101")) == 3
        finally:
            await runner.cleanup()


async def test_shutdown_says_going_away_to_both_sides() -> None:
    server = PythonServer()
    async with server.running():
        app = make_app([stage(UpstreamStage, url=server.url.replace("ws://", "http://"))])
        runner = runner_for(app, app[CONFIG])
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        async with connect(f"ws://127.0.0.1:{runner.addresses[0][1]}/case/wait/s") as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            async with asyncio.timeout(10):
                await runner.cleanup()
                await ws.wait_closed()
            assert (ws.close_code, ws.close_reason) == (1001, "server shutting down")
        assert await server.result("s") == (1001, "server shutting down")
        assert app[METRICS].websocket_sessions.get(("upstream", "shutdown")) == 1
