"""Pending email codes live in the store: any worker or replica verifies a code another one sent, a
code signs in once however many verify it at once, and wrong guesses are counted globally.

"Two instances" below are two providers, each on its own :class:`Database` (its own connection or
pool) over one SQLite file or one Postgres schema: what two workers or two replicas are.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from plugins.auth.codes import LoginCodes, PendingCode
from plugins.auth.config import EmailCodeConfig
from plugins.auth.mail import Mail
from plugins.auth.providers.base import SignedIn, SignInRefused
from plugins.auth.providers.email_code import EmailCodeProvider
from proxy_core.db import Database
from proxy_core.testing import echo_app
from tests.db.backends import MakeDatabase

from .kit import SECRET, ask_code, browser, enter_code, mailbox_code, proxy, whoami

KEY = b"k" * 32
IP = "192.0.2.1"
EXPIRED = "This code expired or was used up. Ask for a new one."

FLOW = "flow-of-one-browser"


class Inbox:
    """A mailer that keeps the last code sent to each address."""

    def __init__(self) -> None:
        self.codes: dict[str, str] = {}

    async def send(self, mail: Mail) -> None:
        self.codes[mail.to] = mail.fields["code"]


class Clock:
    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at


def wrong(code: str, n: int = 1) -> str:
    return f"{(int(code) + n) % 1_000_000:06d}"


async def opened(make_db: MakeDatabase) -> Database:
    db = make_db()
    await db.open()
    assert (await db.readiness()).ready
    return db


def provider(
    db: Database, inbox: Inbox, *, codes: LoginCodes | None = None, **config: Any
) -> EmailCodeProvider:
    return EmailCodeProvider(EmailCodeConfig(**config), KEY, inbox, codes or LoginCodes(db), db)


async def refusal(attempt: Any) -> str:
    with pytest.raises(SignInRefused) as refused:
        await attempt
    assert refused.value.status == 400
    return refused.value.message


async def rows(db: Database) -> list[dict[str, Any]]:
    return await db.fetch("SELECT * FROM login_codes ORDER BY email")


async def test_a_code_sent_by_one_instance_is_verified_by_another(make_db: MakeDatabase) -> None:
    inbox = Inbox()
    one, two = provider(await opened(make_db), inbox), provider(await opened(make_db), inbox)
    await one.send_code("Ann@Example.com", IP, FLOW)
    who = await two.verify_code("ann@example.com", inbox.codes["ann@example.com"], IP, FLOW)
    assert who == SignedIn("email:ann@example.com", "ann@example.com")
    # used up, everywhere
    assert (
        await refusal(one.verify_code("ann@example.com", inbox.codes["ann@example.com"], IP, FLOW)) == EXPIRED
    )
    assert (
        await refusal(two.verify_code("ann@example.com", inbox.codes["ann@example.com"], IP, FLOW)) == EXPIRED
    )


async def test_only_a_keyed_digest_is_stored(make_db: MakeDatabase) -> None:
    inbox = Inbox()
    db = await opened(make_db)
    await provider(db, inbox, max_attempts=4).send_code("BEA@example.com", IP, FLOW)
    [row] = await rows(db)
    code = inbox.codes["bea@example.com"]
    assert row["email"] == "bea@example.com" and row["attempts_left"] == 4
    assert code not in row["digest"] and len(row["digest"]) == 64
    assert isinstance(row["expires_at"], datetime) and isinstance(row["created_at"], datetime)
    assert timedelta(seconds=590) < row["expires_at"] - row["created_at"] <= timedelta(seconds=600)


class Racing(LoginCodes):
    """Holds every reader until ``parties`` have read the code: all verifications see it live before
    any of them tries to consume it."""

    def __init__(self, db: Database, barrier: asyncio.Barrier) -> None:
        super().__init__(db)
        self.barrier = barrier

    async def get(self, email: str, flow: str) -> PendingCode | None:
        found = await super().get(email, flow)
        await self.barrier.wait()
        return found


async def test_the_same_code_verified_concurrently_signs_in_once(make_db: MakeDatabase) -> None:
    inbox = Inbox()
    barrier = asyncio.Barrier(2)
    dbs = [await opened(make_db), await opened(make_db)]
    one, two = (provider(db, inbox, codes=Racing(db, barrier)) for db in dbs)
    await one.send_code("cy@example.com", IP, FLOW)
    code = inbox.codes["cy@example.com"]
    results = await asyncio.gather(
        one.verify_code("cy@example.com", code, IP, FLOW),
        two.verify_code("cy@example.com", code, IP, FLOW),
        return_exceptions=True,
    )
    assert sum(isinstance(r, SignedIn) for r in results) == 1, results
    [lost] = [r for r in results if not isinstance(r, SignedIn)]
    assert isinstance(lost, SignInRefused) and lost.message == EXPIRED
    assert await rows(dbs[0]) == []


async def test_many_concurrent_verifications_sign_in_once(make_db: MakeDatabase) -> None:
    inbox = Inbox()
    providers = [provider(await opened(make_db), inbox, send_backoff=0) for _ in range(2)]
    for _ in range(3):
        await providers[0].send_code("dee@example.com", IP, FLOW)
        code = inbox.codes["dee@example.com"]
        results = await asyncio.gather(
            *(providers[n % 2].verify_code("dee@example.com", code, f"192.0.2.{n}", FLOW) for n in range(8)),
            return_exceptions=True,
        )
        assert sum(isinstance(r, SignedIn) for r in results) == 1, results
        assert all(isinstance(r, SignedIn | SignInRefused) for r in results), results


async def test_wrong_guesses_count_across_instances_and_void_the_code(make_db: MakeDatabase) -> None:
    inbox = Inbox()
    db = await opened(make_db)
    one, two = provider(db, inbox, max_attempts=3), provider(await opened(make_db), inbox, max_attempts=3)
    await one.send_code("eve@example.com", IP, FLOW)
    code = inbox.codes["eve@example.com"]
    assert await refusal(one.verify_code("eve@example.com", wrong(code), IP, FLOW)) == (
        "That code is not right. 2 attempts left."
    )
    assert await refusal(two.verify_code("eve@example.com", wrong(code, 2), IP, FLOW)) == (
        "That code is not right. 1 attempts left."
    )
    assert await refusal(one.verify_code("eve@example.com", wrong(code, 3), IP, FLOW)) == (
        "Too many wrong codes. Ask for a new one."
    )
    assert await rows(db) == []  # voided at 0
    assert await refusal(two.verify_code("eve@example.com", code, IP, FLOW)) == EXPIRED
    # a new code starts afresh
    await two.send_code("eve@example.com", IP, FLOW)
    assert isinstance(
        await one.verify_code("eve@example.com", inbox.codes["eve@example.com"], IP, FLOW), SignedIn
    )


async def test_concurrent_wrong_guesses_never_overspend_the_attempts(make_db: MakeDatabase) -> None:
    inbox = Inbox()
    providers = [provider(await opened(make_db), inbox, max_attempts=3) for _ in range(2)]
    await providers[0].send_code("fay@example.com", IP, FLOW)
    code = inbox.codes["fay@example.com"]
    results = await asyncio.gather(
        *(providers[n % 2].verify_code("fay@example.com", wrong(code, n + 1), IP, FLOW) for n in range(8)),
        return_exceptions=True,
    )
    messages = sorted(r.message for r in results if isinstance(r, SignInRefused))
    assert len(messages) == 8
    assert messages.count("Too many wrong codes. Ask for a new one.") == 1
    assert messages.count("That code is not right. 2 attempts left.") == 1
    assert messages.count("That code is not right. 1 attempts left.") == 1
    assert messages.count(EXPIRED) == 5
    assert await refusal(providers[1].verify_code("fay@example.com", code, IP, FLOW)) == EXPIRED


async def test_codes_expire_and_expired_codes_are_purged(make_db: MakeDatabase) -> None:
    inbox, clock = Inbox(), Clock()
    db = await opened(make_db)
    other = await opened(make_db)
    one = provider(db, inbox, codes=LoginCodes(db, clock), code_ttl=60)
    two = provider(other, inbox, codes=LoginCodes(other, clock), code_ttl=60)
    await one.send_code("gus@example.com", IP, FLOW)
    await one.send_code("hal@example.com", IP, FLOW)
    clock.at += timedelta(seconds=59)
    assert isinstance(
        await two.verify_code("hal@example.com", inbox.codes["hal@example.com"], IP, FLOW), SignedIn
    )
    clock.at += timedelta(seconds=2)
    code = inbox.codes["gus@example.com"]
    assert await refusal(two.verify_code("gus@example.com", code, IP, FLOW)) == EXPIRED
    assert await refusal(two.verify_code("gus@example.com", wrong(code), IP, FLOW)) == EXPIRED
    assert [r["email"] for r in await rows(db)] == ["gus@example.com"]
    await two.send_code("ivy@example.com", IP, FLOW)  # a send clears out expired codes
    assert [r["email"] for r in await rows(db)] == ["ivy@example.com"]


async def test_a_new_code_replaces_the_old_one(make_db: MakeDatabase) -> None:
    inbox = Inbox()
    db = await opened(make_db)
    one, two = provider(db, inbox, max_attempts=2), provider(await opened(make_db), inbox, max_attempts=2)
    await one.send_code("jo@example.com", IP, FLOW)
    old = inbox.codes["jo@example.com"]
    await refusal(one.verify_code("jo@example.com", wrong(old), IP, FLOW))
    await two.send_code("jo@example.com", IP, FLOW)
    new = inbox.codes["jo@example.com"]
    [row] = await rows(db)
    assert row["attempts_left"] == 2  # the new code has all its attempts
    if new != old:
        assert await refusal(one.verify_code("jo@example.com", old, IP, FLOW)) == (
            "That code is not right. 1 attempts left."
        )
    assert isinstance(await one.verify_code("jo@example.com", new, IP, FLOW), SignedIn)


# -- through the proxy -----------------------------------------------------------------------------


@pytest.fixture
async def upstream(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(echo_app())
    return server


def options(tmp_path: Path, **email_code: Any) -> dict[str, Any]:
    return {
        "cookie_secret": SECRET,
        "email_code": {"delivery": "mailbox", "mailbox_dir": str(tmp_path / "mail"), **email_code},
        "allowed_domains": ["example.com"],
    }


async def test_ask_on_one_app_and_sign_in_on_another(
    upstream: TestServer, db_url: str, tmp_path: Path
) -> None:
    async with (
        proxy(upstream, db_url, **options(tmp_path)) as first,
        proxy(upstream, db_url, **options(tmp_path)) as second,
        browser() as b,
    ):
        page = await ask_code(b, first, "kim@example.com", "/projects/2")
        response = await enter_code(b, second, page, mailbox_code(tmp_path / "mail", "kim@example.com"))
        assert response.status == 303 and response.headers["Location"] == "/projects/2"
        me = await whoami(b, second)
        assert me is not None and me["email"] == "kim@example.com"


async def test_wrong_guesses_on_two_apps_share_one_budget(
    upstream: TestServer, sqlite_url: str, tmp_path: Path
) -> None:
    opts = options(tmp_path, max_attempts=2)
    async with (
        proxy(upstream, sqlite_url, **opts) as first,
        proxy(upstream, sqlite_url, **opts) as second,
        browser() as b,
    ):
        page = await ask_code(b, first, "lee@example.com")
        code = mailbox_code(tmp_path / "mail", "lee@example.com")
        assert (await enter_code(b, first, page, wrong(code))).status == 400
        assert (await enter_code(b, second, page, wrong(code))).status == 400
        assert (await enter_code(b, first, page, code)).status == 400  # voided by the second guess
        assert await whoami(b, first) is None


async def test_email_code_runs_with_several_workers(
    upstream: TestServer, sqlite_url: str, tmp_path: Path
) -> None:
    async with proxy(upstream, sqlite_url, server="workers = 2", **options(tmp_path)) as px, browser() as b:
        assert px.auth.config.provider == "email_code"
        page = await ask_code(b, px, "max@example.com")
        response = await enter_code(b, px, page, mailbox_code(tmp_path / "mail", "max@example.com"))
        assert response.status == 303
