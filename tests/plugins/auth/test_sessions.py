"""Session security through the proxy: identity headers, sign-out CSRF, fixation, revocation,
lifetimes, open redirects, the generated cookie secret."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from plugins.auth.keys import SECRET_FILE
from plugins.auth.redirects import safe_next
from plugins.auth.sessions import Sessions, session_id
from plugins.auth.users import Users
from proxy_core.db import Database
from proxy_core.testing import echo_app

from .kit import SECRET, ask_code, browser, cookie, email_sign_in, enter_code, mailbox_code, proxy, whoami


@pytest.fixture
async def upstream(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(echo_app())
    return server


def options(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "cookie_secret": SECRET,
        # many sign-ins of one address from one IP: no back-off between the codes
        "email_code": {"delivery": "mailbox", "mailbox_dir": str(tmp_path / "mail"), "send_backoff": 0},
        "allowed_domains": ["example.com"],
        "public_paths": ["/public/*"],
    } | extra


async def test_client_identity_headers_are_stripped(
    upstream: TestServer, sqlite_url: str, tmp_path: Path
) -> None:
    forged = {
        "X-Auth-Email": "boss@example.com",
        "X-Auth-Role": "admin",
        "X-Forwarded-User": "boss",
        "X-Forwarded-Email": "boss@example.com",
        "Remote-User": "boss",
        "X-User-Id": "1",
        "Accept": "application/json",
    }
    async with proxy(upstream, sqlite_url, **options(tmp_path)) as px, browser() as b:
        async with b.get(px.at("/public/x"), headers=forged) as response:  # public paths too
            seen = {k.lower() for k in (await response.json())["headers"]}
        await email_sign_in(b, px, tmp_path / "mail", "ann@example.com")
        async with b.get(px.at("/app"), headers=forged) as response:
            assert response.status == 200
            seen |= {k.lower() for k in (await response.json())["headers"]}
        assert "accept" in seen
        assert not seen & {k.lower() for k in forged if k != "Accept"}


async def test_sign_out_needs_post_and_the_session_csrf_token(
    upstream: TestServer, sqlite_url: str, tmp_path: Path
) -> None:
    async with proxy(upstream, sqlite_url, **options(tmp_path, session_cache_seconds=0)) as px:
        async with browser() as b, browser() as other:
            await email_sign_in(b, px, tmp_path / "mail", "ann@example.com")
            await email_sign_in(other, px, tmp_path / "mail", "bob@example.com")
            mine = await whoami(b, px)
            theirs = await whoami(other, px)
            assert mine is not None and theirs is not None
            # GET shows a confirmation form, it does not sign out
            async with b.get(px.at("/auth/sign-out")) as response:
                assert response.status == 200 and f'value="{mine["csrf_token"]}"' in await response.text()
            # a cross-site POST: no token, or another session's token
            for data in ({}, {"csrf_token": "nope"}, {"csrf_token": theirs["csrf_token"]}):
                async with b.post(px.at("/auth/sign-out"), data=data, allow_redirects=False) as response:
                    assert response.status == 403, data
            assert await whoami(b, px) is not None
            async with b.post(
                px.at("/auth/sign-out"), data={"csrf_token": mine["csrf_token"]}, allow_redirects=False
            ) as response:
                assert response.status == 303 and response.headers["Location"] == "/auth/sign-in"
            assert await whoami(b, px) is None
            assert await whoami(other, px) is not None


async def test_a_new_session_id_after_sign_in(upstream: TestServer, sqlite_url: str, tmp_path: Path) -> None:
    async with proxy(upstream, sqlite_url, **options(tmp_path, session_cache_seconds=0)) as px:
        async with browser() as attacker, browser() as victim:
            await email_sign_in(attacker, px, tmp_path / "mail", "mallory@example.com")
            planted = cookie(attacker, "auth_session")
            assert planted is not None
            # the victim starts signing in; meanwhile the attacker plants a session cookie they know
            page = await ask_code(victim, px, "ann@example.com")
            victim.cookie_jar.update_cookies({"auth_session": planted}, px.url)
            response = await enter_code(victim, px, page, mailbox_code(tmp_path / "mail", "ann@example.com"))
            assert response.status == 303
            assert cookie(victim, "auth_session") != planted
            assert (await whoami(victim, px) or {})["email"] == "ann@example.com"
            # the planted session was replaced and revoked: the attacker learns nothing of Ann's
            assert await whoami(attacker, px) is None


async def test_an_admin_revokes_every_session_of_a_user(
    upstream: TestServer, db_url: str, tmp_path: Path
) -> None:
    async with proxy(upstream, db_url, **options(tmp_path)) as px:
        async with browser() as laptop, browser() as phone, browser() as bystander:
            for b in (laptop, phone):
                await email_sign_in(b, px, tmp_path / "mail", "ann@example.com")
            await email_sign_in(bystander, px, tmp_path / "mail", "bob@example.com")
            ann = await Users(px.auth.db).get_by_email("ann@example.com")
            assert len(await px.auth.sessions.active(ann.id)) == 2
            assert await px.auth.revoke_user(ann.id) == 2
            assert await whoami(laptop, px) is None and await whoami(phone, px) is None
            assert await whoami(bystander, px) is not None


async def test_revocation_and_disabling_reach_a_session_answered_from_the_caches(
    upstream: TestServer, db_url: str, tmp_path: Path
) -> None:
    # a long cache: the second and later requests of a browser are answered from the per-process
    # caches (cookie header -> session -> identity); ending the session or disabling the user still
    # takes effect at once in this process
    async with proxy(upstream, db_url, **options(tmp_path, session_cache_seconds=60)) as px:
        async with browser() as laptop, browser() as phone:
            for b in (laptop, phone):
                await email_sign_in(b, px, tmp_path / "mail", "ann@example.com")
                for _ in range(3):
                    assert (await whoami(b, px) or {})["email"] == "ann@example.com"
            ann = await Users(px.auth.db).get_by_email("ann@example.com")
            sid = next(s.id for s in await px.auth.sessions.active(ann.id))
            await px.auth.resolver.end(sid)
            ended, kept = (laptop, phone) if await whoami(laptop, px) is None else (phone, laptop)
            assert await whoami(ended, px) is None
            assert await whoami(kept, px) is not None
            await px.auth.directory.set_disabled(ann.id, True)
            async with kept.get(px.at("/whoami"), headers={"Accept": "application/json"}) as response:
                assert response.status in (401, 403)


async def test_idle_timeout_and_lifetime(upstream: TestServer, db_url: str, tmp_path: Path) -> None:
    # seconds apart enough that a loaded machine's slow request never decides the outcome
    opts = options(tmp_path, idle_timeout=2.4, session_lifetime=6, session_cache_seconds=0)
    async with proxy(upstream, db_url, **opts) as px, browser() as b:
        await email_sign_in(b, px, tmp_path / "mail", "ann@example.com")
        for _ in range(4):  # visits keep it alive past the idle timeout...
            await asyncio.sleep(1.2)
            assert await whoami(b, px) is not None
        await asyncio.sleep(1.6)  # ...but not past its lifetime
        assert await whoami(b, px) is None
        await email_sign_in(b, px, tmp_path / "mail", "ann@example.com")
        await asyncio.sleep(3.2)  # idle too long
        assert await whoami(b, px) is None


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "https://evil.example",
        "http:evil.example",
        "javascript:alert(1)",
        "%2F%2Fevil.example",
        "/%2F/evil.example",
        "/%5Cevil.example",
        "/%252F%252Fevil.example",
        "%252F%252Fevil.example",
        "/\t/evil.example",
        "/%09/evil.example",
        "/%0d%0aLocation:%20https://evil.example",
        "evil.example",
        "",
        "/auth/sign-in?next=//evil.example",
    ],
)
def test_open_redirects_are_refused(target: str) -> None:
    assert safe_next(target, "/auth") == "/"


@pytest.mark.parametrize("target", ["/", "/projects/1?tab=files", "/a%20b#x", "/search?q=%2F%2Fnot-a-host"])
def test_same_site_paths_are_kept(target: str) -> None:
    assert safe_next(target, "/auth") == target


async def test_open_redirect_through_the_flow(upstream: TestServer, sqlite_url: str, tmp_path: Path) -> None:
    async with proxy(upstream, sqlite_url, **options(tmp_path)) as px:
        for target in ("//evil.example/x", "/\\evil.example", "https://evil.example", "%2F%2Fevil.example"):
            async with browser() as b:
                assert await email_sign_in(b, px, tmp_path / "mail", "ann@example.com", target) == "/"


async def test_generated_cookie_secret_is_kept_private_and_reused(
    upstream: TestServer, sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    opts = options(tmp_path, data_dir=str(tmp_path / "data"))
    del opts["cookie_secret"]
    with caplog.at_level(logging.WARNING, "plugins.auth.keys"):
        async with proxy(upstream, sqlite_url, **opts) as px, browser() as b:
            await email_sign_in(b, px, tmp_path / "mail", "ann@example.com")
            kept = b.cookie_jar.filter_cookies(px.url)
    secret_file = tmp_path / "data" / SECRET_FILE
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    assert any("generated one" in r.getMessage() for r in caplog.records)
    assert secret_file.read_text().strip() not in caplog.text
    # a restart reads the same secret: the session survives
    async with proxy(upstream, sqlite_url, **opts) as px, browser() as b:
        b.cookie_jar.update_cookies(kept, px.url)
        assert (await whoami(b, px) or {})["email"] == "ann@example.com"


async def test_store_down_means_503_not_a_crash(upstream: TestServer, tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:1/nowhere"
    async with proxy(upstream, url, **options(tmp_path)) as px, aiohttp.ClientSession() as client:
        client.cookie_jar.update_cookies({"auth_session": "x"}, px.url)
        async with client.get(px.at("/app"), headers={"Accept": "application/json"}) as response:
            assert response.status == 401  # an undecryptable cookie never reaches the store
        async with client.get(px.at("/auth/sign-in"), headers={"Accept": "text/html"}) as response:
            assert response.status == 200


async def test_every_sign_in_records_its_time_with_its_session(
    upstream: TestServer, db_url: str, tmp_path: Path
) -> None:
    async with proxy(upstream, db_url, **options(tmp_path)) as px:
        users = Users(px.auth.db)
        bob = await users.create("bob@example.com")
        assert bob.last_sign_in_at is None  # added, never signed in
        starts = []
        for _ in range(2):
            async with browser() as b:
                await email_sign_in(b, px, tmp_path / "mail", "ann@example.com")
                ann = await users.get_by_email("ann@example.com")
                newest = (await px.auth.sessions.active(ann.id))[0]
                assert ann.last_sign_in_at == newest.created_at  # written with the session
                starts.append(newest.created_at)
        assert starts[0] < starts[1]
        assert (await users.get(bob.id)).last_sign_in_at is None


async def test_sessions_repository(db: Database) -> None:
    users = Users(db)
    ann = await users.create("ann@example.com")
    sessions = Sessions(db, lifetime=60, idle=30)
    token = await sessions.create(ann.id, {"provider": "email_code"})
    sid = session_id(token)
    found = await sessions.get(sid)
    assert found is not None and found.email == "ann@example.com" and found.data == {"provider": "email_code"}
    assert await db.fetchval("SELECT count(*) FROM sessions WHERE id = $1", token) == 0  # only the hash
    await sessions.set_data(sid, {"x": 1})
    assert (await sessions.get(sid) or found).data == {"x": 1}
    assert await sessions.revoke(sid) and not await sessions.revoke(sid)
    assert await sessions.get(sid) is None


async def test_concurrent_requests_of_a_session_share_one_store_read(
    upstream: TestServer, sqlite_url: str, tmp_path: Path
) -> None:
    async with (
        proxy(upstream, sqlite_url, **options(tmp_path, session_cache_seconds=30)) as px,
        browser() as b,
    ):
        await email_sign_in(b, px, tmp_path / "mail", "ann@example.com")
        sessions = px.auth.sessions
        reads: list[str] = []
        read = sessions.get

        async def counted(sid: str) -> Any:  # a slow store: the other requests arrive meanwhile
            reads.append(sid)
            await asyncio.sleep(0.2)
            return await read(sid)

        sessions.get = counted  # type: ignore[method-assign]
        ann = await px.auth.directory.find_by_email("ann@example.com")
        assert ann is not None
        await px.auth.directory.set_role(ann.id, "admin")  # a user change drops her cached sessions
        found = await asyncio.gather(*(whoami(b, px) for _ in range(20)))
        assert [(f or {}).get("role") for f in found] == ["admin"] * 20
        assert len(reads) == 1
        await px.auth.directory.set_disabled(ann.id, True)  # her sessions end: the same Cookie header fails
        async with b.get(px.at("/whoami"), headers={"Accept": "application/json"}) as response:
            assert response.status == 401
