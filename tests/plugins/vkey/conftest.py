"""The gateway in front of the provider stand-ins, on real loopback servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from plugins.vkey.lifecycle import KeyService
from plugins.vkey.memory import MemoryStore
from plugins.vkey.stage import STORE, VKeyStage
from proxy_core.stage import StageContext
from proxy_core.testing import make_app, run_proxy, stage
from tests.standins.llm_providers import STATE, StandinState, standin_app

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

    def base(self, provider: str) -> str:
        return str(self.url / "api" / "gateway" / provider)


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
    aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch, backend_factory: Callable[[], Any]
) -> AsyncIterator[GatewayFactory]:
    """A gateway in front of a fresh stand-in, served by the production runner (the same access log,
    limits and disconnect handling as ``shmastra-cloud serve``); options go to the stage's table."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    async with AsyncExitStack() as running:

        async def make(config: str = "", event_delay: float = 0.0, **options: Any) -> Gateway:
            # The stand-in logs no request lines: they would carry its keys into the captured logs.
            standin = await aiohttp_server(standin_app(REAL, event_delay), access_log=None)
            options.setdefault("providers", provider_urls(standin))
            options.setdefault("activity_flush_seconds", 0.05)
            build = stage(VKeyStage, **options)
            made: list[VKeyStage] = []

            def factory(context: StageContext) -> VKeyStage:
                context.resources[STORE] = backend_factory()
                built = build(context)
                assert isinstance(built, VKeyStage)
                made.append(built)
                return built

            app = make_app([factory], config)
            url = await running.enter_async_context(run_proxy(app))
            return Gateway(url, app, standin.app[STATE], made[0])

        yield make


@pytest.fixture
def backend() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def backend_factory(backend: MemoryStore) -> Callable[[], Any]:
    return lambda: backend


@pytest.fixture
def keys(backend: MemoryStore) -> KeyService:
    return KeyService(backend)
