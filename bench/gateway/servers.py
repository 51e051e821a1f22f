"""The benchmark's servers: ``python -m bench.gateway.servers standin PORT | gateway PORT UPSTREAM_PORT``."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime

import uvloop
from aiohttp import web

from plugins.vkey.keys import KeyRecord, display_prefix, hash_key
from plugins.vkey.memory import MemoryStore
from plugins.vkey.stage import STORE, VKeyStage
from proxy_core.server import runner_for
from proxy_core.stage import StageContext
from proxy_core.testing import config_from_toml, make_app, stage
from tests.standins.llm_providers import standin_app

REAL_KEY = "sk-bench-real-key"
VIRTUAL_KEY = "vk_bench_" + "ab" * 32
REAL_KEYS = {name: REAL_KEY for name in ("openai", "anthropic", "gemini", "composio")}


async def serve(app: web.Application, port: int, production: bool) -> None:
    runner = (
        runner_for(app, config_from_toml("[server]\naccess_log = false\n"))
        if production
        else (web.AppRunner(app, access_log=None))
    )
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def gateway_app(upstream_port: int) -> web.Application:
    store = MemoryStore()
    record = KeyRecord(
        "bench", "bench", display_prefix(VIRTUAL_KEY), hash_key(VIRTUAL_KEY), datetime.now(UTC)
    )
    store.keys[record.id] = ("bench@example.com", record)
    build = stage(
        VKeyStage,
        providers={"openai": {"url": f"http://127.0.0.1:{upstream_port}/v1"}},
        prices={"gpt-4o-mini": {"input": 0.15, "output": 0.6}},
    )

    def factory(context: StageContext) -> VKeyStage:
        context.resources[STORE] = store
        built = build(context)
        assert isinstance(built, VKeyStage)
        return built

    return make_app([factory])


def main() -> None:
    role, port = sys.argv[1], int(sys.argv[2])
    if role == "standin":
        delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
        app, production = standin_app(REAL_KEYS, event_delay=delay), False
    else:
        os.environ["OPENAI_API_KEY"] = REAL_KEY
        app, production = gateway_app(int(sys.argv[3])), True
    uvloop.run(serve(app, port, production))


if __name__ == "__main__":
    main()
