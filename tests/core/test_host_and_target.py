"""A ``Host`` header cannot inject ``Forwarded`` elements (invalid hosts are refused with 400, as
nginx does, and every value is quoted per RFC 7239); absolute-form targets reach upstreams in
origin form."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import orjson
import pytest
from aiohttp import web

from proxy_core.headers import TrustedProxies, _forwarded_element, valid_host
from proxy_core.stages.upstream import UpstreamStage
from proxy_core.testing import echo_app, make_app, run_proxy, stage


async def _raw(port: int, head: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    data = await reader.read()
    writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


@pytest.fixture
async def proxy_port(aiohttp_server: Any) -> Any:
    upstream = await aiohttp_server(echo_app())
    app = make_app(
        [stage(UpstreamStage, url=str(upstream.make_url("/")), preserve_host=True)],
        '[server]\naccess_log = false\ntrusted_proxies = ["10.0.0.0/8"]\n',
    )
    async with run_proxy(app) as url:
        yield url.port


@pytest.mark.parametrize(
    "host",
    [
        'a", for=6.6.6.6;by="x',
        "a;for=6.6.6.6",
        "a,for=6.6.6.6",
        'a"',
        "a b",
        "a\\b",
        "a/b",
        "a@b",
        "[::1",
        "a:99999999",
    ],
)
async def test_an_invalid_host_is_refused_with_400(proxy_port: int, host: str) -> None:
    head = f"GET /x HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    status, body = await _raw(proxy_port, head.encode())
    assert status == 400
    assert b"6.6.6.6" not in body and b"echo" not in body


@pytest.mark.parametrize(
    "host",
    ["cloud.example", "cloud.example:8443", "127.0.0.1:8080", "[::1]:8080", "[2001:db8::1]", "my_host"],
)
async def test_valid_hosts_pass_and_make_one_forwarded_element(proxy_port: int, host: str) -> None:
    head = f"GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    status, body = await _raw(proxy_port, head.encode())
    assert status == 200
    headers = orjson.loads(body)["headers"]
    assert headers["Forwarded"] == f'for=127.0.0.1;proto=http;host="{host}"'
    assert headers["Host"] == host  # preserve_host sends the client's Host header itself


async def test_absolute_form_reaches_the_upstream_in_origin_form(proxy_port: int) -> None:
    head = b"GET http://cloud.example/x/y?q=1 HTTP/1.1\r\nHost: cloud.example\r\nConnection: close\r\n\r\n"
    status, body = await _raw(proxy_port, head)
    assert status == 200
    seen = orjson.loads(body)
    assert seen["raw_path"] == "/x/y?q=1"
    assert seen["headers"]["Host"] == "cloud.example"


async def test_absolute_form_naming_another_host_is_refused(proxy_port: int) -> None:
    head = b"GET http://evil.example/x HTTP/1.1\r\nHost: cloud.example\r\nConnection: close\r\n\r\n"
    status, body = await _raw(proxy_port, head)
    assert status == 400
    assert b"evil.example" not in body


def test_forwarded_values_are_quoted_per_rfc_7239() -> None:
    # the last line of defence when a trusted proxy hands on odd values
    element = _forwarded_element("1.2.3.4", 'ht"tp', 'a", for=6.6.6.6;by="x')
    assert element == 'for=1.2.3.4;proto="ht\\"tp";host="a\\", for=6.6.6.6;by=\\"x"'
    assert _forwarded_element("::1", "http", "") == 'for="[::1]";proto=http'


async def test_an_invalid_forwarded_host_from_a_trusted_proxy_is_ignored(aiohttp_client: Any) -> None:
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(TrustedProxies([ipaddress.ip_network("127.0.0.0/8")]).resolve(request).forwarded)
        return web.Response()

    app = web.Application()
    app.router.add_get("/", record)
    client = await aiohttp_client(app)
    await client.get("/", headers={"Host": "cloud.example", "X-Forwarded-Host": 'x", for=6.6.6.6'})
    assert seen == ['for=127.0.0.1;proto=http;host="cloud.example"']


def test_valid_host_rules() -> None:
    assert valid_host("a.b-c_d:80") and valid_host("[fe80::1]")
    assert not valid_host("") and not valid_host("a b") and not valid_host("a%2Fb")


async def test_two_host_headers_are_refused(proxy_port: int) -> None:
    head = b"GET /x HTTP/1.1\r\nHost: cloud.example\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    status, body = await _raw(proxy_port, head)
    assert status == 400
    assert b"evil.example" not in body
