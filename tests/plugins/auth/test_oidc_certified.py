"""Sign-in against panva's ``oidc-provider`` (OpenID Certified) with its default settings: email and name
only in the userinfo response, ``iss`` on the authorization response (RFC 9207), RP-initiated logout.
The browser is an aiohttp session that posts the provider's dev login and consent forms."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from plugins.auth import IdentityLinks
from plugins.auth.users import Users
from proxy_core.testing import echo_app
from tests.standins import oidc_provider

from .kit import SECRET, Proxy, browser, cookie, proxy, whoami

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:EdDSA is deprecated via RFC 9864")]

ACCOUNTS = {
    "alice": {"email": "alice@example.com", "email_verified": True, "name": "Alice Liddell"},
    # claims alice's address, verified by this provider: still not alice once alice is linked
    "alice-again": {"email": "alice@example.com", "email_verified": True},
    # says nothing about verification
    "erin-unverified": {"email": "erin@example.com"},
    "erin": {"email": "erin@example.com", "email_verified": True, "name": "Erin"},
    "frank": {"email": "frank@example.com", "email_verified": False},
    "gina": {"email": "gina@example.com", "email_verified": "false"},  # a string, as some providers send
}


@pytest.fixture(scope="module")
def issuer(oidc_provider_folder: Path) -> Iterator[str]:
    with oidc_provider.running(oidc_provider_folder, ACCOUNTS) as url:
        yield url


@pytest.fixture
async def upstream(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(echo_app())
    return server


def options(issuer: str, **oidc: Any) -> dict[str, Any]:
    return {
        "provider": "oidc",
        "cookie_secret": SECRET,
        "oidc": {"issuer": issuer, "client_id": "shmastra", "client_secret": oidc_provider.CLIENT_SECRET}
        | oidc,
    }


def form(page: str) -> tuple[URL, dict[str, str]]:
    """The page's first form: where it posts, and its hidden fields."""
    match = re.search(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', page, re.S)
    assert match, page[-2000:]
    fields = dict(re.findall(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', match[2]))
    return URL(match[1]), fields


async def to_callback(b: aiohttp.ClientSession, px: Proxy, login: str, next: str = "/") -> URL:
    """Start SSO at the proxy and go through the provider's login and consent as ``login``; the
    callback URL the provider sends the browser to, not yet visited."""
    url, data = px.at("/auth/sso").with_query(next=next), None
    for _ in range(10):
        async with b.request("POST" if data else "GET", url, data=data, allow_redirects=False) as response:
            page = await response.text()
            if response.status in (302, 303):
                url, data = response.url.join(URL(response.headers["Location"])), None
                if url.port == px.url.port and url.path == "/auth/callback":
                    return url
                continue
            assert response.status == 200, page
            url, data = form(page)
            if data.get("prompt") == "login":
                data |= {"login": login, "password": "any"}
    raise AssertionError("the provider never sent the browser back")


async def sign_in_as(
    b: aiohttp.ClientSession, px: Proxy, login: str, next: str = "/"
) -> aiohttp.ClientResponse:
    async with b.get(await to_callback(b, px, login, next)) as response:
        await response.read()
        return response


def payload(jwt: str) -> dict[str, Any]:
    part = jwt.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


@pytest.mark.parametrize("client_id", oidc_provider.CLIENTS)
async def test_sign_in_with_default_settings_takes_the_profile_from_userinfo(
    upstream: TestServer, issuer: str, sqlite_url: str, client_id: str
) -> None:
    """RS256, the fully-specified Ed25519 and EdDSA id_tokens; email and name come from userinfo."""
    async with proxy(upstream, sqlite_url, **options(issuer, client_id=client_id)) as px, browser() as b:
        callback = await to_callback(b, px, "alice", "/work/1")
        assert callback.query["iss"] == issuer  # RFC 9207: the provider says who answers
        async with b.get(callback) as final:
            assert final.status == 200 and final.url.path == "/work/1", await final.text()
        me = await whoami(b, px)
        assert me is not None and me["email"] == "alice@example.com"
        alice = await Users(px.auth.db).get_by_email("alice@example.com")
        assert alice.external_id == "alice" and alice.name == "Alice Liddell"
        [session] = await px.auth.sessions.active(alice.id)
        id_token = session.data["id_token"]
        assert "email" not in payload(id_token)  # the provider's default: the profile is not in it
        expected = {"shmastra": "RS256", "shmastra-ed25519": "Ed25519", "shmastra-eddsa": "EdDSA"}[client_id]
        assert json.loads(base64.urlsafe_b64decode(id_token.split(".")[0] + "==="))["alg"] == expected
        [link] = await IdentityLinks(px.auth.db).list(alice.id)
        assert (link.provider, link.subject, link.how) == ("oidc", "alice", "created")


@pytest.mark.parametrize("login", ["frank", "gina"])
async def test_an_unverified_address_is_refused(
    upstream: TestServer, issuer: str, sqlite_url: str, login: str
) -> None:
    async with proxy(upstream, sqlite_url, **options(issuer)) as px, browser() as b:
        final = await sign_in_as(b, px, login)
        assert final.status == 403 and "not verified" in await final.text()
        assert await whoami(b, px) is None and await Users(px.auth.db).list() == []


async def test_another_subject_with_a_linked_address_never_takes_the_account_over(
    upstream: TestServer, issuer: str, db_url: str
) -> None:
    async with proxy(upstream, db_url, **options(issuer)) as px:
        async with browser() as b:
            await sign_in_as(b, px, "alice")
        async with browser() as b:
            final = await sign_in_as(b, px, "alice-again")
            assert final.status == 403 and "different identity" in await final.text()
            assert await whoami(b, px) is None
        alice = await Users(px.auth.db).get_by_email("alice@example.com")
        assert alice.external_id == "alice"
        assert [link.subject for link in await IdentityLinks(px.auth.db).list()] == ["alice"]


async def test_an_added_user_is_linked_only_by_a_verified_address(
    upstream: TestServer, issuer: str, db_url: str
) -> None:
    async with proxy(upstream, db_url, **options(issuer)) as px:
        added = await Users(px.auth.db).create("erin@example.com")
        async with browser() as b:
            final = await sign_in_as(b, px, "erin-unverified")
            assert final.status == 403 and "has not confirmed" in await final.text()
        assert (await Users(px.auth.db).get(added.id)).external_id is None
        async with browser() as b:
            final = await sign_in_as(b, px, "erin")
            assert final.status == 200
            assert (await whoami(b, px) or {})["user_id"] == str(added.id)
        [link] = await IdentityLinks(px.auth.db).list(added.id)
        assert (link.subject, link.how, link.email) == ("erin", "email", "erin@example.com")


async def test_an_issuer_that_verifies_every_address_may_link_without_the_claim(
    upstream: TestServer, issuer: str, sqlite_url: str
) -> None:
    async with proxy(upstream, sqlite_url, **options(issuer, emails_verified=True)) as px, browser() as b:
        added = await Users(px.auth.db).create("erin@example.com")
        assert (await sign_in_as(b, px, "erin-unverified")).status == 200
        assert (await Users(px.auth.db).get(added.id)).external_id == "erin-unverified"


async def test_sign_out_ends_the_providers_session_too(
    upstream: TestServer, issuer: str, sqlite_url: str
) -> None:
    async with proxy(upstream, sqlite_url, **options(issuer)) as px, browser() as b:
        await sign_in_as(b, px, "alice")
        me = await whoami(b, px)
        assert me is not None
        async with b.post(
            px.at("/auth/sign-out"), data={"csrf_token": me["csrf_token"]}, allow_redirects=False
        ) as response:
            assert response.status == 303
            logout = URL(response.headers["Location"])
        assert str(logout.with_query(None)) == f"{issuer}/session/end"
        assert logout.query["post_logout_redirect_uri"] == str(px.at("/auth/sign-in"))
        assert payload(logout.query["id_token_hint"])["sub"] == "alice"
        async with b.get(logout) as response:  # the provider asks to confirm
            action, fields = form(await response.text())
        async with b.post(action, data=fields | {"logout": "yes"}) as response:
            assert response.status == 200 and response.url.path == "/auth/sign-in"
        assert await whoami(b, px) is None
        # "Continue with SSO" now asks who is signing in instead of signing alice straight back in
        async with b.get(px.at("/auth/sso")) as response:
            _, fields = form(await response.text())
            assert fields.get("prompt") == "login"


async def test_logout_at_the_provider_can_be_turned_off(
    upstream: TestServer, issuer: str, sqlite_url: str
) -> None:
    async with proxy(upstream, sqlite_url, **options(issuer, logout=False)) as px, browser() as b:
        await sign_in_as(b, px, "alice")
        me = await whoami(b, px)
        assert me is not None
        async with b.post(
            px.at("/auth/sign-out"), data={"csrf_token": me["csrf_token"]}, allow_redirects=False
        ) as response:
            assert response.status == 303 and response.headers["Location"] == "/auth/sign-in"


@pytest.mark.parametrize("iss", ["http://127.0.0.1:1", None])
async def test_a_response_naming_another_issuer_or_none_is_refused(
    upstream: TestServer, issuer: str, sqlite_url: str, iss: str | None
) -> None:
    """RFC 9207: the provider advertises ``iss``, so a response without it is refused too."""
    async with proxy(upstream, sqlite_url, **options(issuer)) as px, browser() as b:
        callback = await to_callback(b, px, "alice")
        query = {k: v for k, v in callback.query.items() if k != "iss"} | ({"iss": iss} if iss else {})
        async with b.get(callback.with_query(query)) as response:
            page = await response.text()
            assert response.status == 400 and "provider" in page
        assert await whoami(b, px) is None and await Users(px.auth.db).list() == []


async def test_a_callback_replayed_at_another_worker_is_refused(
    upstream: TestServer, issuer: str, db_url: str
) -> None:
    """Two proxies on one store are two workers (or replicas): the state is used once across both."""
    async with (
        proxy(upstream, db_url, **options(issuer)) as first,
        proxy(upstream, db_url, **options(issuer)) as second,
        browser() as b,
    ):
        callback = await to_callback(b, first, "alice")
        flow = cookie(b, "auth_session_flow")
        assert flow is not None
        async with b.get(callback) as response:
            assert response.status == 200
        b.cookie_jar.update_cookies({"auth_session_flow": flow}, second.url.with_path("/auth/"))
        async with b.get(second.at("/auth/callback").with_query(callback.query)) as response:
            assert response.status == 400 and "already used" in await response.text()
