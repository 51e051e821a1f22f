"""A gateway stream still running at the shutdown deadline is cut, and its usage row is in the store
when the process is done: nothing spent is lost to a deploy."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from plugins.auth.users import Users
from plugins.vkey.cache import KEY_CACHE
from plugins.vkey.lifecycle import KeyService
from plugins.vkey.stage import VKeyStage
from proxy_core.db import DATABASE, Database
from proxy_core.db.config import DatabaseConfig
from proxy_core.server import runner_for
from proxy_core.testing import config_from_toml, make_app, stage
from tests.standins.llm_providers import standin_app

from .conftest import ENV, REAL, provider_urls


async def test_a_stream_cut_at_the_deadline_still_writes_its_usage_row(
    aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    standin = await aiohttp_server(standin_app(REAL, event_delay=2.0), access_log=None)
    config = config_from_toml(
        f'[server]\naccess_log = false\nshutdown_timeout = 0.5\n[database]\nurl = "{sqlite_url}"\n'
    )
    app = make_app([stage(VKeyStage, providers=provider_urls(standin))], config)
    runner = runner_for(app, config)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    await Users(app[DATABASE]).create("ada@example.com")
    issued = await KeyService(app[DATABASE], app[KEY_CACHE], timedelta(hours=1)).issue("ada@example.com")

    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"http://127.0.0.1:{port}/api/gateway/anthropic/v1/messages",
            json={"model": "claude-standin", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-api-key": issued.key},
        )
        assert b"message_start" in await response.content.readuntil(b"\n\n")
        await runner.cleanup()  # SIGTERM: drain, cut at the deadline, tear down (writes queued rows)
        rest = b""
        with contextlib.suppress(aiohttp.ClientPayloadError):
            rest = await response.content.read()
        assert b"message_stop" not in rest  # cut, not finished
        response.close()

    store = Database(DatabaseConfig(url=sqlite_url, migrate_on_start=False))
    await store.open()
    try:
        rows = await store.fetch("SELECT user_id, provider, reported, tokens_in FROM usage")
    finally:
        await store.close()
    assert len(rows) == 1
    assert rows[0]["provider"] == "anthropic" and rows[0]["reported"]
    assert rows[0]["tokens_in"] > 0  # counted from message_start before the cut
