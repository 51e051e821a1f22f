"""The forwarder over real loopback servers: streaming both ways, headers, errors, timeouts, pooling."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy_core.app import METRICS
from proxy_core.stages.upstream import UpstreamStage
from proxy_core.testing import config_from_toml, echo_app, make_app, run_proxy, stage


async def test_get_is_forwarded_with_path_query_and_headers(aiohttp_server: Any, proxy_to: Any) -> None:
    client = await proxy_to(await aiohttp_server(echo_app()))
    resp = await client.get("/a%2Fb/c?x=1&y=%20z", headers={"X-Custom": "kept"})
    assert resp.status == 200
    seen = await resp.json()
    assert seen["method"] == "GET"
    assert seen["raw_path"] == "/a%2Fb/c?x=1&y=%20z"
    assert seen["headers"]["X-Custom"] == "kept"


async def test_base_url_path_is_a_prefix(aiohttp_server: Any, proxy_to: Any) -> None:
    upstream = await aiohttp_server(echo_app())
    client = await proxy_to(upstream, url=str(upstream.make_url("/base/")))
    seen = await (await client.get("/x?q=1")).json()
    assert seen["raw_path"] == "/base/x?q=1"


async def test_host_is_the_upstreams_unless_preserved(aiohttp_server: Any, proxy_to: Any) -> None:
    upstream = await aiohttp_server(echo_app())
    plain = await proxy_to(upstream)
    seen = await (await plain.get("/", headers={"Host": "public.example"})).json()
    assert seen["headers"]["Host"] == f"127.0.0.1:{upstream.port}"
    preserving = await proxy_to(upstream, preserve_host=True)
    seen = await (await preserving.get("/", headers={"Host": "public.example"})).json()
    assert seen["headers"]["Host"] == "public.example"


async def test_hop_by_hop_request_headers_are_stripped(aiohttp_server: Any, proxy_to: Any) -> None:
    client = await proxy_to(await aiohttp_server(echo_app()))
    resp = await client.get(
        "/",
        headers={
            "Connection": "keep-alive, X-Private",
            "X-Private": "secret",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Authorization": "Basic abc",
            "Upgrade": "h2c",
            "X-Normal": "yes",
        },
    )
    headers = (await resp.json())["headers"]
    for name in ("X-Private", "Keep-Alive", "TE", "Proxy-Authorization", "Upgrade"):
        assert name not in headers, name
    assert headers["X-Normal"] == "yes"


async def test_hop_by_hop_response_headers_are_stripped(aiohttp_server: Any, proxy_to: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            text="ok",
            headers={"Connection": "X-Hop", "X-Hop": "1", "Keep-Alive": "timeout=5", "X-End": "2"},
        )

    app = web.Application()
    app.router.add_get("/", handler)
    client = await proxy_to(await aiohttp_server(app))
    resp = await client.get("/")
    assert await resp.text() == "ok"
    assert "X-Hop" not in resp.headers
    assert "Keep-Alive" not in resp.headers
    assert resp.headers["X-End"] == "2"


async def test_forwarded_headers_from_an_untrusted_client_are_replaced(
    aiohttp_server: Any, proxy_to: Any
) -> None:
    client = await proxy_to(await aiohttp_server(echo_app()))
    resp = await client.get(
        "/",
        headers={
            "Host": "cloud.example",
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "evil.example",
            "Forwarded": "for=6.6.6.6",
            "X-Real-IP": "6.6.6.6",
        },
    )
    headers = (await resp.json())["headers"]
    assert headers["X-Forwarded-For"] == "127.0.0.1"
    assert headers["X-Forwarded-Proto"] == "http"
    assert headers["X-Forwarded-Host"] == "cloud.example"
    assert headers["Forwarded"] == 'for=127.0.0.1;proto=http;host="cloud.example"'
    assert "X-Real-IP" not in headers


async def test_a_request_built_without_the_forwarded_chain_or_dropped_headers(aiohttp_server: Any) -> None:
    from proxy_core import FORWARDER, Upstream

    target = Upstream.from_url(str((await aiohttp_server(echo_app())).make_url("/")))

    async def handler(request: web.Request) -> web.StreamResponse:
        forwarder = request.app[FORWARDER]
        dropped = frozenset({"x-replaced", "authorization"})
        return await forwarder.send(request, forwarder.build(request, target, forwarded=False, drop=dropped))

    app = make_app([])
    app.router.add_get("/out", handler)
    async with run_proxy(app) as url, aiohttp.ClientSession() as session:
        sent = {
            "X-Forwarded-For": "6.6.6.6",
            "Forwarded": "for=6.6.6.6",
            "X-Kept": "yes",
            "X-REPLACED": "a",
            "Authorization": "Bearer b",
            "Connection": "close",
        }
        async with session.get(url / "out", headers=sent) as resp:
            headers = (await resp.json())["headers"]
    assert headers["X-Kept"] == "yes"
    assert not {"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded"} & set(headers)
    assert not {"X-Replaced", "X-REPLACED", "Authorization", "Connection"} & set(headers)


async def test_forwarded_headers_from_a_trusted_proxy_extend_the_chain(
    aiohttp_server: Any, proxy_to: Any
) -> None:
    config = '[server]\naccess_log = false\ntrusted_proxies = ["127.0.0.0/8"]\n'
    client = await proxy_to(await aiohttp_server(echo_app()), config)
    resp = await client.get(
        "/",
        headers={
            "X-Forwarded-For": "203.0.113.7, 127.0.0.5",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "cloud.example",
            "Forwarded": 'for=203.0.113.7;proto=https;host="cloud.example"',
        },
    )
    headers = (await resp.json())["headers"]
    assert headers["X-Forwarded-For"] == "203.0.113.7, 127.0.0.5, 127.0.0.1"
    assert headers["X-Forwarded-Proto"] == "https"
    assert headers["X-Forwarded-Host"] == "cloud.example"
    assert headers["Forwarded"] == (
        'for=203.0.113.7;proto=https;host="cloud.example", for=127.0.0.1;proto=https;host="cloud.example"'
    )


async def test_streamed_upload_with_content_length(aiohttp_server: Any, proxy_to: Any) -> None:
    client = await proxy_to(await aiohttp_server(echo_app()))
    body = os.urandom(3 * 1024 * 1024)
    resp = await client.post("/upload", data=body)
    seen = await resp.json()
    assert seen["body_length"] == len(body)
    assert seen["headers"]["Content-Length"] == str(len(body))


async def test_chunked_upload_stays_chunked(aiohttp_server: Any, proxy_to: Any) -> None:
    received = hashlib.sha256()
    seen_headers: dict[str, str] = {}

    async def sink(request: web.Request) -> web.Response:
        seen_headers.update(request.headers)
        async for chunk in request.content.iter_any():
            received.update(chunk)
        return web.Response(text="stored")

    app = web.Application()
    app.router.add_post("/", sink)
    client = await proxy_to(await aiohttp_server(app))
    sent = hashlib.sha256()

    async def produce() -> AsyncIterator[bytes]:
        for i in range(50):
            piece = bytes([i]) * 10_000
            sent.update(piece)
            yield piece

    resp = await client.post("/", data=produce())
    assert await resp.text() == "stored"
    assert seen_headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in seen_headers
    assert received.hexdigest() == sent.hexdigest()


async def test_streamed_download_keeps_chunked_encoding(aiohttp_server: Any, proxy_to: Any) -> None:
    async def source(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(20):
            await resp.write(bytes([i]) * 50_000)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/", source)
    client = await proxy_to(await aiohttp_server(app))
    resp = await client.get("/")
    assert resp.headers["Transfer-Encoding"] == "chunked"
    body = await resp.read()
    assert body == b"".join(bytes([i]) * 50_000 for i in range(20))


async def test_download_with_content_length_keeps_it(aiohttp_server: Any, proxy_to: Any) -> None:
    payload = os.urandom(2 * 1024 * 1024)

    async def source(request: web.Request) -> web.Response:
        return web.Response(body=payload, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/", source)
    client = await proxy_to(await aiohttp_server(app))
    resp = await client.get("/")
    assert resp.headers["Content-Length"] == str(len(payload))
    assert await resp.read() == payload


async def test_sse_events_are_flushed_as_they_arrive(aiohttp_server: Any, proxy_to: Any) -> None:
    """The upstream writes the second event only after the client has received the first, so a proxy
    that buffered would deadlock here."""
    acknowledged = asyncio.Event()

    async def events(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        await resp.write(b"data: one\n\n")
        await acknowledged.wait()
        await resp.write(b"data: two\n\n")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/events", events)
    client = await proxy_to(await aiohttp_server(app))
    resp = await client.get("/events")
    assert resp.headers["Content-Type"] == "text/event-stream"
    async with asyncio.timeout(5):
        assert await resp.content.readline() == b"data: one\n"
        assert await resp.content.readline() == b"\n"
        acknowledged.set()
        assert await resp.content.readline() == b"data: two\n"


async def test_head_and_no_content_responses(aiohttp_server: Any, proxy_to: Any) -> None:
    async def resource(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 1234)

    async def empty(request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def not_modified(request: web.Request) -> web.Response:
        return web.Response(status=304, headers={"ETag": '"v1"'})

    app = web.Application()
    app.router.add_get("/r", resource)
    app.router.add_delete("/r", empty)
    app.router.add_get("/cached", not_modified)
    client = await proxy_to(await aiohttp_server(app))
    head = await client.head("/r")
    assert head.status == 200
    assert head.headers["Content-Length"] == "1234"
    assert await head.read() == b""
    assert (await client.delete("/r")).status == 204
    cached = await client.get("/cached")
    assert cached.status == 304
    assert cached.headers["ETag"] == '"v1"'
    # the connection is still usable after all of these
    assert len(await (await client.get("/r")).read()) == 1234


async def test_upstream_connections_are_reused(aiohttp_server: Any, proxy_to: Any) -> None:
    peers: set[Any] = set()

    async def handler(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handler)
    client = await proxy_to(await aiohttp_server(app))
    for _ in range(20):
        assert await (await client.get("/")).text() == "ok"
    assert len(peers) == 1


async def test_stale_pooled_connection_is_retried_for_idempotent_requests(
    aiohttp_server: Any, proxy_to: Any
) -> None:
    """An upstream that closes idle keep-alive connections must not turn the next GET into a 502."""
    app = web.Application()
    app.router.add_get("/", _ok)
    upstream = await aiohttp_server(app, keepalive_timeout=0.05)
    client = await proxy_to(upstream)
    assert (await client.get("/")).status == 200
    await asyncio.sleep(0.2)  # the upstream closes the idle connection meanwhile
    assert (await client.get("/")).status == 200


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def test_upstream_down_gives_502_json_for_api_callers(
    aiohttp_client: Any, unused_tcp_port: int
) -> None:
    app = make_app([stage(UpstreamStage, url=f"http://127.0.0.1:{unused_tcp_port}")])
    client = await aiohttp_client(app)
    resp = await client.get("/api/x", headers={"Accept": "application/json"})
    assert resp.status == 502
    body = await resp.json()
    assert body["error"]["status"] == 502
    assert "not reachable" in body["error"]["message"]
    assert app[METRICS].upstream_errors.get(("upstream", "connect")) == 1


async def test_upstream_down_gives_502_page_for_browsers(aiohttp_client: Any, unused_tcp_port: int) -> None:
    app = make_app([stage(UpstreamStage, url=f"http://127.0.0.1:{unused_tcp_port}")])
    client = await aiohttp_client(app)
    resp = await client.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert resp.status == 502
    assert resp.content_type == "text/html"
    assert "<h1>Bad Gateway</h1>" in await resp.text()


async def test_slow_upstream_gives_504(aiohttp_server: Any, proxy_to: Any) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/", slow)
    client = await proxy_to(await aiohttp_server(app), read_timeout=0.2)
    resp = await client.get("/")
    assert resp.status == 504
    assert "did not answer in time" in (await resp.json())["error"]["message"]


async def test_silent_stream_is_cut_after_the_idle_timeout(aiohttp_server: Any, proxy_to: Any) -> None:
    async def stalls(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b"first")
        await asyncio.sleep(5)
        return resp

    app = web.Application()
    app.router.add_get("/", stalls)
    client = await proxy_to(await aiohttp_server(app), idle_timeout=0.2)
    resp = await client.get("/")
    assert resp.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()


async def test_upstream_reset_before_answering_gives_502(aiohttp_server: Any, proxy_to: Any) -> None:
    async def resets(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.abort()
        await asyncio.sleep(1)
        return web.Response()

    app = web.Application()
    app.router.add_post("/", resets)
    client = await proxy_to(await aiohttp_server(app))
    resp = await client.post("/", data=b"payload")
    assert resp.status == 502
    assert "closed the connection" in (await resp.json())["error"]["message"]


async def test_upstream_reset_mid_stream_truncates_the_client(aiohttp_server: Any, proxy_to: Any) -> None:
    async def half(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "100000"})
        await resp.prepare(request)
        await resp.write(b"x" * 1000)
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        return resp

    app = web.Application()
    app.router.add_get("/", half)
    client = await proxy_to(await aiohttp_server(app))
    resp = await client.get("/")
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    assert client.app[METRICS].upstream_errors.get(("upstream", "midstream")) == 1


async def test_request_body_over_the_limit_is_refused_with_413(aiohttp_server: Any, proxy_to: Any) -> None:
    config = "[server]\naccess_log = false\nmax_body_size = 1000\n"
    client = await proxy_to(await aiohttp_server(echo_app()), config)
    resp = await client.post("/", data=b"x" * 1001)
    assert resp.status == 413
    assert "larger than 1000 bytes" in (await resp.json())["error"]["message"]

    async def produce() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"y" * 500

    resp = await client.post("/", data=produce())
    assert resp.status == 413
    ok = await client.post("/", data=b"x" * 1000)
    assert (await ok.json())["body_length"] == 1000


async def test_a_body_read_whole_waits_for_late_pieces_and_keeps_the_limit() -> None:
    from proxy_core import FORWARDER

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.app[FORWARDER].body_limit.read(request)
        return web.Response(text="too large" if body is None else body.decode())

    app = make_app([], "[server]\naccess_log = false\nmax_body_size = 8\n")
    app.router.add_post("/read", handler)

    async def send(framing: str, pieces: list[bytes]) -> bytes:
        reader, writer = await asyncio.open_connection(url.host, url.port)
        writer.write(f"POST /read HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{framing}\r\n\r\n".encode())
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.05)  # the handler has the head and part of the body meanwhile
        answer = await reader.read()
        writer.close()
        return answer.partition(b"\r\n\r\n")[2]

    async with run_proxy(app) as url:
        assert await send("Content-Length: 7", [b"whole!!"]) == b"whole!!"
        assert await send("Content-Length: 8", [b"late", b"body"]) == b"latebody"
        chunked = "Transfer-Encoding: chunked"
        assert await send(chunked, [b"4\r\nlate\r\n", b"4\r\nbody\r\n0\r\n\r\n"]) == b"latebody"
        assert await send(chunked, [b"4\r\nlate\r\n", b"5\r\nbody!\r\n0\r\n\r\n"]) == b"too large"


async def test_client_abort_cancels_the_upstream_request(aiohttp_server: Any) -> None:
    upstream_gone = asyncio.Event()

    async def forever(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            await resp.write(b"data: hello\n\n")
            await asyncio.sleep(30)
        finally:
            upstream_gone.set()
        return resp

    upstream_app = web.Application()
    upstream_app.router.add_get("/", forever)
    upstream = await aiohttp_server(upstream_app)
    app = make_app([stage(UpstreamStage, url=str(upstream.make_url("/")))])
    async with run_proxy(app) as url, aiohttp.ClientSession() as session:
        resp = await session.get(url)
        assert await resp.content.readline() == b"data: hello\n"
        assert app[METRICS].open_streams.get(("upstream",)) == 1
        resp.close()  # the browser tab goes away
        async with asyncio.timeout(5):
            await upstream_gone.wait()
        while app[METRICS].open_streams.get(("upstream",)) != 0:
            await asyncio.sleep(0.01)


async def test_malformed_upstream_response_gives_502(unused_tcp_port: int, aiohttp_client: Any) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT-HTTP garbage\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", unused_tcp_port)
    async with server:
        app = make_app([stage(UpstreamStage, url=f"http://127.0.0.1:{unused_tcp_port}")])
        client = await aiohttp_client(app)
        resp = await client.get("/")
        assert resp.status == 502
        assert "invalid response" in (await resp.json())["error"]["message"]


@pytest.fixture
def tls_ca() -> Any:
    import trustme

    return trustme.CA()


async def _tls_upstream(aiohttp_server: Any, ca: Any) -> Any:
    import ssl

    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    return await aiohttp_server(echo_app(), ssl=server_context)


async def test_https_upstream_with_a_trusted_ca(aiohttp_server: Any, tls_ca: Any) -> None:
    import ssl

    from proxy_core import Forwarder, Upstream

    upstream = await _tls_upstream(aiohttp_server, tls_ca)
    client_context = ssl.create_default_context()
    tls_ca.configure_trust(client_context)
    forwarder = Forwarder(ssl_context=client_context)
    target = Upstream.from_url(f"https://127.0.0.1:{upstream.port}/")

    async def handler(request: web.Request) -> web.StreamResponse:
        return await forwarder.forward(request, target)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with run_proxy(app, config_from_toml()) as url, aiohttp.ClientSession() as session:
        async with session.get(url / "secure") as resp:
            assert (await resp.json())["path"] == "/secure"
    await forwarder.close()


async def test_https_upstream_with_an_unknown_certificate_gives_502(aiohttp_server: Any, tls_ca: Any) -> None:
    upstream = await _tls_upstream(aiohttp_server, tls_ca)
    app = make_app([stage(UpstreamStage, url=f"https://127.0.0.1:{upstream.port}/")])
    async with run_proxy(app) as url, aiohttp.ClientSession() as session:
        async with session.get(url / "secure") as resp:
            assert resp.status == 502


async def test_compressed_bodies_pass_through_untouched(aiohttp_server: Any, proxy_to: Any) -> None:
    import gzip

    payload = b"token " * 5000

    async def compressed(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(payload), headers={"Content-Encoding": "gzip"})

    app = web.Application()
    app.router.add_get("/", compressed)
    client = await proxy_to(await aiohttp_server(app))
    resp = await client.get("/", auto_decompress=False)
    assert resp.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await resp.read()) == payload


class _Upper:
    """A tap that upper-cases the body and appends a trailer line."""

    def __init__(self) -> None:
        self.status = 0

    def on_head(self, status: int, headers: Any) -> None:
        self.status = status
        headers["X-Tapped"] = "yes"

    def on_chunk(self, data: bytes) -> bytes:
        return data.upper()

    def on_end(self) -> bytes:
        return b"|END"

    def on_failure(self, kind: str) -> bytes:
        return b""


async def test_a_tap_sees_and_rewrites_the_stream_and_body_can_be_replaced(aiohttp_server: Any) -> None:
    from proxy_core import FORWARDER, Upstream

    upstream = await aiohttp_server(echo_app())
    target = Upstream.from_url(str(upstream.make_url("/")))
    tap = _Upper()

    async def handler(request: web.Request) -> web.StreamResponse:
        forwarder = request.app[FORWARDER]
        outgoing = forwarder.build(request, target, path="/rewritten?x=1")
        outgoing.body = b"replaced body"
        return await forwarder.send(request, outgoing, tap=tap)

    app = make_app([])
    app.router.add_post("/in", handler)
    async with run_proxy(app) as url, aiohttp.ClientSession() as session:
        async with session.post(url / "in", data=b"original") as resp:
            text = await resp.text()
            assert resp.headers["X-Tapped"] == "yes"
            # the upstream's answer came whole: the tapped result goes with its length, not chunked
            assert resp.headers["Content-Length"] == str(len(text.encode()))
            assert "Transfer-Encoding" not in resp.headers
    assert tap.status == 200
    assert text.endswith("|END")
    assert '"RAW_PATH":"/REWRITTEN?X=1"' in text
    assert '"BODY":"REPLACED BODY"' in text


class _LastWords:
    """A tap that ends a broken stream with a line of its own instead of a cut connection."""

    def __init__(self) -> None:
        self.failure = ""

    def on_head(self, status: int, headers: Any) -> None:
        pass

    def on_chunk(self, data: bytes) -> bytes:
        return data

    def on_end(self) -> bytes:
        return b""

    def on_failure(self, kind: str) -> bytes:
        self.failure = kind
        return b"|BROKEN:" + kind.encode()


async def test_a_tap_can_end_a_broken_stream_with_its_own_last_words(aiohttp_server: Any) -> None:
    from proxy_core import FORWARDER, Upstream

    async def half(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()  # chunked: only a missing last chunk tells the cut
        await resp.prepare(request)
        await resp.write(b"partial")
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        return resp

    upstream_app = web.Application()
    upstream_app.router.add_get("/", half)
    upstream = await aiohttp_server(upstream_app)
    target = Upstream.from_url(str(upstream.make_url("/")))
    tap = _LastWords()

    async def handler(request: web.Request) -> web.StreamResponse:
        forwarder = request.app[FORWARDER]
        return await forwarder.send(request, forwarder.build(request, target, path="/"), tap=tap)

    app = make_app([])
    app.router.add_get("/in", handler)
    async with run_proxy(app) as url, aiohttp.ClientSession() as session:
        async with session.get(url / "in") as resp:
            assert await resp.read() == b"partial|BROKEN:midstream"  # complete, no payload error
    assert tap.failure == "midstream"


async def test_shared_deadlines_time_out_only_what_is_due() -> None:
    from proxy_core._upstream import Deadlines

    class Conn:
        timed_out = False

        def time_out(self) -> None:
            self.timed_out = True

    deadlines = Deadlines(asyncio.get_running_loop())
    late, early, stopped = Conn(), Conn(), Conn()
    deadlines.arm(late, 0.3)  # type: ignore[arg-type]
    deadlines.arm(early, 0.05)  # type: ignore[arg-type]  (earlier than the armed timer: re-armed)
    deadlines.arm(stopped, 0.05)  # type: ignore[arg-type]
    deadlines.disarm(stopped)  # type: ignore[arg-type]
    await asyncio.sleep(0.15)
    assert early.timed_out and not late.timed_out and not stopped.timed_out
    await asyncio.sleep(0.3)
    assert late.timed_out
    deadlines.close()
