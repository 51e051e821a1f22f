"""The embedded default, driven through the proxy by a browser that keeps cookies."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from plugins.auth.users import Users
from proxy_core.testing import echo_app

from .kit import (
    SECRET,
    ask_code,
    browser,
    cookie,
    email_sign_in,
    enter_code,
    hidden,
    mailbox_code,
    proxy,
    whoami,
)


@pytest.fixture
async def upstream(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(echo_app())
    return server


def options(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cookie_secret": SECRET,
        "email_code": {"delivery": "mailbox", "mailbox_dir": str(tmp_path / "mail")},
        "allowed_domains": ["example.com"],
        "admins": ["boss@example.com"],
    }
    return base | extra


async def test_sign_in_with_an_emailed_code_and_come_back(
    upstream: TestServer, db_url: str, tmp_path: Path
) -> None:
    async with proxy(upstream, db_url, **options(tmp_path)) as px, browser() as b:
        async with b.get(px.at("/projects/1?tab=files")) as response:
            assert response.status == 200 and response.url.path == "/auth/sign-in"
            assert response.url.query["next"] == "/projects/1?tab=files"
            page = await response.text()
            assert 'type="email"' in page and "Continue with SSO" not in page
            assert '<label for="email">' in page and response.headers["Cache-Control"] == "no-store"
        location = await email_sign_in(b, px, tmp_path / "mail", "Ann@Example.com", "/projects/1?tab=files")
        assert location == "/projects/1?tab=files"
        me = await whoami(b, px)
        assert me is not None and me["email"] == "ann@example.com" and me["role"] == "member"
        async with b.get(px.at("/projects/1")) as response:
            assert response.status == 200 and (await response.json())["path"] == "/projects/1"
        session_cookie = next(m for m in b.cookie_jar if m.key == "auth_session")
        assert (
            session_cookie["httponly"]
            and session_cookie["samesite"] == "Lax"
            and session_cookie["path"] == "/"
        )
        assert not session_cookie[
            "secure"
        ]  # plain http here; Secure on https (test_cookies_are_secure_on_https)
        assert (mode := stat.S_IMODE(os.stat(tmp_path / "mail" / "ann@example.com").st_mode)) == 0o600, mode


async def test_admins_list_makes_admins_and_users_are_created_once(
    upstream: TestServer, db_url: str, tmp_path: Path
) -> None:
    async with proxy(upstream, db_url, **options(tmp_path)) as px:
        for _ in range(2):
            async with browser() as b:
                await email_sign_in(b, px, tmp_path / "mail", "boss@example.com")
                me = await whoami(b, px)
                assert me is not None and me["role"] == "admin"
        assert [u.email for u in await Users(px.auth.db).list()] == ["boss@example.com"]


async def test_unknown_addresses_get_no_code_and_cannot_sign_in(
    upstream: TestServer, sqlite_url: str, tmp_path: Path
) -> None:
    async with proxy(upstream, sqlite_url, **options(tmp_path, allowed_domains=[])) as px, browser() as b:
        page = await ask_code(b, px, "stranger@example.com")
        assert "may sign in here" in page  # the same answer: whether an address is known is not revealed
        assert not (tmp_path / "mail" / "stranger@example.com").exists()
        response = await enter_code(b, px, page, "123456")
        assert response.status == 400
        # an operator adds her: now she may
        await Users(px.auth.db).create("stranger@example.com")
        await email_sign_in(b, px, tmp_path / "mail", "stranger@example.com")
        assert (await whoami(b, px) or {})["email"] == "stranger@example.com"


async def test_disabled_users_are_refused_and_lose_their_sessions(
    upstream: TestServer, sqlite_url: str, tmp_path: Path
) -> None:
    async with (
        proxy(upstream, sqlite_url, **options(tmp_path, session_cache_seconds=0)) as px,
        browser() as b,
    ):
        await email_sign_in(b, px, tmp_path / "mail", "cy@example.com")
        users = Users(px.auth.db)
        cy = await users.get_by_email("cy@example.com")
        await users.set_disabled(cy.id, True)
        async with b.get(px.at("/anything")) as response:
            assert response.status == 403 and "disabled" in await response.text()
        async with browser() as other:
            page = await ask_code(other, px, "cy@example.com")
            response = await enter_code(other, px, page, "000000")
            assert response.status in (400, 403)


async def test_brute_force_of_a_code_voids_it(upstream: TestServer, sqlite_url: str, tmp_path: Path) -> None:
    opts = options(
        tmp_path, email_code={"delivery": "mailbox", "mailbox_dir": str(tmp_path / "mail"), "max_attempts": 3}
    )
    async with proxy(upstream, sqlite_url, **opts) as px, browser() as b:
        page = await ask_code(b, px, "dan@example.com")
        code = mailbox_code(tmp_path / "mail", "dan@example.com")
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        first = await enter_code(b, px, page, wrong)
        assert first.status == 400
        await enter_code(b, px, page, wrong)
        third = await enter_code(b, px, page, wrong)
        assert third.status == 400
        # the right code no longer works: it was voided by the third wrong guess
        late = await enter_code(b, px, page, code)
        assert late.status == 400 and cookie(b, "auth_session") is None


async def test_guesses_and_sends_are_rate_limited(
    upstream: TestServer, sqlite_url: str, tmp_path: Path
) -> None:
    limits = {
        "delivery": "mailbox",
        "mailbox_dir": str(tmp_path / "mail"),
        "verifies_per_ip": 4,
        "sends_per_email": 2,
    }
    async with proxy(upstream, sqlite_url, **options(tmp_path, email_code=limits)) as px, browser() as b:
        await ask_code(b, px, "eve@example.com")
        page = await ask_code(b, px, "eve@example.com")
        statuses = [(await enter_code(b, px, page, f"{n:06d}")).status for n in range(6)]
        assert statuses == [400, 400, 400, 400, 429, 429]  # per IP, whatever the code
        async with b.get(px.at("/auth/sign-in")) as response:
            form_page = await response.text()
        form = {"email": "eve@example.com", "csrf_token": hidden(form_page, "csrf_token"), "next": "/"}
        async with b.post(px.at("/auth/code"), data=form) as response:
            assert response.status == 429  # a third code for the same address within the window


async def test_pre_sign_in_forms_need_the_flow_csrf_token(
    upstream: TestServer, sqlite_url: str, tmp_path: Path
) -> None:
    async with proxy(upstream, sqlite_url, **options(tmp_path)) as px, browser() as b:
        # a cross-site form post: no flow cookie, no token
        async with b.post(
            px.at("/auth/code"), data={"email": "fay@example.com", "csrf_token": "x"}
        ) as response:
            assert response.status == 400 and "The form expired" in await response.text()
        assert not (tmp_path / "mail" / "fay@example.com").exists()


async def test_tampered_session_cookie_is_refused(
    upstream: TestServer, sqlite_url: str, tmp_path: Path
) -> None:
    async with proxy(upstream, sqlite_url, **options(tmp_path)) as px, browser() as b:
        await email_sign_in(b, px, tmp_path / "mail", "gus@example.com")
        value = cookie(b, "auth_session")
        assert value is not None
        flipped = value[:20] + ("A" if value[20] != "A" else "B") + value[21:]
        b.cookie_jar.update_cookies({"auth_session": flipped}, px.url)
        async with b.get(
            px.at("/app"), headers={"Accept": "application/json"}, allow_redirects=False
        ) as response:
            assert response.status == 401
            assert (await response.json())["error"]["message"] == "Sign in first."
            assert 'auth_session=""' in response.headers.get("Set-Cookie", "")


async def test_api_xhr_and_websocket_get_401_json(
    upstream: TestServer, sqlite_url: str, tmp_path: Path
) -> None:
    async with proxy(upstream, sqlite_url, **options(tmp_path)) as px, aiohttp.ClientSession() as client:
        cases: list[dict[str, str]] = [
            {"Accept": "application/json"},
            {"Accept": "text/html", "X-Requested-With": "XMLHttpRequest"},
            {"Accept": "text/html", "Sec-Fetch-Mode": "cors"},
            {"Accept": "text/html", "Upgrade": "websocket", "Connection": "Upgrade"},
        ]
        for headers in cases:
            async with client.get(px.at("/api/thing"), headers=headers, allow_redirects=False) as response:
                assert response.status == 401, headers
                assert response.content_type == "application/json"
        async with client.post(
            px.at("/page"), headers={"Accept": "text/html"}, allow_redirects=False
        ) as response:
            assert response.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(px.at("/socket"))
        assert refused.value.status == 401


async def test_public_paths_pass_and_tricks_do_not(
    upstream: TestServer, sqlite_url: str, tmp_path: Path
) -> None:
    opts = options(tmp_path, public_paths=["/robots.txt", "/static/*"])
    async with proxy(upstream, sqlite_url, **opts) as px, aiohttp.ClientSession() as client:
        for path in ("/robots.txt", "/static/app.css", "/healthz"):
            async with client.get(px.at(path)) as response:
                assert response.status == 200, path
        for raw in ("/static/../admin", "/static/%2e%2e/admin", "/static//admin", "/robots.txt/x"):
            async with client.get(URL(str(px.url) + raw, encoded=True), allow_redirects=False) as response:
                assert response.status == 401, raw


async def test_cookies_are_secure_on_https(upstream: TestServer, sqlite_url: str, tmp_path: Path) -> None:
    """Behind a trusted TLS-terminating proxy the cookies get Secure; a client's own claim does not count."""
    trusted = 'trusted_proxies = ["127.0.0.1/32"]'
    async with (
        proxy(upstream, sqlite_url, server=trusted, **options(tmp_path)) as px,
        aiohttp.ClientSession() as c,
    ):
        async with c.get(px.at("/auth/sign-in"), headers={"X-Forwarded-Proto": "https"}) as response:
            assert (
                "Secure" in response.headers["Set-Cookie"] and "Path=/auth" in response.headers["Set-Cookie"]
            )
    async with proxy(upstream, sqlite_url, **options(tmp_path)) as px, aiohttp.ClientSession() as c:
        async with c.get(px.at("/auth/sign-in"), headers={"X-Forwarded-Proto": "https"}) as response:
            assert "Secure" not in response.headers["Set-Cookie"]


async def test_an_address_with_path_separators_never_reaches_the_mailbox(
    upstream: TestServer, db_url: str, tmp_path: Path
) -> None:
    async with proxy(upstream, db_url, **options(tmp_path)) as px, browser() as b:
        for address in ("../../escape@example.com", "..\\escape@example.com", "a/b@example.com"):
            async with b.get(px.at("/auth/sign-in")) as response:
                page = await response.text()
            form = {"email": address, "csrf_token": hidden(page, "csrf_token"), "next": "/"}
            async with b.post(px.at("/auth/code"), data=form) as response:
                assert "Enter a valid email address." in await response.text()
    assert not (tmp_path / "escape@example.com").exists()
    assert not list(tmp_path.glob("**/*escape*"))


async def test_the_mailbox_refuses_names_that_leave_it(tmp_path: Path) -> None:
    from plugins.auth.mail import DeliveryFailed, MailboxMailer, code_mail

    mailer = MailboxMailer(tmp_path / "mail")
    with pytest.raises(DeliveryFailed):
        await mailer.send(code_mail("../outside@example.com", "123456", 10))
    assert not (tmp_path / "outside@example.com").exists()


async def test_the_sign_in_paths_are_routes_of_their_own(
    upstream: TestServer, sqlite_url: str, tmp_path: Path
) -> None:
    """Declared routes: answered by auth itself (never forwarded), HEAD like GET, a wrong method is
    405 with Allow, anything else under the prefix 404; paths outside it still need a session."""
    async with proxy(upstream, sqlite_url, **options(tmp_path)) as px, aiohttp.ClientSession() as c:
        async with c.head(px.at("/auth/sign-in")) as response:
            assert response.status == 200
        async with c.delete(px.at("/auth/sign-out"), headers={"Accept": "application/json"}) as response:
            assert (response.status, response.headers["Allow"]) == (405, "GET, HEAD, POST")
        async with c.put(px.at("/auth/code"), headers={"Accept": "application/json"}) as response:
            assert (response.status, response.headers["Allow"]) == (405, "POST")
        for path in ("/auth/elsewhere", "/auth", "/auth/sign-in/more"):
            async with c.get(px.at(path), headers={"Accept": "application/json"}) as response:
                assert response.status == 404, path
                assert "raw_path" not in await response.text()  # not the echo upstream's answer
        async with c.get(px.at("/authority"), headers={"Accept": "application/json"}) as response:
            assert response.status == 401  # not under the prefix: an ordinary path
