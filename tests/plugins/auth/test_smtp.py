"""SMTP delivery of sign-in codes, against a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller

from proxy_core.testing import echo_app

from .kit import SECRET, Inbox, ask_code, browser, enter_code, proxy, whoami


@pytest.fixture
def smtp_server(unused_tcp_port: int) -> Any:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=unused_tcp_port)
    controller.start()
    yield inbox, unused_tcp_port
    controller.stop()


@pytest.fixture
async def upstream(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(echo_app())
    return server


async def test_codes_are_mailed_over_smtp_and_sign_in(
    upstream: TestServer, sqlite_url: str, smtp_server: Any, tmp_path: Path
) -> None:
    inbox, port = smtp_server
    email_code = {
        "delivery": "smtp",
        "smtp": {"host": "127.0.0.1", "port": port, "starttls": False, "sender": "cloud@example.com"},
    }
    async with (
        proxy(
            upstream, sqlite_url, cookie_secret=SECRET, email_code=email_code, admins=["ann@example.com"]
        ) as px,
        browser() as b,
    ):
        page = await ask_code(b, px, "ann@example.com")
        await arrived(lambda: inbox.messages)  # mailed after the answer
        assert len(inbox.messages) == 1
        envelope = inbox.messages[0]
        assert envelope.mail_from == "cloud@example.com"
        assert envelope.rcpt_tos == ["ann@example.com"]
        message = message_from_bytes(envelope.original_content or b"")
        assert message["Subject"] == "Your sign-in code"
        match = re.search(r"code is (\d{6})", message.get_payload())
        assert match is not None
        response = await enter_code(b, px, page, match.group(1))
        assert response.status == 303
        me = await whoami(b, px)
        assert me is not None and me["email"] == "ann@example.com"


async def test_an_unreachable_smtp_server_is_logged_and_the_answer_does_not_tell(
    upstream: TestServer, sqlite_url: str, unused_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Mail goes out after the answer: a failure shows in the log, never in the answer (which would
    tell that the address is known, since strangers get no mail to fail)."""
    email_code = {
        "delivery": "smtp",
        "smtp": {"host": "127.0.0.1", "port": unused_tcp_port, "starttls": False},
    }
    async with (
        proxy(
            upstream, sqlite_url, cookie_secret=SECRET, email_code=email_code, admins=["ann@example.com"]
        ) as px,
        browser() as b,
    ):
        page = await ask_code(b, px, "ann@example.com")
        assert "Enter your code" in page
        await arrived(lambda: "could not be sent" in caplog.text)
        assert "auth: the sign-in code for ann@example.com could not be sent" in caplog.text


async def arrived(check: Callable[[], object]) -> None:
    """Wait (at most ten seconds) until ``check()`` is true: delivery runs after the answer."""
    async with asyncio.timeout(10):
        while not check():
            await asyncio.sleep(0.02)
