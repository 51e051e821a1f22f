"""Limits answered in the provider's shape (the stage's and a key's own), key rotation with a grace
period through the gateway, and spend never lost, also when the client leaves mid-stream."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import anthropic
import openai
import pytest
from aiohttp import ClientSession

from plugins.vkey.keys import KeyLimits, display_prefix, owner_of
from plugins.vkey.lifecycle import KeyExists
from plugins.vkey.limits import usd_text
from proxy_core.db import NotFound, Row
from tests.plugins.vkey.conftest import Gateway, GatewayFactory

MESSAGES = [{"role": "user", "content": "Hi"}]


async def test_requests_per_minute_is_429_with_retry_after(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(limits={"requests_per_minute": 2})
    ada = await gateway.issue("ada@example.com")
    client = openai.AsyncOpenAI(api_key=ada.key, base_url=gateway.base("openai"), max_retries=0)
    for _ in range(2):
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    assert int(caught.value.response.headers["Retry-After"]) >= 1
    bo = await gateway.issue("bo@example.com", limits=KeyLimits(requests_per_minute=0))  # unlimited key
    other = openai.AsyncOpenAI(api_key=bo.key, base_url=gateway.base("openai"), max_retries=0)
    for _ in range(3):
        await other.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    await client.close()
    await other.close()


@pytest.mark.parametrize("rate_limiter", ["process", "store"])
async def test_requests_per_minute_counted_in_the_store_hold_across_replicas(
    make_gateway: GatewayFactory, pg_url: str, rate_limiter: str
) -> None:
    limits = {"requests_per_minute": 3, "rate_limiter": rate_limiter}
    one, two = [await make_gateway(database=pg_url, limits=limits) for _ in range(2)]  # one Postgres
    ada = await one.issue("ada@example.com", limits=KeyLimits(requests_per_minute=2))  # the key's own wins
    first, second = [
        openai.AsyncOpenAI(api_key=ada.key, base_url=replica.base("openai"), max_retries=0)
        for replica in (one, two)
    ]
    await first.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    await second.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    counters = await one.db.fetch("SELECT hits FROM rate_limits WHERE name = 'vkey.requests_per_minute'")
    if rate_limiter == "store":
        assert [row["hits"] for row in counters] == [2]
        with pytest.raises(openai.RateLimitError) as caught:
            await first.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        assert 1 <= int(caught.value.response.headers["Retry-After"]) <= 61
    else:  # each replica counts on its own: the first has seen one request of two
        assert counters == []
        await first.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    await first.close()
    await second.close()


async def test_tokens_per_day_and_monthly_budget(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(
        limits={"tokens_per_day": 20, "monthly_budget_usd": 0.01},
        prices={"claude-standin": {"input": 1000.0, "output": 1000.0}},
    )
    ada = await gateway.issue("ada@example.com")
    client = openai.AsyncOpenAI(api_key=ada.key, base_url=gateway.base("openai"), max_retries=0)
    await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    row = await gateway.last_usage()
    assert row["tokens_in"] + row["tokens_out"] >= 20
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.status_code == 402  # a status no client retries: it cannot succeed today
    assert "Daily token limit of 20 reached" in caught.value.message
    assert caught.value.body["code"] == "insufficient_quota"  # type: ignore[index]
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert 0 < int(caught.value.response.headers["Retry-After"]) <= 86_400  # when the day resets
    await client.close()

    bo = await gateway.issue("bo@example.com")
    claude = anthropic.AsyncAnthropic(api_key=bo.key, base_url=gateway.base("anthropic"), max_retries=0)
    await claude.messages.create(model="claude-standin", max_tokens=8, messages=MESSAGES)  # type: ignore[arg-type]
    assert ((await gateway.last_usage())["cost_usd"] or 0) > 0.01
    with pytest.raises(anthropic.APIStatusError) as refused:
        await claude.messages.create(model="claude-standin", max_tokens=8, messages=MESSAGES)  # type: ignore[arg-type]
    assert refused.value.status_code == 402
    assert refused.value.body["error"]["type"] == "billing_error"  # type: ignore[index]
    spent = usd_text((await gateway.last_usage())["cost_usd"])
    assert refused.value.body["error"]["message"] == f"Monthly budget of $0.01 reached (spent {spent})."  # type: ignore[index]
    await claude.close()


async def test_a_keys_own_limits_replace_the_stages_and_survive_rotation(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()  # the stage itself sets no limits
    ada = await gateway.issue("ada@example.com", limits=KeyLimits(tokens_per_day=20))
    client = openai.AsyncOpenAI(api_key=ada.key, base_url=gateway.base("openai"), max_retries=0)
    await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    with pytest.raises(openai.APIStatusError):
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    rotated = await gateway.keys.rotate("ada@example.com")  # the user's spend stays; so does the limit
    assert rotated.record.limits == KeyLimits(tokens_per_day=20)
    fresh = openai.AsyncOpenAI(api_key=rotated.key, base_url=gateway.base("openai"), max_retries=0)
    with pytest.raises(openai.APIStatusError):
        await fresh.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    await client.close()
    await fresh.close()


async def test_rotation_keeps_the_old_key_working_for_the_grace_period(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(grace=timedelta(hours=1))
    old = await gateway.issue("ada@example.com")
    with pytest.raises(KeyExists):
        await gateway.keys.issue("ada@example.com")
    new = await gateway.keys.rotate("ada@example.com")
    assert new.key != old.key and owner_of(new.key) == str(old.user.id)

    async def status(key: str) -> tuple[int, str]:
        async with ClientSession() as http:
            resp = await http.post(
                gateway.base("openai") + "/chat/completions",
                json={"model": "m", "messages": []},
                headers={"Authorization": f"Bearer {key}"},
            )
            return resp.status, (await resp.json())["error"]["message"] if resp.status != 200 else ""

    assert (await status(old.key), await status(new.key)) == ((200, ""), (200, ""))
    await gateway.keys.rotate("ada@example.com", grace=timedelta(0))
    assert await status(new.key) == (401, "API key was rotated; use the new key")  # its grace ended at once
    listing = await gateway.keys.list()
    assert [item.state for item in listing] == ["rotated", "rotated", "active"]
    assert {item.email for item in listing} == {"ada@example.com"}
    assert all(
        item.record.prefix == display_prefix(k.key) for item, k in zip(listing, (old, new), strict=False)
    )
    assert await gateway.keys.revoke("ada@example.com") == 3
    with pytest.raises(NotFound):
        await gateway.keys.revoke("nobody@example.com")
    assert old.key not in repr(old)


async def _usage_after_leaving(gateway: Gateway) -> Row:
    for _ in range(100):  # the gateway notices the client left at its next write
        rows = await gateway.usage()
        if rows:
            return rows[-1]
        await asyncio.sleep(0.02)
    raise AssertionError("no usage row was recorded")


async def test_an_anthropic_stream_the_client_abandons_still_records_its_usage(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    gateway.standin.stall_after = 3  # the rest never comes before the client leaves
    ada = await gateway.issue("ada@example.com")
    async with ClientSession() as http:
        resp = await http.post(
            gateway.base("anthropic") + "/messages",
            json={"model": "claude-standin", "stream": True, "messages": MESSAGES},
            headers={"x-api-key": ada.key},
        )
        first = await resp.content.readuntil(b"\n\n")
        assert b"message_start" in first
        resp.close()  # the client goes away mid-stream
    row = await _usage_after_leaving(gateway)
    assert (row["status"], row["reported"]) == (499, True)
    assert row["tokens_in"] == gateway.standin.reported[-1]["input_tokens"] + 3 + 5  # from message_start
    assert row["tokens_out"] < 7  # the final count never came


async def test_an_openai_stream_the_client_abandons_is_recorded_as_499(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway()
    gateway.standin.stall_after = 3  # the rest never comes before the client leaves
    ada = await gateway.issue("ada@example.com")
    async with ClientSession() as http:
        resp = await http.post(
            gateway.base("openai") + "/chat/completions",
            json={"model": "gpt-4o-mini", "stream": True, "messages": MESSAGES},
            headers={"Authorization": f"Bearer {ada.key}"},
        )
        assert b'"role":"assistant"' in await resp.content.readuntil(b"\n\n")
        resp.close()
    row = await _usage_after_leaving(gateway)
    # OpenAI reports usage only in the final chunk, which never came: the row is an estimate.
    assert (row["status"], row["reported"], row["estimated"]) == (499, False, True)
    assert row["tokens_in"] > 0
    assert (row["user_id"], row["key_id"], row["provider"]) == (ada.user.id, ada.record.id, "openai")
