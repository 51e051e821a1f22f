"""The whole cloud for Manage's sandbox tests: vkey, manage, auth (emailed codes) and the sandbox router
on the local provider with the router's stand-in template (each sandbox a real process group on its own
port), served by the production runner on loopback on the real store."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from yarl import URL

from plugins.auth import AuthStage, UserDirectory
from plugins.manage import AdminTokens, ManageStage
from plugins.sandbox_router import Sandbox, SandboxRouterStage, sandbox_router
from plugins.vkey import VKeyStage
from proxy_core.db import DATABASE, Database
from proxy_core.testing import make_app, run_proxy, stage
from tests.plugins.auth.kit import email_sign_in

TEMPLATE = Path(__file__).parents[1] / "sandbox_router" / "template"
JSON = {"Accept": "application/json"}
# Commands the stand-in template can run in place of the real template's pm2 ones: each leaves a mark.
COMMANDS = {
    "restart_app": 'echo app >> "$SANDBOX_HOME/restarts"',
    "restart_healer": 'echo healer >> "$SANDBOX_HOME/restarts"',
    "logs": 'echo "log line of $USER_ID"; cat "$SANDBOX_HOME/restarts" 2>/dev/null; true',
}
# Updates copy the stand-in's own project folder; a sandbox holding FAIL_UPDATE fails its install.
ROLLOUT = {
    "source": "shmastra",
    "install": 'sleep "$(cat "$SANDBOX_HOME/SLOW_UPDATE" 2>/dev/null || echo 0)"; test ! -e "$SANDBOX_HOME/FAIL_UPDATE"',
    "health_timeout": 10,
    "tick": 0.1,
}


@pytest.fixture(autouse=True)
def no_leftover_sandboxes(tmp_path: Path) -> Iterator[None]:
    """Whatever a test leaves running is killed, group and all."""
    yield
    for state in tmp_path.rglob("state.json"):
        with contextlib.suppress(ValueError, KeyError, ProcessLookupError, PermissionError):
            os.killpg(int(orjson.loads(state.read_bytes())["pid"]), signal.SIGKILL)


def template_copy(tmp_path: Path) -> Path:
    target = tmp_path / "template"
    shutil.copytree(TEMPLATE, target)
    (target / ".python").write_text(sys.executable)
    return target


@dataclass
class Fleet:
    url: URL
    app: web.Application
    mailbox: Path
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)

    @property
    def db(self) -> Database:
        return self.app[DATABASE]

    @property
    def router(self) -> SandboxRouterStage:
        return sandbox_router(self.app)

    def at(self, path: str) -> URL:
        return URL(str(self.url) + path)

    async def sign_in(self, email: str, role: str = "member") -> aiohttp.ClientSession:
        if await UserDirectory(self.db).find_by_email(email) is None:
            await UserDirectory(self.db).create(email, role=role)
        session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), headers={"Accept": "text/html"}
        )
        self.sessions.append(session)
        await email_sign_in(session, self, self.mailbox, email)  # type: ignore[arg-type]
        return session

    async def token(self, email: str) -> dict[str, str]:
        """Headers for an admin token of ``email`` (made an admin first)."""
        users = UserDirectory(self.db)
        user = await users.find_by_email(email) or await users.create(email, role="admin")
        created = await AdminTokens(self.db).create(user.id, "tests")
        return {"Authorization": f"Bearer {created.token}", **JSON}

    async def sandbox_of(self, email: str) -> tuple[uuid.UUID, aiohttp.ClientSession]:
        """``email`` signed in, with a running sandbox."""
        session = await self.sign_in(email)
        await self.visit(session)
        user = await UserDirectory(self.db).get(email)
        return user.id, session

    async def visit(self, session: aiohttp.ClientSession) -> None:
        """The user comes (back): the progress events start or resume their sandbox, until it is ready."""
        async with session.get(self.at("/api/sandbox/events")) as answer:
            assert answer.status == 200
            async for raw in answer.content:
                if raw.startswith(b"event: ready"):
                    return
                assert not raw.startswith(b"event: failed"), raw
        raise AssertionError("the event stream ended before the sandbox was ready")

    async def row(self, user_id: uuid.UUID) -> Sandbox:
        found = await self.router.lifecycle.store.of_user(user_id)
        assert found is not None
        return found

    async def call(
        self, headers: dict[str, str], method: str, path: str, body: Any = None
    ) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as script:
            async with script.request(method, self.at(f"/manage/api{path}"), json=body, headers=headers) as r:
                return r.status, await r.json()


@asynccontextmanager
async def fleet(
    tmp_path: Path, db_url: str, *, manage: dict[str, Any] | None = None, **router: Any
) -> AsyncIterator[Fleet]:
    mailbox = tmp_path / "mail"
    local = {
        "root": str(tmp_path / "sandboxes"),
        "cache_dir": str(tmp_path / "template-cache"),
        "hidden_paths": [],
        "stop_grace": 1.0,
    }
    router = {
        "health_interval": 0.05,
        "health_timeout": 20,
        "sweep_interval": 3600,
        "route_cache_seconds": 0.2,
        **router,
    }
    manage = {
        "live_interval": 0.1,
        "provider_list_seconds": 0,
        "commands": COMMANDS,
        "rollout": ROLLOUT,
        **(manage or {}),
    }
    app = make_app(
        [
            stage(VKeyStage, activity_flush_seconds=0.05),
            stage(ManageStage, **manage),
            stage(
                AuthStage,
                data_dir=str(tmp_path / "auth"),
                email_code={"delivery": "mailbox", "mailbox_dir": str(mailbox)},
                allowed_domains=["example.com"],
                public_paths=["/api/sandbox/heal"],
                session_cache_seconds=0.1,
            ),
            stage(SandboxRouterStage, template_dir=str(template_copy(tmp_path)), local=local, **router),
        ],
        f'[server]\naccess_log = false\n[database]\nurl = "{db_url}"\nretry_initial = 0.05\n'
        "batch_interval = 0.05\n",
    )
    async with run_proxy(app) as url:
        running = Fleet(url, app, mailbox)
        try:
            yield running
        finally:
            for session in running.sessions:
                await session.close()
