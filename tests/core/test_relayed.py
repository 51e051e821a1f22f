"""A complete small answer relayed in one write (:class:`proxy_core.relayed.RelayedResponse`): the head
the client reads, keep-alive both HTTP versions, and stages that change the answer after forwarding."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from proxy_core.relayed import RelayedResponse
from proxy_core.stage import Next, Stage
from proxy_core.stages.upstream import UpstreamStage
from proxy_core.testing import make_app, run_proxy, stage


@asynccontextmanager
async def raw_upstream(answer: bytes) -> AsyncIterator[int]:
    """A loopback server giving ``answer`` (bytes, as is) to every request it reads; yields its port."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def exchange(port: int, request: bytes, answers: int = 1) -> tuple[list[bytes], bool]:
    """Send ``request`` (raw) and read ``answers`` answers with Content-Length bodies; also whether the
    server then closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        got = []
        for _ in range(answers):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            got.append(head + await reader.readexactly(length))
        try:
            closed = await asyncio.wait_for(reader.read(1), 0.5) == b""
        except TimeoutError:
            closed = False
        return got, closed
    finally:
        writer.close()


def header_lines(answer: bytes) -> list[bytes]:
    return answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]


UPSTREAM_ANSWER = (
    b"HTTP/1.1 200 OK\r\nServer: upstream/1.0\r\nDate: Sun, 01 Jan 2023 00:00:00 GMT\r\n"
    b"X-MiXeD-Case: Value with  two spaces\r\nSet-Cookie: app=1\r\nSet-Cookie: other=2\r\n"
    b"Content-Type: text/plain\r\nKeep-Alive: timeout=5\r\nContent-Length: 5\r\n\r\nhello"
)


async def test_the_upstreams_head_reaches_the_client_as_it_was_sent() -> None:
    async with raw_upstream(UPSTREAM_ANSWER) as port:
        app = make_app([stage(UpstreamStage, url=f"http://127.0.0.1:{port}")])
        async with run_proxy(app) as url:
            assert url.port is not None
            (answer,), closed = await exchange(url.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\nhello")
    lines = header_lines(answer)
    assert lines == [
        b"Server: upstream/1.0",
        b"Date: Sun, 01 Jan 2023 00:00:00 GMT",
        b"X-MiXeD-Case: Value with  two spaces",
        b"Set-Cookie: app=1",
        b"Set-Cookie: other=2",
        b"Content-Type: text/plain",
        b"Content-Length: 5",
    ]
    assert not closed


async def test_defaults_are_added_when_the_upstream_leaves_them_out() -> None:
    bare = b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nabc"
    async with raw_upstream(bare) as port:
        app = make_app([stage(UpstreamStage, url=f"http://127.0.0.1:{port}")])
        async with run_proxy(app) as url:
            assert url.port is not None
            (answer,), _ = await exchange(url.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    names = [line.split(b":", 1)[0].lower() for line in header_lines(answer)]
    assert answer.startswith(b"HTTP/1.1 201 Created\r\n")
    assert sorted(names) == [b"content-length", b"content-type", b"date", b"server"]
    assert b"Content-Type: application/octet-stream" in header_lines(answer)


async def test_keep_alive_is_said_to_http_1_0_clients_and_close_is_kept() -> None:
    async with raw_upstream(UPSTREAM_ANSWER) as port:
        app = make_app([stage(UpstreamStage, url=f"http://127.0.0.1:{port}")])
        async with run_proxy(app) as url:
            assert url.port is not None
            request = b"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
            answers, closed = await exchange(url.port, request * 2, answers=2)
            assert all(a.startswith(b"HTTP/1.0 200 OK\r\n") for a in answers)
            assert all(b"Connection: keep-alive" in header_lines(a) for a in answers)
            assert not closed
            (answer,), closed = await exchange(url.port, b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            assert not any(line.lower().startswith(b"connection") for line in header_lines(answer))
            assert closed
            request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            (answer,), closed = await exchange(url.port, request)
            assert b"Connection: close" in header_lines(answer)
            assert closed


class Decorate(Stage):
    """Changes what the forwarding stage after it answered: headers, a cookie."""

    name = "decorate"

    async def __call__(self, request: web.Request, next: Next) -> web.StreamResponse:
        response = await next(request)
        if request.path == "/headers":
            assert response.headers["X-MiXeD-Case"] == "Value with  two spaces"
            response.headers["X-Added"] = "yes"
            response.headers["Content-Type"] = "text/x-changed"
            del response.headers["Server"]
        elif request.path == "/cookie":
            response.set_cookie("stage", "set")
        return response


async def test_a_stage_may_change_the_answer_after_forwarding() -> None:
    async with raw_upstream(UPSTREAM_ANSWER) as port:
        app = make_app([stage(Decorate), stage(UpstreamStage, url=f"http://127.0.0.1:{port}")])
        async with run_proxy(app) as url:
            assert url.port is not None
            (changed,), _ = await exchange(url.port, b"GET /headers HTTP/1.1\r\nHost: x\r\n\r\n")
            (cookie,), _ = await exchange(url.port, b"GET /cookie HTTP/1.1\r\nHost: x\r\n\r\n")
    lines = header_lines(changed)
    assert b"X-Added: yes" in lines
    assert b"Content-Type: text/x-changed" in lines
    assert b"Content-Type: text/plain" not in lines
    assert not any(line.startswith(b"Server: upstream") for line in lines)
    assert b"Content-Length: 5" in lines
    assert changed.endswith(b"\r\n\r\nhello")
    lines = header_lines(cookie)
    assert [line for line in lines if line.startswith(b"Set-Cookie")] == [
        b"Set-Cookie: app=1",
        b"Set-Cookie: other=2",
        b"Set-Cookie: stage=set; Path=/",
    ]
    assert cookie.endswith(b"\r\n\r\nhello")


async def test_a_line_break_in_a_header_is_never_relayed(aiohttp_server: Any) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return RelayedResponse(200, [(b"X-Ok", b"1\r\nX-Injected: yes")], b"body")

    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    seen = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert b"X-Injected" not in seen
    assert b"body" not in seen


def test_the_installed_aiohttp_has_what_the_one_write_path_needs() -> None:
    """Without these internals every answer silently takes aiohttp's slower path: fail loudly here."""
    from proxy_core import relayed

    assert relayed._FAST_PATH
