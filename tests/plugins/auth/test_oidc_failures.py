"""The ``oidc`` provider against providers that misbehave: one that accepts connections and never
answers, one that goes down after its discovery document was cached, a userinfo response about someone
else, and id_tokens signed with a symmetric key or none at all."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, OKPKey, RSAKey

from plugins.auth.config import OIDCConfig
from plugins.auth.providers.base import SignInRefused
from plugins.auth.providers.http import JsonClient
from plugins.auth.providers.jwks import InvalidToken, JwksCache
from plugins.auth.providers.oidc import OIDCProvider, signing_algorithms
from proxy_core.testing import echo_app

from .kit import SECRET, browser, proxy


class RawProvider:
    """A TCP server on loopback that counts connections and, while ``answering``, serves a discovery
    document to any request; otherwise it reads the request and never answers."""

    def __init__(self) -> None:
        self.connections = 0
        self.answering = False
        self.issuer = ""
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.issuer = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self.issuer

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        if self.answering:
            body = json.dumps(
                {
                    "issuer": self.issuer,
                    "authorization_endpoint": f"{self.issuer}/authorize",
                    "token_endpoint": f"{self.issuer}/token",
                    "jwks_uri": f"{self.issuer}/jwks",
                }
            ).encode()
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
            await writer.drain()
            writer.close()

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


@pytest.fixture
async def raw_provider() -> AsyncIterator[RawProvider]:
    provider = RawProvider()
    await provider.start()
    yield provider
    await provider.stop()


@pytest.fixture
async def upstream(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(echo_app())
    return server


def options(issuer: str, **oidc: Any) -> dict[str, Any]:
    return {
        "provider": "oidc",
        "cookie_secret": SECRET,
        "oidc": {"issuer": issuer, "client_id": "shmastra", "timeout": 0.5, "health_timeout": 0.5} | oidc,
    }


async def test_concurrent_sign_ins_share_one_fetch_from_a_silent_provider(
    upstream: TestServer, raw_provider: RawProvider, sqlite_url: str
) -> None:
    async with proxy(upstream, sqlite_url, **options(raw_provider.issuer)) as px, browser() as b:

        async def start() -> tuple[int, str]:
            async with b.get(px.at("/auth/sso"), allow_redirects=False) as response:
                return response.status, await response.text()

        answers = await asyncio.gather(start(), start(), start())
        assert [status for status, _ in answers] == [503, 503, 503]
        assert all("cannot be reached" in page for _, page in answers)
        assert raw_provider.connections == 1  # one discovery fetch, shared; no lock queue


@pytest.mark.parametrize("failure", ["silent", "down"])
async def test_a_provider_that_fails_after_discovery_gets_our_page_not_a_redirect(
    upstream: TestServer, raw_provider: RawProvider, sqlite_url: str, failure: str
) -> None:
    raw_provider.answering = True
    async with proxy(upstream, sqlite_url, **options(raw_provider.issuer)) as px, browser() as b:
        async with b.get(px.at("/auth/sso"), allow_redirects=False) as response:
            assert response.status == 302
            assert response.headers["Location"].startswith(f"{raw_provider.issuer}/authorize?")
        if failure == "silent":
            raw_provider.answering = False
        else:
            await raw_provider.stop()
        async with b.get(px.at("/auth/sso"), allow_redirects=False) as response:
            assert response.status == 503 and "Location" not in response.headers
            page = await response.text()
            assert "cannot be reached" in page and 'href="/auth/sign-in"' in page


async def test_userinfo_about_someone_else_is_refused(aiohttp_server: Any) -> None:
    answer = {"sub": "eve", "email": "eve@example.com", "name": "Eve"}

    async def userinfo(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == "Bearer the-access-token"
        return web.json_response(answer)

    app = web.Application()
    app.router.add_get("/me", userinfo)
    server = await aiohttp_server(app)
    provider = OIDCProvider(OIDCConfig(issuer=str(server.make_url("/")), client_id="c"))
    metadata = {"userinfo_endpoint": str(server.make_url("/me"))}
    try:
        with pytest.raises(SignInRefused, match="belongs to someone else") as refused:
            await provider.with_userinfo({"sub": "alice"}, metadata, "the-access-token")
        assert refused.value.status == 401
        answer["sub"] = "alice"
        claims = await provider.with_userinfo({"sub": "alice", "name": "Alice"}, metadata, "the-access-token")
        assert claims == {"sub": "alice", "email": "eve@example.com", "name": "Alice"}  # the id_token wins
    finally:
        await provider.close()


def test_accepted_algorithms_are_the_asymmetric_ones_advertised() -> None:
    advertised = ["HS256", "none", "RS256", "Ed25519", "EdDSA", "ES256", "PS384", "HS512"]
    assert signing_algorithms(advertised) == ["RS256", "Ed25519", "EdDSA", "ES256", "PS384"]
    assert signing_algorithms(None) == ["RS256"] and signing_algorithms([]) == ["RS256"]


def _unsigned(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated via RFC 9864")
async def test_symmetric_and_unsigned_tokens_are_refused_even_when_advertised(aiohttp_server: Any) -> None:
    rsa, okp = RSAKey.generate_key(2048, private=True), OKPKey.generate_key("Ed25519", private=True)
    secret = OctKey.import_key("the-client-secret-the-client-secret")
    keys = KeySet([rsa, okp])

    async def jwks(request: web.Request) -> web.Response:
        return web.json_response(keys.as_dict(private=False))

    app = web.Application()
    app.router.add_get("/jwks", jwks)
    server = await aiohttp_server(app)
    client = JsonClient("provider", 5)
    url = str(server.make_url("/jwks"))

    async def where() -> str:
        return url

    cache = JwksCache(client, where, 3600)
    algorithms = signing_algorithms(["HS256", "none", "RS256", "Ed25519", "EdDSA"])
    claims = {"sub": {"essential": True, "value": "alice"}}
    payload = {"sub": "alice"}
    try:
        for alg, key in [("RS256", rsa), ("Ed25519", okp), ("EdDSA", okp)]:
            token = jwt.encode({"alg": alg, "kid": key.kid}, payload, key, algorithms=[alg])
            assert (await cache.verify(token, algorithms=algorithms, claims=claims, leeway=0))[
                "sub"
            ] == "alice"
        forged = jwt.encode({"alg": "HS256"}, payload, secret, algorithms=["HS256"])
        for token in [forged, _unsigned(payload)]:
            with pytest.raises(InvalidToken):
                await cache.verify(token, algorithms=algorithms, claims=claims, leeway=0)
    finally:
        await cache.close()
        await client.close()
