"""The benchmark's servers: ``python -m bench.gateway.servers standin PORT [EVENT_DELAY] | gateway PORT
UPSTREAM_PORT DATABASE_URL``. The gateway runs on the real store (a SQLite file prepared by
:func:`prepare_store`)."""

from __future__ import annotations

import asyncio
import os
import sys

import uvloop
from aiohttp import web

from plugins.auth.users import Users
from plugins.vkey.lifecycle import KeyService
from plugins.vkey.stage import VKeyStage
from proxy_core.db import Database, DatabaseConfig
from proxy_core.server import serve_app
from proxy_core.testing import config_from_toml, make_app, stage
from tests.standins.llm_providers import standin_app

REAL_KEY = "sk-bench-real-key"
REAL_KEYS = {name: REAL_KEY for name in ("openai", "anthropic", "gemini", "composio")}


async def serve(app: web.Application, port: int, production: bool) -> None:
    if production:  # as ``serve`` runs it: the production runner, the collector tuned after start-up
        config = config_from_toml(f"[server]\nport = {port}\naccess_log = false\n")
        print("ready", flush=True)
        await serve_app(app, config, banner=False)
        return
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def prepare_store(url: str) -> str:
    """A migrated database at ``url`` with one user and their virtual key, which is returned."""
    db = Database(DatabaseConfig(url=url))
    await db.connect()
    try:
        await db.migrate()
        await Users(db).create("bench@example.com")
        return (await KeyService(db).issue("bench@example.com")).key
    finally:
        await db.close()


def gateway_app(upstream_port: int, database_url: str) -> web.Application:
    build = stage(
        VKeyStage,
        providers={"openai": {"url": f"http://127.0.0.1:{upstream_port}/v1"}},
        prices={"gpt-4o-mini": {"input": 0.15, "output": 0.6}},
    )
    return make_app([build], f'[database]\nurl = "{database_url}"\n')


def main() -> None:
    role, port = sys.argv[1], int(sys.argv[2])
    if role == "standin":
        delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
        app, production = standin_app(REAL_KEYS, event_delay=delay), False
    else:
        os.environ["OPENAI_API_KEY"] = REAL_KEY
        app, production = gateway_app(int(sys.argv[3]), sys.argv[4]), True
    uvloop.run(serve(app, port, production))


if __name__ == "__main__":
    main()
