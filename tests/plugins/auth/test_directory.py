"""The public user directory: disabling ends sessions at once (here through the signal, elsewhere
through the store), enabling revives none, role changes are seen at once, and listeners hear every
change (one failing listener does not silence the others)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from plugins.auth import USER_DIRECTORY, UserChanged, UserDirectory
from proxy_core.db import Database, NotFound
from proxy_core.testing import echo_app

from .kit import SECRET, browser, email_sign_in, proxy, whoami


@pytest.fixture
async def upstream(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(echo_app())
    return server


def options(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "cookie_secret": SECRET,
        # several sign-ins of one address from one IP: no back-off between the codes
        "email_code": {"delivery": "mailbox", "mailbox_dir": str(tmp_path / "mail"), "send_backoff": 0},
        "allowed_domains": ["example.com"],
    } | extra


async def test_disabling_ends_sessions_at_once_and_enabling_revives_none(
    upstream: TestServer, db_url: str, tmp_path: Path
) -> None:
    # sessions are cached for a minute: only the directory's signal can make this immediate
    async with proxy(upstream, db_url, **options(tmp_path, session_cache_seconds=60)) as px:
        async with browser() as laptop, browser() as phone, browser() as bystander:
            for b in (laptop, phone):
                await email_sign_in(b, px, tmp_path / "mail", "ann@example.com")
            await email_sign_in(bystander, px, tmp_path / "mail", "bob@example.com")
            directory = px.app[USER_DIRECTORY]
            assert (await directory.set_disabled("ann@example.com", True)).disabled
            assert await whoami(laptop, px) is None and await whoami(phone, px) is None
            assert (await directory.set_disabled("Ann@Example.com", False)).disabled is False
            assert await whoami(laptop, px) is None and await whoami(phone, px) is None
            assert await whoami(bystander, px) is not None
            await email_sign_in(laptop, px, tmp_path / "mail", "ann@example.com")  # a fresh start works
            assert (await whoami(laptop, px) or {})["email"] == "ann@example.com"


async def test_disabling_from_another_process_ends_sessions_and_enabling_revives_none(
    upstream: TestServer, db_url: str, tmp_path: Path
) -> None:
    """``shmastra-cloud users disable`` runs elsewhere: its directory has no listeners here, so the
    store itself must have ended the sessions (seen once the short session cache runs out)."""
    async with proxy(upstream, db_url, **options(tmp_path, session_cache_seconds=0)) as px:
        async with browser() as b:
            await email_sign_in(b, px, tmp_path / "mail", "ann@example.com")
            elsewhere = UserDirectory(px.auth.db)
            await elsewhere.set_disabled("ann@example.com", True)
            await elsewhere.set_disabled("ann@example.com", False)
            assert await whoami(b, px) is None


async def test_a_role_change_is_seen_at_once(upstream: TestServer, db_url: str, tmp_path: Path) -> None:
    async with proxy(upstream, db_url, **options(tmp_path, session_cache_seconds=60)) as px:
        async with browser() as b:
            await email_sign_in(b, px, tmp_path / "mail", "ann@example.com")
            assert (await whoami(b, px) or {})["role"] == "member"
            await px.app[USER_DIRECTORY].set_role("ann@example.com", "admin")
            assert (await whoami(b, px) or {})["role"] == "admin"


async def test_listeners_hear_every_change_and_one_failing_does_not_silence_the_others(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    directory = UserDirectory(db)
    heard: list[tuple[str, str]] = []

    def broken(event: UserChanged) -> None:
        raise RuntimeError("listener bug")

    async def record(event: UserChanged) -> None:
        heard.append((event.user.email, event.change))

    directory.subscribe(broken)
    directory.subscribe(record)
    ann = await directory.create("ann@example.com")
    await directory.set_role(ann.id, "admin")
    await directory.set_disabled(ann.id, True)
    await directory.set_disabled(ann.id, False)
    assert await directory.sign_out(ann.id) == 0
    assert heard == [
        ("ann@example.com", "created"),
        ("ann@example.com", "role"),
        ("ann@example.com", "disabled"),
        ("ann@example.com", "enabled"),
        ("ann@example.com", "signed_out"),
    ]
    assert caplog.text.count("a user-change listener failed") == 5
    with pytest.raises(NotFound):
        await directory.set_disabled("nobody@example.com", True)
    assert len(heard) == 5  # nothing happened, nothing announced


async def test_a_role_a_sign_in_brings_is_announced(
    upstream: TestServer, db_url: str, tmp_path: Path
) -> None:
    async with proxy(upstream, db_url, **options(tmp_path, admins=["boss@example.com"])) as px:
        directory = px.app[USER_DIRECTORY]
        await directory.create("boss@example.com")  # added as a member before the list named them
        heard: list[tuple[str, str]] = []
        directory.subscribe(lambda event: heard.append((event.user.email, event.change)))
        async with browser() as b:
            await email_sign_in(b, px, tmp_path / "mail", "boss@example.com")
            assert (await whoami(b, px) or {})["role"] == "admin"
        assert heard == [("boss@example.com", "role")]
