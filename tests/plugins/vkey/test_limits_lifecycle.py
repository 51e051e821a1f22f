"""Limits answered in the provider's shape, key rotation with a grace period, and spend never lost."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import anthropic
import openai
import pytest
from aiohttp import ClientSession

from plugins.vkey.keys import display_prefix, owner_of
from plugins.vkey.lifecycle import KeyExists, KeyService, UnknownUser
from plugins.vkey.memory import MemoryStore
from tests.plugins.vkey.conftest import GatewayFactory

MESSAGES = [{"role": "user", "content": "Hi"}]


async def test_requests_per_minute_is_429_with_retry_after(
    make_gateway: GatewayFactory, keys: KeyService
) -> None:
    gateway = await make_gateway(limits={"requests_per_minute": 2})
    ada = await keys.issue("ada@example.com", "user_ada")
    client = openai.AsyncOpenAI(api_key=ada.key, base_url=gateway.base("openai"), max_retries=0)
    for _ in range(2):
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    assert int(caught.value.response.headers["Retry-After"]) >= 1
    bo = await keys.issue("bo@example.com", "user_bo")  # another user has their own budget
    other = openai.AsyncOpenAI(api_key=bo.key, base_url=gateway.base("openai"), max_retries=0)
    await other.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    await client.close()
    await other.close()


async def test_tokens_per_day_and_monthly_budget(
    make_gateway: GatewayFactory, keys: KeyService, backend: MemoryStore
) -> None:
    gateway = await make_gateway(
        limits={"tokens_per_day": 20, "monthly_budget_usd": 0.01},
        prices={"claude-standin": {"input": 1000.0, "output": 1000.0}},
    )
    ada = await keys.issue("ada@example.com", "user_ada")
    client = openai.AsyncOpenAI(api_key=ada.key, base_url=gateway.base("openai"), max_retries=0)
    await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert backend.rows[-1].input_tokens + backend.rows[-1].output_tokens >= 20
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert "Daily token limit" in caught.value.message
    assert caught.value.response.headers["x-should-retry"] == "false"
    await client.close()

    bo = await keys.issue("bo@example.com", "user_bo")
    claude = anthropic.AsyncAnthropic(api_key=bo.key, base_url=gateway.base("anthropic"), max_retries=0)
    await claude.messages.create(model="claude-standin", max_tokens=8, messages=MESSAGES)  # type: ignore[arg-type]
    assert (backend.rows[-1].cost_usd or 0) > 0.01
    with pytest.raises(anthropic.APIStatusError) as refused:
        await claude.messages.create(model="claude-standin", max_tokens=8, messages=MESSAGES)  # type: ignore[arg-type]
    assert refused.value.status_code == 402
    assert refused.value.body["error"]["type"] == "billing_error"  # type: ignore[index]
    assert "Monthly budget" in refused.value.body["error"]["message"]  # type: ignore[index]
    await claude.close()


async def test_rotation_keeps_the_old_key_working_for_the_grace_period(
    make_gateway: GatewayFactory, backend: MemoryStore
) -> None:
    gateway = await make_gateway(key_cache_seconds=0)
    service = KeyService(backend, grace=timedelta(hours=1))
    old = await service.issue("ada@example.com", "user_ada")
    with pytest.raises(KeyExists):
        await service.issue("ada@example.com")
    new = await service.rotate("ada@example.com")
    assert new.key != old.key and owner_of(new.key) == "user_ada"

    async def status(key: str) -> int:
        async with ClientSession() as http:
            resp = await http.post(
                gateway.base("openai") + "/chat/completions",
                json={"model": "m", "messages": []},
                headers={"Authorization": f"Bearer {key}"},
            )
            return resp.status

    assert (await status(old.key), await status(new.key)) == (200, 200)
    await service.rotate("ada@example.com", grace=timedelta(0))
    assert await status(new.key) == 401  # its grace ended at once
    listing = await service.list()
    assert [item.state for item in listing] == ["expired", "expired", "active"]  # both old keys ended
    assert all(item.record.prefix.startswith("vk_user_ada_") for item in listing)
    assert all(len(item.record.prefix) == len(display_prefix(old.key)) for item in listing)
    assert await service.revoke("ada@example.com") == 3
    with pytest.raises(UnknownUser):
        await service.revoke("nobody@example.com")
    assert old.key not in repr(old)


async def test_a_stream_the_client_abandons_still_records_its_usage(
    make_gateway: GatewayFactory, keys: KeyService, backend: MemoryStore
) -> None:
    gateway = await make_gateway(event_delay=0.05)
    ada = await keys.issue("ada@example.com", "user_ada")
    async with ClientSession() as http:
        resp = await http.post(
            gateway.base("anthropic") + "/messages",
            json={"model": "claude-standin", "stream": True, "messages": MESSAGES},
            headers={"x-api-key": ada.key},
        )
        first = await resp.content.readuntil(b"\n\n")
        assert b"message_start" in first
        resp.close()  # the client goes away mid-stream
    for _ in range(100):
        if backend.rows:
            break
        await asyncio.sleep(0.02)
    row = backend.rows[-1]
    assert row.status == 499
    assert row.input_tokens == gateway.standin.reported[-1]["input_tokens"] + 3 + 5  # from message_start
