"""The gateway in front of the provider stand-ins, on real loopback servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from plugins.vkey.keys import KeyRecord
from plugins.vkey.ledger import UsageRow
from plugins.vkey.lifecycle import KeyListing, KeyService
from plugins.vkey.stage import STORE, VKeyStage
from proxy_core import Readiness
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


class MemoryBackend:
    """Storage for the gateway tests that do not exercise the database (the stage and the lifecycle
    service talk to it through the same interfaces as to the database-backed store)."""

    name = "vkey-memory"

    def __init__(self) -> None:
        self.keys: dict[str, tuple[str, KeyRecord]] = {}  # id → (email, record)
        self.rows: list[UsageRow] = []

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def readiness(self) -> Readiness:
        return Readiness(True)

    async def find(self, key_hash: str) -> KeyRecord | None:
        return next((r for _, r in self.keys.values() if r.key_hash == key_hash), None)

    async def spend_since(
        self, user_id: str, day_start: datetime, month_start: datetime
    ) -> tuple[int, float]:
        mine = [r for r in self.rows if r.user_id == user_id]
        tokens = sum(r.input_tokens + r.output_tokens for r in mine if r.at >= day_start)
        return tokens, sum(r.cost_usd or 0.0 for r in mine if r.at >= month_start)

    def record(self, row: UsageRow) -> None:
        self.rows.append(row)

    async def keys_of(self, email: str) -> Sequence[KeyRecord]:
        return sorted((r for e, r in self.keys.values() if e == email), key=lambda r: r.created_at)

    async def insert_key(self, email: str, record: KeyRecord) -> None:
        self.keys[record.id] = (email, record)

    async def expire_keys(self, ids: Sequence[str], at: datetime) -> None:
        for key_id in ids:
            email, record = self.keys[key_id]
            self.keys[key_id] = (email, replace(record, expires_at=at))

    async def revoke_keys(self, ids: Sequence[str], at: datetime) -> None:
        for key_id in ids:
            email, record = self.keys[key_id]
            self.keys[key_id] = (email, replace(record, revoked_at=at))

    async def set_user_disabled(self, email: str, disabled: bool) -> int:
        mine = [k for k, (e, _) in self.keys.items() if e == email]
        for key_id in mine:
            self.keys[key_id] = (email, replace(self.keys[key_id][1], user_disabled=disabled))
        return len(mine)

    async def all_keys(self) -> Sequence[KeyListing]:
        return [KeyListing(e, r) for e, r in self.keys.values()]


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def backend_factory(backend: MemoryBackend) -> Callable[[], Any]:
    return lambda: backend


@pytest.fixture
def keys(backend: MemoryBackend) -> KeyService:
    return KeyService(backend)
