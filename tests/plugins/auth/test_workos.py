"""WorkOS AuthKit through the proxy, against the local stand-in (tests/standins/workos.py)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cryptography.fernet import Fernet
from yarl import URL

from plugins.auth.config import AuthConfig
from plugins.auth.keys import Keys
from plugins.auth.tokens import pkce_pair
from plugins.auth.users import Users
from proxy_core.testing import echo_app
from tests.standins.workos import API_KEY, CLIENT_ID, WorkOS, workos_app

from .kit import SECRET, browser, cookie, hidden, proxy, whoami


@pytest.fixture
async def upstream(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(echo_app())
    return server


@pytest.fixture
def workos() -> WorkOS:
    return WorkOS()


@pytest.fixture
async def idp(aiohttp_server: Any, workos: WorkOS) -> TestServer:
    server: TestServer = await aiohttp_server(workos_app(workos))
    return server


def options(idp: TestServer, **workos: Any) -> dict[str, Any]:
    return {
        "provider": "workos",
        "cookie_secret": SECRET,
        "session_cache_seconds": 0,
        "workos": {"client_id": CLIENT_ID, "api_key": API_KEY, "base_url": str(idp.make_url("/"))} | workos,
    }


async def sso(b: aiohttp.ClientSession, px: Any, next: str = "/") -> aiohttp.ClientResponse:
    """Click "Continue with SSO" and follow every redirect; returns the final answer."""
    async with b.get(px.at("/auth/sign-in"), params={"next": next}) as response:
        page = await response.text()
    assert "Continue with SSO" in page and 'type="email"' not in page
    href = page.split('class="button" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    async with b.get(px.at(href)) as response:
        await response.read()
        return response


async def test_the_whole_flow(upstream: TestServer, idp: TestServer, workos: WorkOS, db_url: str) -> None:
    workos.person("ann@example.com", name="Ann Lee")
    async with proxy(upstream, db_url, **options(idp)) as px, browser() as b:
        async with b.get(px.at("/ide/p1?x=1")) as response:  # a browser navigation → sign-in → back
            assert response.url.path == "/auth/sign-in"
        final = await sso(b, px, "/ide/p1?x=1")
        assert final.status == 200 and final.url.path_qs == "/ide/p1?x=1"
        assert [h.status for h in final.history] == [302, 302, 303]
        authorize = final.history[0].headers["Location"]
        query = URL(authorize).query
        assert query["code_challenge_method"] == "S256" and query["provider"] == "authkit"
        assert "code_verifier" not in authorize and query["redirect_uri"] == str(px.at("/auth/callback"))
        sent = workos.received[-1]
        assert sent["grant_type"] == "authorization_code" and sent["code_verifier"]
        me = await whoami(b, px)
        assert me is not None and me["email"] == "ann@example.com" and me["role"] == "member"
        user = await Users(px.auth.db).get_by_email("ann@example.com")
        assert user.name == "Ann Lee" and user.external_id == workos.people["ann@example.com"].id
        assert cookie(b, "auth_session_flow") is None  # the flow cookie is gone once used


async def test_sign_out_ends_the_workos_session(
    upstream: TestServer, idp: TestServer, workos: WorkOS, sqlite_url: str
) -> None:
    workos.person("ann@example.com")
    async with proxy(upstream, sqlite_url, **options(idp)) as px, browser() as b:
        await sso(b, px)
        me = await whoami(b, px)
        assert me is not None
        async with b.post(px.at("/auth/sign-out"), data={"csrf_token": me["csrf_token"]}) as response:
            assert response.url.path == "/auth/sign-in"
            logout = response.history[-1]
        assert logout.url.path == "/user_management/sessions/logout"
        assert logout.url.query["return_to"] == str(px.at("/auth/sign-in"))
        assert logout.url.query["session_id"] in workos.ended_sessions
        assert await whoami(b, px) is None


@pytest.mark.parametrize("state", ["forged", "missing", "mismatched", "replayed", "expired"])
async def test_bad_state_is_refused(
    upstream: TestServer, idp: TestServer, workos: WorkOS, sqlite_url: str, state: str
) -> None:
    workos.person("ann@example.com")
    async with proxy(upstream, sqlite_url, **options(idp)) as px, browser() as b:
        async with b.get(px.at("/auth/sso"), allow_redirects=False) as response:
            authorize = URL(response.headers["Location"])
        flow = cookie(b, "auth_session_flow")
        async with b.get(authorize, allow_redirects=False) as response:
            callback = URL(response.headers["Location"])
        if state == "forged":
            callback = callback.update_query(state="forged-state")
        elif state == "missing":
            callback = callback.without_query_params("state")
        elif state == "mismatched":  # another sign-in's callback (say, the attacker's) lands in this browser
            async with browser() as attacker:
                async with attacker.get(px.at("/auth/sso"), allow_redirects=False) as response:
                    theirs = URL(response.headers["Location"])
                async with attacker.get(theirs, allow_redirects=False) as response:
                    callback = URL(response.headers["Location"])
        elif state == "replayed":
            async with b.get(callback, allow_redirects=False) as response:
                assert response.status == 303
            b.cookie_jar.clear()
            b.cookie_jar.update_cookies({"auth_session_flow": flow}, px.url.with_path("/auth/"))
        elif state == "expired":
            data = json.loads(Fernet(Keys.from_secret(SECRET).cookie).decrypt(flow.encode()))  # type: ignore[union-attr]
            old = Fernet(Keys.from_secret(SECRET).cookie).encrypt_at_time(
                json.dumps(data).encode(), int(time.time()) - 700
            )
            b.cookie_jar.update_cookies({"auth_session_flow": old.decode()}, px.url.with_path("/auth/"))
        async with b.get(callback, allow_redirects=False) as response:
            assert response.status == 400, await response.text()
            assert "expired or was already used" in await response.text()
        assert await whoami(b, px) is None


async def test_wrong_pkce_verifier_is_refused(
    upstream: TestServer, idp: TestServer, workos: WorkOS, sqlite_url: str
) -> None:
    """The flow cookie is encrypted, so only someone with the key could swap the verifier: we do,
    to check that the stand-in (like WorkOS) and then the proxy refuse."""
    workos.person("ann@example.com")
    fernet = Fernet(Keys.from_secret(SECRET).cookie)
    async with proxy(upstream, sqlite_url, **options(idp)) as px, browser() as b:
        async with b.get(px.at("/auth/sso"), allow_redirects=False) as response:
            authorize = URL(response.headers["Location"])
        data = json.loads(fernet.decrypt((cookie(b, "auth_session_flow") or "").encode()))
        data["session"]["verifier"] = pkce_pair()[0]
        b.cookie_jar.update_cookies(
            {"auth_session_flow": fernet.encrypt(json.dumps(data).encode()).decode()},
            px.url.with_path("/auth/"),
        )
        async with b.get(authorize) as response:
            assert response.status == 400
            assert "code_verifier does not match" in await response.text()
        assert await whoami(b, px) is None


async def test_the_standin_rejects_what_workos_rejects(idp: TestServer, workos: WorkOS) -> None:
    workos.person("ann@example.com")
    verifier, challenge = pkce_pair()
    async with aiohttp.ClientSession() as client:

        async def code() -> str:
            query = {
                "client_id": CLIENT_ID,
                "response_type": "code",
                "redirect_uri": "http://x/cb",
                "state": "s",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "provider": "authkit",
            }
            async with client.get(
                idp.make_url("/user_management/authorize"), params=query, allow_redirects=False
            ) as r:
                return URL(r.headers["Location"]).query["code"]

        async def authenticate(**body: str) -> tuple[int, Any]:
            body = {
                "client_id": CLIENT_ID,
                "client_secret": API_KEY,
                "grant_type": "authorization_code",
            } | body
            async with client.post(idp.make_url("/user_management/authenticate"), json=body) as r:
                return r.status, await r.json()

        assert (await authenticate(code=await code()))[0] == 400  # missing verifier
        assert (await authenticate(code=await code(), code_verifier=pkce_pair()[0]))[0] == 400  # wrong one
        good = await code()
        status, answer = await authenticate(code=good, code_verifier=verifier)
        assert status == 200 and answer["user"]["email"] == "ann@example.com"
        assert (await authenticate(code=good, code_verifier=verifier))[0] == 400  # reused
        refreshed = await authenticate(grant_type="refresh_token", refresh_token=answer["refresh_token"])
        assert refreshed[0] == 200 and refreshed[1]["refresh_token"] != answer["refresh_token"]
        assert (await authenticate(grant_type="refresh_token", refresh_token=answer["refresh_token"]))[
            0
        ] == 400


@pytest.mark.parametrize("sign_with", ["foreign", "none"])
async def test_tokens_we_cannot_verify_are_refused(
    upstream: TestServer, idp: TestServer, workos: WorkOS, sqlite_url: str, sign_with: str
) -> None:
    workos.person("ann@example.com")
    workos.sign_with = sign_with
    async with proxy(upstream, sqlite_url, **options(idp)) as px, browser() as b:
        final = await sso(b, px)
        assert final.status == 401 and "token was not valid" in await final.text()
        assert await whoami(b, px) is None
        assert await Users(px.auth.db).list() == []


async def test_wrong_issuer_is_refused(
    upstream: TestServer, idp: TestServer, workos: WorkOS, sqlite_url: str
) -> None:
    workos.person("ann@example.com")
    async with (
        proxy(upstream, sqlite_url, **options(idp, issuer="https://auth.example.com/")) as px,
        browser() as b,
    ):
        assert (await sso(b, px)).status == 401


async def test_refresh_rotates_and_is_serialised(
    upstream: TestServer, idp: TestServer, workos: WorkOS, db_url: str
) -> None:
    workos.person("ann@example.com")
    workos.token_ttl = 30
    async with proxy(upstream, db_url, **options(idp, refresh_margin=60)) as px, browser() as b:
        await sso(b, px)
        before = len(workos.received)
        # every request finds the token due: concurrent requests must not race the rotating token
        results = await asyncio.gather(*(whoami(b, px) for _ in range(8)))
        assert all(r is not None for r in results)
        refreshes = [r for r in workos.received[before:] if r["grant_type"] == "refresh_token"]
        assert len(refreshes) >= 1
        assert len({r["refresh_token"] for r in refreshes}) == len(refreshes)  # each token used once
        session = (
            await px.auth.sessions.active((await Users(px.auth.db).get_by_email("ann@example.com")).id)
        )[0]
        assert session.data["refresh_token"] in workos.refresh_tokens  # the rotated one is stored


async def test_expired_token_with_revoked_refresh_token_ends_the_session(
    upstream: TestServer, idp: TestServer, workos: WorkOS, sqlite_url: str
) -> None:
    workos.person("ann@example.com")
    workos.token_ttl = 4  # room for sign-in and the first request on a loaded machine
    async with proxy(upstream, sqlite_url, **options(idp, refresh_margin=0, leeway=0)) as px, browser() as b:
        await sso(b, px)
        assert await whoami(b, px) is not None
        workos.revoke_refresh_tokens()
        await asyncio.sleep(4.1)
        async with b.get(px.at("/app"), allow_redirects=False) as response:
            assert response.status == 302 and response.headers["Location"].startswith("/auth/sign-in")
        assert await whoami(b, px) is None


async def test_idp_down(upstream: TestServer, aiohttp_server: Any, workos: WorkOS, sqlite_url: str) -> None:
    """Existing sessions keep working until their token expires; new sign-ins get a clear page."""
    workos.person("ann@example.com")
    workos.token_ttl = 2
    idp = await aiohttp_server(workos_app(workos))
    async with proxy(upstream, sqlite_url, **options(idp, refresh_margin=60, leeway=0)) as px, browser() as b:
        await sso(b, px)
        async with browser() as newcomer:
            async with newcomer.get(px.at("/auth/sso"), allow_redirects=False) as response:
                authorize = URL(response.headers["Location"])
            async with newcomer.get(authorize, allow_redirects=False) as response:
                callback = URL(response.headers["Location"])
            await idp.close()
            async with b.get(px.at("/app")) as response:
                assert response.status == 200  # the refresh fails, the token is still valid
            async with newcomer.get(callback) as response:  # the code exchange cannot happen
                assert response.status == 503 and "cannot be reached" in await response.text()
        await asyncio.sleep(2.1)
        async with b.get(px.at("/app")) as response:
            assert response.status == 503 and "cannot be reached" in await response.text()


async def test_organization_restriction_and_roles(
    upstream: TestServer, idp: TestServer, workos: WorkOS, sqlite_url: str
) -> None:
    opts = options(idp, organization_id="org_team")
    async with proxy(upstream, sqlite_url, **opts) as px:
        # the token names the role
        workos.person("ann@example.com", role="admin")
        async with browser() as b:
            await sso(b, px)
            assert (await whoami(b, px) or {})["role"] == "admin"
        # no role claim: the membership decides
        bob = workos.person("bob@example.com")
        workos.memberships[(bob.id, "org_team")] = "member"
        async with browser() as b:
            await sso(b, px)
            assert (await whoami(b, px) or {})["role"] == "member"
        # a token for another organization
        workos.person("cy@example.com", role="member")
        workos.organization_id = "org_other"
        async with browser() as b, b.get(px.at("/auth/sso"), allow_redirects=False) as response:
            authorize = URL(response.headers["Location"]).without_query_params("organization_id")
            async with b.get(authorize) as final:
                assert final.status == 403 and "not a member of this organization" in await final.text()


async def test_magic_auth(upstream: TestServer, idp: TestServer, workos: WorkOS, sqlite_url: str) -> None:
    async with proxy(upstream, sqlite_url, **options(idp, magic_auth=True)) as px, browser() as b:
        async with b.get(px.at("/auth/sign-in")) as response:
            page = await response.text()
        assert "Continue with SSO" in page and 'type="email"' in page
        form = {"email": "dee@example.com", "csrf_token": hidden(page, "csrf_token"), "next": "/"}
        async with b.post(px.at("/auth/code"), data=form) as response:
            code_page = await response.text()
        code = workos.magic_codes["dee@example.com"]
        async with b.post(
            px.at("/auth/code/verify"), data={"code": code, "csrf_token": hidden(code_page, "csrf_token")}
        ) as response:
            assert response.status == 200 and response.url.path == "/"
        assert workos.received[-1]["grant_type"] == "urn:workos:oauth:grant-type:magic-auth:code"
        assert (await whoami(b, px) or {})["email"] == "dee@example.com"


async def test_admin_revocation_reaches_workos(
    upstream: TestServer, idp: TestServer, workos: WorkOS, sqlite_url: str
) -> None:
    workos.person("ann@example.com")
    async with proxy(upstream, sqlite_url, **options(idp)) as px, browser() as b:
        await sso(b, px)
        ann = await Users(px.auth.db).get_by_email("ann@example.com")
        sid = (await px.auth.sessions.active(ann.id))[0].data["sid"]
        assert await px.auth.revoke_user(ann.id) == 1
        assert sid in workos.ended_sessions and await whoami(b, px) is None


def test_config_needs_secrets() -> None:
    with pytest.raises(ValueError, match="needs cookie_secret"):
        AuthConfig.model_validate({"provider": "workos", "workos": {"client_id": "c", "api_key": "k"}})
    with pytest.raises(ValueError, match="needs a \\[workos\\] table"):
        AuthConfig.model_validate({"provider": "workos", "cookie_secret": SECRET})
