"""Helpers for the auth tests: the proxy (auth stage → an identity echo → the echo upstream) served by
the production runner on loopback, and a browser (an aiohttp session that keeps cookies)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.smtp import SMTP, Envelope, Session
from yarl import URL

from plugins.auth import IDENTITY, AuthStage, auth_stage
from proxy_core import Next, Stage, StageConfig
from proxy_core.stages.upstream import UpstreamStage
from proxy_core.testing import make_app, run_proxy, stage

HTML = {"Accept": "text/html,application/xhtml+xml"}
SECRET = "s" * 40


class ShowIdentity(Stage[StageConfig]):
    """A later stage: answers ``/whoami`` with what ``auth`` attached."""

    name = "show_identity"

    async def __call__(self, request: web.Request, next: Next) -> web.StreamResponse:
        if request.path != "/whoami":
            return await next(request)
        identity = request.get(IDENTITY)
        if identity is None:
            return web.json_response(None)
        return web.json_response(
            {
                "user_id": str(identity.user_id),
                "email": identity.email,
                "role": identity.role,
                "session_id": identity.session_id,
                "csrf_token": identity.csrf_token,
            }
        )


@dataclass
class Proxy:
    url: URL
    app: web.Application

    @property
    def auth(self) -> AuthStage:
        return auth_stage(self.app)

    def at(self, path: str) -> URL:
        return URL(str(self.url) + path)


@asynccontextmanager
async def proxy(upstream: TestServer, db_url: str, server: str = "", **auth: Any) -> AsyncIterator[Proxy]:
    """``server``: extra lines for the ``[server]`` table."""
    auth.setdefault("data_dir", "/nonexistent/unused")
    app = make_app(
        [
            stage(AuthStage, **auth),
            stage(ShowIdentity),
            stage(UpstreamStage, url=str(upstream.make_url("/"))),
        ],
        f'[server]\naccess_log = false\n{server}\n[database]\nurl = "{db_url}"\nretry_initial = 0.05\n',
    )
    async with run_proxy(app) as url:
        yield Proxy(url, app)


def browser() -> aiohttp.ClientSession:
    """A browser: keeps cookies (also for 127.0.0.1), asks for HTML."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), headers=HTML)


def hidden(page: str, name: str) -> str:
    match = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', page)
    assert match, f"no hidden field {name!r} in the page"
    return match.group(1)


def mailbox_code(directory: Path, email: str) -> str:
    match = re.search(r"code is (\d{6})", (directory / email.lower()).read_text())
    assert match
    return match.group(1)


def cookie(session: aiohttp.ClientSession, name: str) -> str | None:
    for morsel in session.cookie_jar:
        if morsel.key == name:
            return morsel.value
    return None


async def whoami(session: aiohttp.ClientSession, proxy: Proxy) -> dict[str, Any] | None:
    async with session.get(proxy.at("/whoami"), headers={"Accept": "application/json"}) as response:
        if response.status == 401:
            return None
        assert response.status == 200, await response.text()
        found: dict[str, Any] | None = await response.json()
        return found


async def ask_code(session: aiohttp.ClientSession, proxy: Proxy, email: str, next: str = "/") -> str:
    """Open the sign-in page and ask for a code; returns the code page."""
    async with session.get(proxy.at("/auth/sign-in"), params={"next": next}) as response:
        assert response.status == 200
        page = await response.text()
    form = {"email": email, "csrf_token": hidden(page, "csrf_token"), "next": hidden(page, "next")}
    async with session.post(proxy.at("/auth/code"), data=form) as response:
        assert response.status == 200, await response.text()
        return await response.text()


async def enter_code(
    session: aiohttp.ClientSession, proxy: Proxy, page: str, code: str
) -> aiohttp.ClientResponse:
    """Submit ``code`` from the code page; the answer is not followed (read status and Location)."""
    form = {"code": code, "csrf_token": hidden(page, "csrf_token")}
    async with session.post(proxy.at("/auth/code/verify"), data=form, allow_redirects=False) as response:
        await response.read()
        return response


async def email_sign_in(
    session: aiohttp.ClientSession, proxy: Proxy, mailbox: Path, email: str, next: str = "/"
) -> str:
    """The whole email-code sign-in; returns where the browser was sent afterwards."""
    page = await ask_code(session, proxy, email, next)
    response = await enter_code(session, proxy, page, mailbox_code(mailbox, email))
    assert response.status == 303, response.status
    return response.headers["Location"]


class Inbox:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 OK"
