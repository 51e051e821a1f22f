"""The gateway in front of the provider stand-ins, on real loopback servers and the real store
(SQLite here; the store's own contract runs on SQLite and Postgres in ``test_store.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from plugins.auth.users import Users
from plugins.vkey.cache import KEY_CACHE
from plugins.vkey.ledger import USAGE_WRITER
from plugins.vkey.lifecycle import IssuedKey, KeyService
from plugins.vkey.stage import VKeyStage
from proxy_core import STAGES
from proxy_core.db import DATABASE, Database, Row
from proxy_core.testing import make_app, run_proxy, stage
from tests.db.backends import db, db_url, make_db, pg_url, sqlite_url
from tests.standins.llm_providers import STATE, StandinState, standin_app

__all__ = ["db", "db_url", "make_db", "pg_url", "sqlite_url"]

REAL = {
    "openai": "sk-real-openai-0123456789",
    "anthropic": "sk-ant-real-0123456789",
    "gemini": "AIza-real-gemini-0123456789",
    "composio": "ak_real_composio_0123456789",
}
ENV = {
    "OPENAI_API_KEY": REAL["openai"],
    "ANTHROPIC_API_KEY": REAL["anthropic"],
    "GEMINI_API_KEY": REAL["gemini"],
    "GOOGLE_GENERATIVE_AI_API_KEY": REAL["gemini"],
    "COMPOSIO_API_KEY": REAL["composio"],
}


@dataclass
class Gateway:
    url: URL  # the proxy's base URL
    app: web.Application
    standin: StandinState
    stage: VKeyStage
    db: Database  # the app's own database
    keys: KeyService  # sharing the gateway's key cache, as the sandbox router's would

    def base(self, provider: str) -> str:
        return str(self.url / "api" / "gateway" / provider)

    async def issue(self, email: str, **options: Any) -> IssuedKey:
        """A key for ``email``, adding the user first when needed."""
        users = Users(self.db)
        if await users.find_by_email(email) is None:
            await users.create(email)
        return await self.keys.issue(email, **options)

    async def usage(self) -> list[Row]:
        """Every usage row, oldest first, after writing what the gateway has queued."""
        await self.app[USAGE_WRITER].flush()
        return await self.db.fetch("SELECT * FROM usage ORDER BY id")

    async def last_usage(self) -> Row:
        rows = await self.usage()
        assert rows, "no usage row was recorded"
        return rows[-1]


GatewayFactory = Callable[..., Awaitable[Gateway]]


def provider_urls(standin: TestServer) -> dict[str, dict[str, str]]:
    root = str(standin.make_url("")).rstrip("/")
    return {
        "openai": {"url": f"{root}/v1"},
        "anthropic": {"url": f"{root}/v1"},
        "gemini": {"url": f"{root}/v1beta"},
        "google": {"url": f"{root}/v1beta"},
        "composio": {"url": root},
    }


@pytest.fixture
async def make_gateway(
    aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> AsyncIterator[GatewayFactory]:
    """A gateway in front of a fresh stand-in, served by the production runner (the same access log,
    limits and disconnect handling as ``shmastra-cloud serve``) on a fresh SQLite store (or ``database``); options
    go to the stage's table, ``config`` is more TOML for the proxy."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    async with AsyncExitStack() as running:

        async def make(
            config: str = "",
            event_delay: float = 0.0,
            grace: timedelta = timedelta(hours=1),
            database: str = sqlite_url,
            **options: Any,
        ) -> Gateway:
            # The stand-in logs no request lines: they would carry its keys into the captured logs.
            standin = await aiohttp_server(standin_app(REAL, event_delay), access_log=None)
            options.setdefault("providers", provider_urls(standin))
            options.setdefault("activity_flush_seconds", 0.05)
            app = make_app([stage(VKeyStage, **options)], f'{config}\n[database]\nurl = "{database}"\n')
            url = await running.enter_async_context(run_proxy(app))
            (built,) = [s for s in app[STAGES] if isinstance(s, VKeyStage)]
            keys = KeyService(app[DATABASE], app[KEY_CACHE], grace)
            return Gateway(url, app, standin.app[STATE], built, app[DATABASE], keys)

        yield make
