"""The whole signed-in pipeline (vkey, auth with emailed codes, sandbox_router with the local provider)
served by the production runner on loopback, on the real store, with the stand-in template: each
sandbox is a real process group running ``template/app.py`` on its own port."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from yarl import URL

from plugins.auth import AuthStage
from plugins.sandbox_router import Sandbox, SandboxRouterStage, sandbox_router
from plugins.vkey import VKeyStage
from proxy_core.db import DATABASE, Database
from proxy_core.testing import make_app, run_proxy, stage
from tests.db.backends import db_url, make_db, pg_url, sqlite_url
from tests.plugins.auth.kit import browser, email_sign_in

__all__ = ["db_url", "make_db", "pg_url", "sqlite_url"]

TEMPLATE = Path(__file__).parent / "template"
JSON = {"Accept": "application/json"}


@pytest.fixture(autouse=True)
def no_leftover_sandboxes(tmp_path: Path) -> Iterator[None]:
    """Whatever a test leaves running (a failure half-way, say) is killed, group and all."""
    yield
    for state in tmp_path.rglob("state.json"):
        with contextlib.suppress(ValueError, KeyError, ProcessLookupError, PermissionError):
            os.killpg(int(orjson.loads(state.read_bytes())["pid"]), signal.SIGKILL)


@pytest.fixture
def template(tmp_path: Path) -> Path:
    """A copy of the stand-in template with this interpreter named in ``.python`` and the files an
    export must leave out (``node_modules``, ``.env``)."""
    target = tmp_path / "template"
    shutil.copytree(TEMPLATE, target)
    (target / ".python").write_text(sys.executable)
    modules = target / "shmastra" / "node_modules" / "fake"
    modules.mkdir(parents=True)
    (modules / "index.js").write_text("module.exports = {};\n")
    (target / "shmastra" / ".env").write_text("OPENAI_API_KEY=vk_written_into_dotenv\n")
    return target


@dataclass
class Cloud:
    url: URL
    app: web.Application
    mailbox: Path
    root: Path
    _sessions: list[aiohttp.ClientSession]

    @property
    def router(self) -> SandboxRouterStage:
        return sandbox_router(self.app)

    @property
    def db(self) -> Database:
        return self.app[DATABASE]

    def at(self, path: str) -> str:
        return str(self.url) + path

    async def sign_in(self, email: str) -> aiohttp.ClientSession:
        """A browser session signed in as ``email`` (closed with the cloud)."""
        session = browser()
        self._sessions.append(session)
        await email_sign_in(session, _Px(self.url), self.mailbox, email)
        return session

    async def user_id(self, session: aiohttp.ClientSession) -> uuid.UUID:
        async with session.get(self.at("/api/sandbox/status"), headers=JSON) as answer:
            assert answer.status == 200
        row = await self.db.fetchrow("SELECT user_id FROM sandboxes ORDER BY created_at DESC LIMIT 1")
        assert row is not None
        return uuid.UUID(str(row["user_id"]))

    async def sandbox(self, user_id: uuid.UUID) -> Sandbox:
        found = await self.router.lifecycle.store.of_user(user_id)
        assert found is not None
        return found

    async def until_running(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        """Follow the event stream until the sandbox is ready (or failed); the last event's data."""
        async with session.get(self.at("/api/sandbox/events")) as answer:
            assert answer.status == 200
            event, data = "", ""
            async for raw in answer.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif not line and event in ("ready", "failed"):
                    found: dict[str, Any] = {"event": event, **orjson.loads(data)}
                    return found
        raise AssertionError("the event stream ended without ready or failed")


@dataclass
class _Px:
    """What the auth kit's sign-in helpers need of a proxy."""

    url: URL

    def at(self, path: str) -> URL:
        return URL(str(self.url) + path)


CloudFactory = Callable[..., Awaitable[Cloud]]


def cloud_app(
    tmp_path: Path,
    template: Path,
    database: str,
    root: Path | None = None,
    server: str = "",
    batch_interval: float = 0.05,
    **router: Any,
) -> tuple[web.Application, Path, Path]:
    mailbox = tmp_path / "mail"
    root = root or tmp_path / "sandboxes"
    local = {
        "root": str(root),
        "cache_dir": str(tmp_path / "template-cache"),
        "hidden_paths": [],
        "stop_grace": 1.0,
        "pause": "stop",  # these tests follow processes ending on pause; freezing is tested on its own
        **router.pop("local", {}),
    }
    router.setdefault("health_interval", 0.05)
    router.setdefault("health_timeout", 20)
    router.setdefault("sweep_interval", 3600)
    router.setdefault("stream_check_interval", 0.2)
    router.setdefault("route_cache_seconds", 0.5)
    app = make_app(
        [
            stage(VKeyStage, activity_flush_seconds=0.05),
            stage(
                AuthStage,
                data_dir=str(tmp_path / "auth"),
                email_code={"delivery": "mailbox", "mailbox_dir": str(mailbox)},
                allowed_domains=["example.com"],
                admins=["admin@example.com"],
                public_paths=["/api/sandbox/heal"],
                session_cache_seconds=0.1,
            ),
            stage(SandboxRouterStage, local=local, **{"template_dir": str(template), **router}),
        ],
        f'[server]\naccess_log = false\n{server}\n[database]\nurl = "{database}"\nretry_initial = 0.05\n'
        f"batch_interval = {batch_interval}\n",
    )
    return app, mailbox, root


@pytest.fixture
async def make_cloud(tmp_path: Path, template: Path, sqlite_url: str) -> AsyncIterator[CloudFactory]:
    """``await make_cloud(**router_options)``: a running cloud; ``database=`` picks another store,
    ``batch_interval=`` its batch writers' interval."""
    async with AsyncExitStack() as running:
        sessions: list[aiohttp.ClientSession] = []

        async def make(
            database: str = sqlite_url,
            root: Path | None = None,
            server: str = "",
            batch_interval: float = 0.05,
            **router: Any,
        ) -> Cloud:
            app, mailbox, sandboxes = cloud_app(
                tmp_path, template, database, root, server, batch_interval, **router
            )
            url = await running.enter_async_context(run_proxy(app))
            return Cloud(url, app, mailbox, sandboxes, sessions)

        try:
            yield make
        finally:
            for session in sessions:
                await session.close()
