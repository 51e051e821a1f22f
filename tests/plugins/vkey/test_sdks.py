"""The official SDKs pointed at the gateway, streaming and not: each call reaches the stand-in with the
real key (never the virtual one), the client sees exactly what the provider sent, and the usage row
matches what the stand-in reported."""

from __future__ import annotations

import anthropic
import openai
import orjson
import pytest
from aiohttp import ClientSession

from plugins.vkey.stage import VKeyStage
from tests.plugins.vkey.conftest import REAL, GatewayFactory

PRICES = {
    "gpt-4o-mini": {"input": 0.15, "output": 0.60, "cached_input": 0.075},
    "claude-standin": {"input": 3.0, "output": 15.0, "cached_input": 0.3, "cache_write": 3.75},
    "gemini-2.5-flash": {"input": 0.30, "output": 2.50},
}


def assert_real_key_only(gateway_standin: object, provider: str, header: str, value: str) -> None:
    received = gateway_standin.received[-1]  # type: ignore[attr-defined]
    assert received.headers[header.lower()] == value
    everything = orjson.dumps(received.headers).decode() + received.query_string
    assert "vk_" not in everything
    for private in ("cookie", "x-forwarded-for", "forwarded"):
        assert private not in received.headers


async def test_openai_chat_non_streaming(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(prices=PRICES)
    issued = await gateway.issue("ada@example.com")
    client = openai.AsyncOpenAI(api_key=issued.key, base_url=gateway.base("openai"), max_retries=0)
    reply = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
    )
    assert reply.choices[0].message.content == "Hello from the stand-in provider."
    assert_real_key_only(gateway.standin, "openai", "Authorization", f"Bearer {REAL['openai']}")
    reported = gateway.standin.reported[-1]
    row = await gateway.last_usage()
    assert (row["user_id"], row["key_id"], row["provider"], row["status"]) == (
        issued.user.id,
        issued.record.id,
        "openai",
        200,
    )
    assert row["model"] == reported["model"] == "gpt-4o-mini-2024-07-18"
    assert row["tokens_in"] == reported["prompt_tokens"]
    assert row["tokens_out"] == reported["completion_tokens"]
    assert row["cached_tokens"] == 2
    fresh = reported["prompt_tokens"] - 2
    assert row["cost_usd"] == pytest.approx((fresh * 0.15 + 2 * 0.075 + 7 * 0.60) / 1e6)
    await client.close()


async def test_openai_chat_streaming_gets_usage_without_the_client_seeing_it(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway(prices=PRICES)
    issued = await gateway.issue("ada@example.com")
    client = openai.AsyncOpenAI(api_key=issued.key, base_url=gateway.base("openai"), max_retries=0)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from the stand-in provider."
    assert all(c.choices for c in chunks)  # no extra usage-only chunk
    assert all(c.usage is None for c in chunks)
    sent = orjson.loads(gateway.standin.received[-1].body)
    assert sent["stream_options"] == {"include_usage": True}  # the gateway asked for usage
    row = await gateway.last_usage()
    assert row["tokens_in"] == gateway.standin.reported[-1]["prompt_tokens"]
    assert row["tokens_out"] == 7 and row["reported"]
    await client.close()


async def test_openai_stream_is_byte_for_byte_what_the_client_asked_for(make_gateway: GatewayFactory) -> None:
    """The same request straight to the stand-in and through the gateway yields the same bytes."""
    gateway = await make_gateway()
    issued = await gateway.issue("ada@example.com")
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    direct_url = gateway.stage.providers["openai"].upstream
    async with ClientSession() as http:
        via = await http.post(
            gateway.base("openai") + "/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {issued.key}"},
        )
        assert via.headers["X-Accel-Buffering"] == "no"
        assert float(via.headers["x-gateway-overhead-ms"]) >= 0
        through = await via.read()
        direct = await (
            await http.post(
                f"{direct_url}/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {REAL['openai']}"},
            )
        ).read()
    assert through == direct
    assert (await gateway.last_usage())["tokens_out"] == 7


async def test_openai_stream_with_usage_requested_passes_it_through(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway()
    issued = await gateway.issue("ada@example.com")
    client = openai.AsyncOpenAI(api_key=issued.key, base_url=gateway.base("openai"), max_retries=0)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (await gateway.last_usage())["tokens_in"] == chunks[-1].usage.prompt_tokens
    await client.close()


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_responses(make_gateway: GatewayFactory, stream: bool) -> None:
    gateway = await make_gateway()
    issued = await gateway.issue("ada@example.com")
    client = openai.AsyncOpenAI(api_key=issued.key, base_url=gateway.base("openai"), max_retries=0)
    if stream:
        events = [
            e async for e in await client.responses.create(model="gpt-4o-mini", input="Hi", stream=True)
        ]
        assert events[-1].type == "response.completed"
    else:
        reply = await client.responses.create(model="gpt-4o-mini", input="Hi")
        assert reply.output_text == "Hello from the stand-in provider."
    reported = gateway.standin.reported[-1]
    row = await gateway.last_usage()
    assert (row["tokens_in"], row["tokens_out"]) == (reported["input_tokens"], reported["output_tokens"])
    assert row["model"] == "gpt-4o-mini"
    await client.close()


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_messages(make_gateway: GatewayFactory, stream: bool) -> None:
    gateway = await make_gateway(prices=PRICES)
    issued = await gateway.issue("bo@example.com")
    client = anthropic.AsyncAnthropic(api_key=issued.key, base_url=gateway.base("anthropic"), max_retries=0)
    request = {"model": "claude-standin", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}
    if stream:
        async with client.messages.stream(**request) as events:  # type: ignore[arg-type]
            text = "".join([t async for t in events.text_stream])
    else:
        reply = await client.messages.create(**request)  # type: ignore[arg-type]
        text = reply.content[0].text  # type: ignore[union-attr]
    assert text == "Hello from the stand-in provider."
    assert_real_key_only(gateway.standin, "anthropic", "Authorization", f"Bearer {REAL['anthropic']}")
    reported = gateway.standin.reported[-1]
    row = await gateway.last_usage()
    fresh = reported["input_tokens"]
    assert row["tokens_in"] == fresh + 3 + 5
    assert (row["cached_tokens"], row["cache_write_tokens"], row["tokens_out"]) == (5, 3, 7)
    expected = (fresh * 3.0 + 5 * 0.3 + 3 * 3.75 + 7 * 15.0) / 1e6
    assert row["cost_usd"] == pytest.approx(expected)
    await client.close()


@pytest.mark.parametrize(
    ("method", "query", "where"),
    [
        ("generateContent", "", "header"),
        ("streamGenerateContent", "alt=sse", "header"),
        ("streamGenerateContent", "", "query"),
        ("generateContent", "", "query"),
    ],
)
async def test_gemini(
    make_gateway: GatewayFactory,
    method: str,
    query: str,
    where: str,
) -> None:
    gateway = await make_gateway(prices=PRICES)
    issued = await gateway.issue("cy@example.com")
    url = f"{gateway.base('gemini')}/models/gemini-2.5-flash:{method}"
    params = dict(p.split("=") for p in query.split("&") if p)
    headers = {}
    if where == "header":
        headers["x-goog-api-key"] = issued.key
    else:
        params["key"] = issued.key
    async with ClientSession() as http:
        body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
        resp = await http.post(url, json=body, params=params, headers=headers)
        assert resp.status == 200, await resp.text()
        await resp.read()
    received = gateway.standin.received[-1]
    if where == "header":
        assert received.headers["x-goog-api-key"] == REAL["gemini"]
    else:
        assert f"key={REAL['gemini']}" in received.query_string
    assert "vk_" not in received.query_string + orjson.dumps(received.headers).decode()
    reported = gateway.standin.reported[-1]
    row = await gateway.last_usage()
    assert row["model"] == "gemini-2.5-flash"
    assert row["tokens_in"] == reported["promptTokenCount"]
    assert row["tokens_out"] == reported["candidatesTokenCount"] + reported["thoughtsTokenCount"]
    assert row["cost_usd"] == pytest.approx((row["tokens_in"] * 0.30 + row["tokens_out"] * 2.50) / 1e6)


async def test_google_genai_sdk(make_gateway: GatewayFactory) -> None:
    from google import genai
    from google.genai import types

    gateway = await make_gateway()
    issued = await gateway.issue("cy@example.com")
    client = genai.Client(
        api_key=issued.key,
        http_options=types.HttpOptions(base_url=gateway.base("google"), api_version="v1beta"),
    )
    reply = await client.aio.models.generate_content(model="gemini-2.5-flash", contents="Hi")
    assert reply.text == "Hello from the stand-in provider."
    text = ""
    async for chunk in await client.aio.models.generate_content_stream(
        model="gemini-2.5-flash", contents="Hi"
    ):
        text += chunk.text or ""
    assert text == "Hello from the stand-in provider."
    assert [r["provider"] for r in await gateway.usage()] == ["google", "google"]
    assert all(r["tokens_out"] == 11 for r in await gateway.usage())
    assert gateway.standin.received[-1].headers["x-goog-api-key"] == REAL["gemini"]


async def test_composio(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway()
    issued = await gateway.issue("di@example.com")
    async with ClientSession() as http:
        resp = await http.get(f"{gateway.base('composio')}/api/v3/tools", headers={"x-api-key": issued.key})
        assert (await resp.json())["items"][0]["slug"] == "GITHUB_STAR_A_REPOSITORY"
        resp = await http.post(
            f"{gateway.base('composio')}/api/v3/tools/execute/GITHUB_STAR_A_REPOSITORY",
            json={"arguments": {}},
            headers={"x-api-key": issued.key},
        )
        assert (await resp.json())["successful"] is True
    assert_real_key_only(gateway.standin, "composio", "x-api-key", REAL["composio"])
    assert [(r["provider"], r["status"], r["tokens_in"]) for r in await gateway.usage()] == [
        ("composio", 200, 0)
    ] * 2


async def test_compressed_bodies_pass_through_and_usage_is_still_read(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway()
    issued = await gateway.issue("ada@example.com")
    async with ClientSession(auto_decompress=False) as http:
        resp = await http.post(
            gateway.base("openai") + "/chat/completions",
            json={"model": "gpt-4o-mini", "messages": []},
            headers={"Authorization": f"Bearer {issued.key}", "Accept-Encoding": "gzip, br, zstd"},
        )
        assert resp.headers["Content-Encoding"] == "gzip"
        import gzip

        assert orjson.loads(gzip.decompress(await resp.read()))["usage"]["completion_tokens"] == 7
    assert gateway.standin.received[-1].headers["accept-encoding"] == "gzip"
    assert (await gateway.last_usage())["tokens_out"] == 7


async def test_activity_is_recorded_and_batched(make_gateway: GatewayFactory) -> None:
    from plugins.vkey import gateway_activity

    gateway = await make_gateway()
    batches: list[dict[str, float]] = []
    gateway_activity(gateway.app).listen(lambda seen: batches.append(dict(seen)))
    issued = await gateway.issue("ada@example.com")
    client = openai.AsyncOpenAI(api_key=issued.key, base_url=gateway.base("openai"), max_retries=0)
    for _ in range(3):
        await client.chat.completions.create(model="gpt-4o-mini", messages=[])
    import asyncio

    for _ in range(100):
        if batches:
            break
        await asyncio.sleep(0.01)
    assert list(batches[0]) == [issued.user.id]
    assert gateway_activity(gateway.app).last_seen(issued.user.id) is not None
    assert isinstance(gateway.stage, VKeyStage)
    await client.close()
