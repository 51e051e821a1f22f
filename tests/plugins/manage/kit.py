"""Helpers for the Manage tests: the proxy (manage → auth → the echo upstream, or auth first) served by
the production runner on loopback on a real store, and signed-in browsers (real email-code sign-in)."""

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
from yarl import URL

from plugins.auth import AuthStage, User, UserDirectory
from plugins.manage import ManageStage
from plugins.vkey import VKeyStage
from proxy_core.db import DATABASE, Database
from proxy_core.stages.upstream import UpstreamStage
from proxy_core.testing import make_app, run_proxy, stage
from tests.plugins.auth.kit import SECRET, email_sign_in

JSON = {"Accept": "application/json"}


@dataclass
class Cloud:
    url: URL
    app: web.Application
    mailbox: Path

    @property
    def db(self) -> Database:
        return self.app[DATABASE]

    async def gateway_status(self, key: str) -> int:
        """What the LLM gateway answers a sandbox holding ``key``."""
        async with aiohttp.ClientSession() as sandbox:
            headers = {"Authorization": f"Bearer {key}"}
            async with sandbox.get(self.at("/api/gateway/openai/v1/models"), headers=headers) as response:
                return response.status

    def at(self, path: str) -> URL:
        return URL(str(self.url) + path)

    async def user(self, email: str, role: str = "member") -> User:
        return await UserDirectory(self.db).create(email, role=role)

    async def browser(self, email: str) -> aiohttp.ClientSession:
        """A signed-in browser (cookies kept, asks for HTML); close it when done."""
        session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), headers={"Accept": "text/html"}
        )
        await email_sign_in(session, self, self.mailbox, email)  # type: ignore[arg-type]
        return session

    async def csrf(self, session: aiohttp.ClientSession, page: str = "/manage/users") -> str:
        async with session.get(self.at(page)) as response:
            assert response.status == 200, await response.text()
            text = await response.text()
        match = re.search(r'name="csrf_token" value="([^"]+)"', text)
        assert match, "no CSRF field on the page"
        return match.group(1)


@asynccontextmanager
async def cloud(
    upstream: TestServer,
    db_url: str,
    tmp_path: Path,
    *,
    manage_first: bool = True,
    manage: dict[str, Any] | None = None,
    **auth: Any,
) -> AsyncIterator[Cloud]:
    mailbox = tmp_path / "mail"
    auth = {
        "cookie_secret": SECRET,
        "email_code": {"delivery": "mailbox", "mailbox_dir": str(mailbox)},
        "allowed_domains": ["example.com"],
        "session_cache_seconds": 30,
        "data_dir": str(tmp_path),
    } | auth
    gateway = {"openai": {"url": str(upstream.make_url("/v1"))}}
    stages = [
        stage(VKeyStage, providers=gateway),
        stage(AuthStage, **auth),
        stage(UpstreamStage, url=str(upstream.make_url("/"))),
    ]
    stages.insert(1 if manage_first else 2, stage(ManageStage, **(manage or {})))
    app = make_app(
        stages, f'[server]\naccess_log = false\n[database]\nurl = "{db_url}"\nretry_initial = 0.05\n'
    )
    async with run_proxy(app) as url:
        yield Cloud(url, app, mailbox)
