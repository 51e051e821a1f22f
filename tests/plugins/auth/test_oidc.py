"""Any OpenID Connect provider, against a real one running locally (oidc-provider-mock)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cryptography.fernet import Fernet
from oidc_provider_mock import User, run_server_in_thread

from plugins.auth.keys import Keys
from plugins.auth.users import Users
from proxy_core.testing import echo_app

from .kit import SECRET, browser, cookie, proxy, whoami

# oidc-provider-mock 0.3 drives a deprecated authlib hook; that is the provider's business, not ours
pytestmark = pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning")

PEOPLE = [
    User(
        sub="ann",
        claims={
            "email": "ann@example.com",
            "email_verified": True,
            "name": "Ann Lee",
            "groups": ["staff", "admins"],
        },
    ),
    User(sub="bob", claims={"email": "bob@example.com", "email_verified": True, "groups": ["staff"]}),
    User(sub="cy", claims={"email": "cy@example.com", "email_verified": False}),
]


@pytest.fixture
async def upstream(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(echo_app())
    return server


@pytest.fixture
def issuer() -> Iterator[str]:
    with run_server_in_thread(user_claims=PEOPLE) as server:
        yield f"http://localhost:{server.server_port}"


def options(issuer: str, **oidc: Any) -> dict[str, Any]:
    return {
        "provider": "oidc",
        "cookie_secret": SECRET,
        "oidc": {
            "issuer": issuer,
            "client_id": "shmastra-test",
            "client_secret": "not-checked-by-the-mock",
            "admin_claim": "groups",
            "admin_values": ["admins"],
        }
        | oidc,
    }


async def sign_in_as(b: aiohttp.ClientSession, px: Any, sub: str, next: str = "/") -> aiohttp.ClientResponse:
    """SSO: the provider's consent form, submitted for ``sub``; every redirect followed."""
    async with b.get(px.at("/auth/sso"), params={"next": next}) as response:
        assert response.status == 200 and "Authorize" in await response.text()
        authorize = response.url
    async with b.post(authorize, data={"sub": sub}) as response:
        await response.read()
        return response


async def test_the_whole_flow_with_admin_claim(upstream: TestServer, issuer: str, db_url: str) -> None:
    async with proxy(upstream, db_url, **options(issuer)) as px:
        async with browser() as b:
            async with b.get(px.at("/auth/sign-in")) as response:
                assert "Continue with SSO" in await response.text()
            final = await sign_in_as(b, px, "ann", "/work/1")
            assert final.status == 200 and final.url.path == "/work/1"
            authorize = final.history[0].url
            assert authorize.query["code_challenge_method"] == "S256" and authorize.query["nonce"]
            me = await whoami(b, px)
            assert me is not None and me["email"] == "ann@example.com" and me["role"] == "admin"
            assert cookie(b, "auth_session_flow") is None
        async with browser() as b:
            await sign_in_as(b, px, "bob")
            assert (await whoami(b, px) or {})["role"] == "member"
        ann = await Users(px.auth.db).get_by_email("ann@example.com")
        assert ann.external_id == "ann" and ann.name == "Ann Lee"
        bob = await Users(px.auth.db).get_by_email("bob@example.com")
        assert ann.last_sign_in_at is not None and bob.last_sign_in_at is not None  # SSO sign-ins too
        assert ann.last_sign_in_at < bob.last_sign_in_at


async def test_unverified_email_is_refused(upstream: TestServer, issuer: str, sqlite_url: str) -> None:
    async with proxy(upstream, sqlite_url, **options(issuer)) as px, browser() as b:
        final = await sign_in_as(b, px, "cy")
        assert final.status == 403 and "not verified" in await final.text()
        assert await whoami(b, px) is None


async def test_allowed_domains_apply_to_the_provider_too(
    upstream: TestServer, issuer: str, sqlite_url: str
) -> None:
    async with (
        proxy(upstream, sqlite_url, **options(issuer), allowed_domains=["corp.example"]) as px,
        browser() as b,
    ):
        final = await sign_in_as(b, px, "bob")
        assert final.status == 403 and "may not sign in here" in await final.text()
        assert await Users(px.auth.db).list() == []


async def test_a_nonce_that_does_not_match_is_refused(
    upstream: TestServer, issuer: str, sqlite_url: str
) -> None:
    fernet = Fernet(Keys.from_secret(SECRET).cookie)
    async with proxy(upstream, sqlite_url, **options(issuer)) as px, browser() as b:
        async with b.get(px.at("/auth/sso")) as response:
            authorize = response.url
        data = json.loads(fernet.decrypt((cookie(b, "auth_session_flow") or "").encode()))
        data["session"]["nonce"] = "another-nonce"
        b.cookie_jar.update_cookies(
            {"auth_session_flow": fernet.encrypt(json.dumps(data).encode()).decode()},
            px.url.with_path("/auth/"),
        )
        async with b.post(authorize, data={"sub": "ann"}) as response:
            assert response.status == 401 and "token was not valid" in await response.text()
        assert await whoami(b, px) is None


async def test_provider_down_gives_a_clear_page(upstream: TestServer, sqlite_url: str) -> None:
    with run_server_in_thread(user_claims=PEOPLE) as server:
        issuer = f"http://localhost:{server.server_port}"
    async with proxy(upstream, sqlite_url, **options(issuer)) as px, browser() as b:
        async with b.get(px.at("/auth/sso")) as response:
            assert response.status == 503
            page = await response.text()
            assert "cannot be reached" in page and 'href="/auth/sign-in"' in page
