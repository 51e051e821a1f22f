"""Email codes under attack: nothing tells a known address from an unknown one (answers, statuses,
limits, stored work), and nobody can lock another person out by asking for codes to their address;
the limits are counted in the store, so every replica (and a restart) sees the same counts."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from proxy_core.testing import echo_app

from .kit import HTML, SECRET, Proxy, email_sign_in, enter_code, hidden, mailbox_code, proxy, whoami

TRUST_LOOPBACK = 'trusted_proxies = ["127.0.0.1/32"]'


@pytest.fixture
async def upstream(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(echo_app())
    return server


def options(tmp_path: Path, **email_code: Any) -> dict[str, Any]:
    return {
        "cookie_secret": SECRET,
        "email_code": {"delivery": "mailbox", "mailbox_dir": str(tmp_path / "mail"), **email_code},
        "admins": ["ann@example.com"],  # known; nobody else may sign in
    }


def browser_at(ip: str) -> aiohttp.ClientSession:
    """A browser behind the trusted loopback proxy, seen as coming from ``ip``."""
    return aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True), headers={**HTML, "X-Forwarded-For": ip}
    )


async def ask(b: aiohttp.ClientSession, px: Proxy, email: str) -> tuple[int, str]:
    async with b.get(px.at("/auth/sign-in")) as response:
        page = await response.text()
    form = {"email": email, "csrf_token": hidden(page, "csrf_token"), "next": "/"}
    async with b.post(px.at("/auth/code"), data=form) as response:
        return response.status, await response.text()


def neutral(page: str, email: str) -> str:
    """The page with what legitimately differs (the address typed, the form's token) blanked."""
    return re.sub(r'name="csrf_token" value="[^"]*"', "", page.replace(email, "ADDRESS"))


async def test_known_and_unknown_addresses_get_the_same_answers(
    upstream: TestServer, db_url: str, tmp_path: Path
) -> None:
    known, stranger = "ann@example.com", "zed@example.com"
    opts = options(tmp_path, sends_per_email=3, send_backoff=0, verifies_per_ip=3)
    seen: dict[str, list[tuple[int, str]]] = {}
    async with proxy(upstream, db_url, server=TRUST_LOOPBACK, **opts) as px:
        for email, ip in ((known, "192.0.2.1"), (stranger, "192.0.2.2")):
            async with browser_at(ip) as b:
                answers = [await ask(b, px, email) for _ in range(3)]
                form = {"code": "000000", "csrf_token": hidden(answers[-1][1], "csrf_token")}
                for _ in range(4):  # the fourth guess is over the limit
                    async with b.post(px.at("/auth/code/verify"), data=form) as response:
                        answers.append((response.status, await response.text()))
                answers.append(await ask(b, px, email))  # the fourth code is over the limit
                seen[email] = [(status, neutral(text, email)) for status, text in answers]
            # the same work was stored: a pending code and the three limits' counters
            assert await px.auth.db.fetchval("SELECT count(*) FROM login_codes WHERE email = $1", email) == 1
        assert await px.auth.db.fetchval("SELECT count(*) FROM rate_limits") == 6
    assert [status for status, _ in seen[known]] == [200, 200, 200, 400, 400, 400, 429, 429]
    assert "That code is not right. 4 attempts left." in seen[known][3][1]
    assert seen[known] == seen[stranger]
    assert not (tmp_path / "mail" / stranger).exists() and (tmp_path / "mail" / known).exists()


async def test_a_wrong_code_reads_the_same_for_a_stranger(
    upstream: TestServer, sqlite_url: str, tmp_path: Path
) -> None:
    for email, ip in (("ann@example.com", "192.0.2.1"), ("zed@example.com", "192.0.2.2")):
        async with (
            proxy(upstream, sqlite_url, server=TRUST_LOOPBACK, **options(tmp_path)) as px,
            browser_at(ip) as b,
        ):
            _, page = await ask(b, px, email)
            form = {"code": "000000", "csrf_token": hidden(page, "csrf_token")}
            async with b.post(px.at("/auth/code/verify"), data=form) as response:
                assert response.status == 400
                assert "That code is not right. 4 attempts left." in await response.text()


async def test_asking_for_codes_to_someone_elses_address_does_not_lock_them_out(
    upstream: TestServer, sqlite_url: str, tmp_path: Path
) -> None:
    opts = options(tmp_path, sends_per_email=2, send_backoff=30, sends_per_ip=50)
    async with proxy(upstream, sqlite_url, server=TRUST_LOOPBACK, **opts) as px:
        async with browser_at("203.0.113.66") as attacker:
            statuses = [(await ask(attacker, px, "ann@example.com"))[0] for _ in range(5)]
            assert statuses == [200, 200, 429, 429, 429]
        async with browser_at("198.51.100.7") as ann:
            await email_sign_in(ann, px, tmp_path / "mail", "ann@example.com")
            assert (await whoami(ann, px) or {})["email"] == "ann@example.com"


async def test_the_back_off_grows_and_is_said(upstream: TestServer, sqlite_url: str, tmp_path: Path) -> None:
    opts = options(tmp_path, sends_per_email=10, send_backoff=30)
    async with (
        proxy(upstream, sqlite_url, server=TRUST_LOOPBACK, **opts) as px,
        browser_at("192.0.2.9") as b,
    ):
        assert [(await ask(b, px, "ann@example.com"))[0] for _ in range(2)] == [200, 200]
        status, text = await ask(b, px, "ann@example.com")
        assert status == 429 and "Wait 30 seconds and try again." in text


@asynccontextmanager
async def two_replicas(
    upstream: TestServer, db_url: str, tmp_path: Path, **limits: Any
) -> AsyncIterator[list[Proxy]]:
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                proxy(upstream, db_url, server=TRUST_LOOPBACK, **options(tmp_path, **limits))
            )
            for _ in range(2)
        ]


async def test_replicas_count_sends_and_guesses_together(
    upstream: TestServer, db_url: str, tmp_path: Path
) -> None:
    async with (
        two_replicas(upstream, db_url, tmp_path, sends_per_ip=3, verifies_per_ip=2, send_backoff=0) as (
            one,
            two,
        ),
        browser_at("192.0.2.50") as b,
    ):
        assert [(await ask(b, px, f"user{n}@example.com"))[0] for n, px in enumerate((one, two, one))] == [
            200,
            200,
            200,
        ]
        assert (await ask(b, two, "user9@example.com"))[0] == 429  # the fourth send from this IP
    async with (
        two_replicas(upstream, db_url, tmp_path, verifies_per_ip=2) as (one, two),
        browser_at("192.0.2.51") as b,
    ):
        _, page = await ask(b, one, "ann@example.com")
        statuses = [(await enter_code(b, px, page, "000000")).status for px in (one, two, one)]
        assert statuses == [400, 400, 429]


async def test_codes_asked_from_elsewhere_neither_void_nor_use_up_the_victims_code(
    upstream: TestServer, sqlite_url: str, tmp_path: Path
) -> None:
    async with proxy(upstream, sqlite_url, server=TRUST_LOOPBACK, **options(tmp_path, max_attempts=2)) as px:
        async with browser_at("198.51.100.7") as ann, browser_at("203.0.113.66") as attacker:
            _, page = await ask(ann, px, "ann@example.com")
            code = mailbox_code(tmp_path / "mail", "ann@example.com")
            _, theirs = await ask(attacker, px, "ann@example.com")  # a new code, of the attacker's flow
            for _ in range(3):  # and guesses against it, until it is void
                assert (await enter_code(attacker, px, theirs, "000000")).status == 400
            response = await enter_code(ann, px, page, code)  # Ann's code is still hers, unspent
            assert response.status == 303
            assert (await whoami(ann, px) or {})["email"] == "ann@example.com"
