"""Streams that end before the provider's final count: aborted by the client, or cut off by the
provider, for every provider shape. Each is recorded (and charged) at what was consumed, marked as
an estimate; a cut stream ends with one error event in the provider's own shape, which the SDKs turn
into a readable error, and is recorded as a 502."""

from __future__ import annotations

import asyncio
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest
from aiohttp import ClientSession

from plugins.vkey.estimate import request_tokens, tokens_of
from plugins.vkey.keys import KeyLimits
from plugins.vkey.limits import usd_text
from plugins.vkey.usage import sse_data
from proxy_core.app import METRICS
from proxy_core.db import Row
from tests.plugins.vkey.conftest import Gateway, GatewayFactory
from tests.standins.llm_providers import WORDS

PROMPT = "Tell me about the gateway. " * 20
MESSAGES = [{"role": "user", "content": PROMPT}]
TEXT = "".join(WORDS)
PRICES = {
    "gpt-4o-mini": {"input": 0.15, "output": 0.60},
    "claude-standin": {"input": 3.0, "output": 15.0},
    "gemini-2.5-flash": {"input": 0.30, "output": 2.50},
}


@dataclass(frozen=True)
class Call:
    """One streaming call in one provider shape, as a client sends it."""

    name: str
    provider: str
    path: str
    body: dict[str, Any]
    key_header: str
    sse: bool = True
    separator: bytes = b"\n\n"  # between events (Gemini: "\r\n\r\n"), or elements of Gemini's array

    def headers(self, key: str) -> dict[str, str]:
        return {self.key_header: f"Bearer {key}" if self.key_header == "Authorization" else key}


CALLS = [
    Call(
        "openai-chat",
        "openai",
        "/chat/completions",
        {"model": "gpt-4o-mini", "stream": True, "messages": MESSAGES},
        "Authorization",
    ),
    Call(
        "openai-responses",
        "openai",
        "/responses",
        {"model": "gpt-4o-mini", "stream": True, "input": PROMPT},
        "Authorization",
    ),
    Call(
        "anthropic",
        "anthropic",
        "/messages",
        {"model": "claude-standin", "max_tokens": 64, "stream": True, "messages": MESSAGES},
        "x-api-key",
    ),
    Call(
        "gemini-sse",
        "gemini",
        "/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]},
        "x-goog-api-key",
        separator=b"\r\n\r\n",
    ),
    Call(
        "gemini-json-array",
        "gemini",
        "/models/gemini-2.5-flash:streamGenerateContent",
        {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]},
        "x-goog-api-key",
        sse=False,
        separator=b"\r\n",
    ),
]


def expected_input(call: Call, reported: dict[str, Any]) -> int:
    """What the row's input must be: the provider's count where its stream said so before it
    ended (Anthropic's ``message_start``, Gemini's running ``usageMetadata``), else the estimate."""
    if call.provider == "anthropic":
        return int(reported["input_tokens"]) + 3 + 5
    if call.provider == "gemini":
        return int(reported["promptTokenCount"])
    return request_tokens(orjson.dumps(call.body))


async def rows_after_leaving(gateway: Gateway, count: int = 1) -> list[Row]:
    for _ in range(200):  # the gateway notices the client left at its next write
        rows = await gateway.usage()
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.02)
    raise AssertionError("no usage row was recorded")


@pytest.mark.parametrize("call", CALLS, ids=[c.name for c in CALLS])
async def test_an_aborted_stream_is_recorded_and_charged_at_what_was_consumed(
    make_gateway: GatewayFactory, call: Call
) -> None:
    gateway = await make_gateway(prices=PRICES)
    gateway.standin.stall_after = 5  # the rest never comes before the client aborts
    ada = await gateway.issue("ada@example.com")
    async with ClientSession() as http:
        resp = await http.post(
            gateway.base(call.provider) + call.path, json=call.body, headers=call.headers(ada.key)
        )
        assert resp.status == 200
        for _ in range(4):  # four events (elements of Gemini's array), then the client aborts
            await resp.content.readuntil(call.separator)
        resp.close()
    (row,) = await rows_after_leaving(gateway)
    assert (row["status"], row["estimated"]) == (499, True)
    assert row["tokens_in"] == expected_input(call, gateway.standin.reported[-1])
    assert 1 <= row["tokens_out"] <= tokens_of(len(TEXT))  # the text streamed so far, never more than all
    price = PRICES["gpt-4o-mini" if call.provider == "openai" else row["model"]]
    cost = (row["tokens_in"] * price["input"] + row["tokens_out"] * price["output"]) / 1e6
    assert row["cost_usd"] == pytest.approx(cost) and cost > 0
    metrics = gateway.app[METRICS].render()
    assert f'vkey_estimated_total{{provider="{call.provider}"}} 1' in metrics
    assert f'vkey_requests_total{{provider="{call.provider}",status="499"}} 1' in metrics


@pytest.mark.parametrize("call", CALLS, ids=[c.name for c in CALLS])
async def test_a_stream_the_provider_cuts_off_ends_with_its_error_event_and_is_a_502(
    make_gateway: GatewayFactory, call: Call
) -> None:
    gateway = await make_gateway(prices=PRICES)
    gateway.standin.cut_after = 5
    ada = await gateway.issue("ada@example.com")
    async with ClientSession() as http:
        resp = await http.post(
            gateway.base(call.provider) + call.path, json=call.body, headers=call.headers(ada.key)
        )
        assert resp.status == 200
        if not call.sse:  # a JSON array cannot carry an error event: the connection is cut
            with pytest.raises(Exception, match="Response payload is not completed"):
                await resp.read()
        else:
            body = await resp.read()  # complete: the gateway ended it cleanly
            events = [e for e in body.replace(b"\r\n", b"\n").split(b"\n\n") if e.strip()]
            assert len(events) == 5 + 1
            last = orjson.loads(sse_data(events[-1]))
            message = "The provider's stream was cut off before it ended (gateway)."
            if call.provider == "anthropic":
                assert events[-1].startswith(b"event: error\n")
                assert last == {"type": "error", "error": {"type": "api_error", "message": message}}
            elif call.name == "openai-responses":
                assert events[-1].startswith(b"event: error\n")
                assert (last["type"], last["code"], last["message"]) == ("error", "bad_gateway", message)
                assert last["error"]["message"] == message  # where the AI SDK reads it
            elif call.provider == "gemini":
                assert last == {"error": {"code": 502, "message": message, "status": "UNAVAILABLE"}}
            else:
                assert last["error"]["message"] == message and last["error"]["type"] == "server_error"
    (row,) = await gateway.usage()
    assert (row["status"], row["estimated"]) == (502, True)
    assert row["tokens_in"] == expected_input(call, gateway.standin.reported[-1])
    assert row["tokens_out"] >= 1 and row["cost_usd"] > 0
    assert (
        f'vkey_requests_total{{provider="{call.provider}",status="502"}} 1' in gateway.app[METRICS].render()
    )


async def test_the_python_sdks_read_a_cut_stream_as_a_readable_error(make_gateway: GatewayFactory) -> None:
    from google import genai
    from google.genai import errors, types

    gateway = await make_gateway()
    gateway.standin.cut_after = 5
    ada = await gateway.issue("ada@example.com")
    message = "The provider's stream was cut off before it ended (gateway)."
    gpt = openai.AsyncOpenAI(api_key=ada.key, base_url=gateway.base("openai"), max_retries=0)
    with pytest.raises(openai.APIError, match="cut off before it ended"):
        async for _ in await gpt.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):  # type: ignore[arg-type]
            pass
    with pytest.raises(openai.APIError, match="cut off before it ended"):
        async for _ in await gpt.responses.create(model="gpt-4o-mini", input=PROMPT, stream=True):
            pass
    await gpt.close()
    claude = anthropic.AsyncAnthropic(api_key=ada.key, base_url=gateway.base("anthropic"), max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with claude.messages.stream(model="claude-standin", max_tokens=64, messages=MESSAGES) as stream:  # type: ignore[arg-type]
            async for _ in stream:
                pass
    assert caught.value.body["error"]["message"] == message  # type: ignore[index]
    await claude.close()
    client = genai.Client(
        api_key=ada.key, http_options=types.HttpOptions(base_url=gateway.base("google"), api_version="v1beta")
    )
    with pytest.raises(errors.ServerError, match="cut off before it ended"):
        async for _ in await client.aio.models.generate_content_stream(
            model="gemini-2.5-flash", contents=PROMPT
        ):
            pass
    assert [r["status"] for r in await gateway.usage()] == [502] * 4


async def test_a_budget_an_aborting_client_can_no_longer_get_around(make_gateway: GatewayFactory) -> None:
    """Every aborted OpenAI stream used to cost $0, so a sandbox that aborted its streams was never
    stopped; now each is charged its estimate and the budget holds."""
    gateway = await make_gateway(
        prices={"gpt-4o-mini": {"input": 1000.0, "output": 1000.0}},
        limits={"monthly_budget_usd": 0.5},
        spend_refresh_seconds=0.01,
    )
    gateway.standin.stall_after = 2  # the role chunk and a word, then the client aborts
    ada = await gateway.issue("ada@example.com")
    body = {"model": "gpt-4o-mini", "stream": True, "messages": MESSAGES}
    statuses = []
    async with ClientSession() as http:
        for attempt in range(1, 20):
            resp = await http.post(
                gateway.base("openai") + "/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {ada.key}"},
            )
            statuses.append(resp.status)
            if resp.status != 200:
                refusal = await resp.json()
                break
            await resp.content.readuntil(b"\n\n")
            resp.close()
            await rows_after_leaving(gateway, attempt)
    assert statuses[-1] == 402 and statuses[:-1] == [200] * (len(statuses) - 1)
    rows = await gateway.usage()
    spent = sum(r["cost_usd"] for r in rows)
    assert spent >= 0.5 and all(r["estimated"] and r["status"] == 499 for r in rows)
    assert len(rows) == len(statuses) - 1 <= 5  # about 0.15 $ a call: stopped after a handful
    assert refusal["error"]["message"] == f"Monthly budget of $0.50 reached (spent {usd_text(spent)})."


def default_prices() -> dict[str, Any]:
    """The price table shipped in the repository's ``proxy.toml``."""
    config = tomllib.loads((Path(__file__).parents[3] / "proxy.toml").read_text())
    (vkey,) = [stage for stage in config["pipeline"] if stage["stage"] == "vkey"]
    return dict(vkey["prices"])


async def test_embeddings_are_counted_and_priced(make_gateway: GatewayFactory) -> None:
    """OpenAI reports embedding tokens (priced by the default table); Gemini reports none, so the
    input is estimated from the request."""
    prices = default_prices()
    gateway = await make_gateway(prices=prices)
    ada = await gateway.issue("ada@example.com")
    gpt = openai.AsyncOpenAI(api_key=ada.key, base_url=gateway.base("openai"), max_retries=0)
    await gpt.embeddings.create(
        model="text-embedding-3-small", input=["a first text to embed", "and a second"]
    )
    await gpt.close()
    row = await gateway.last_usage()
    assert (row["tokens_in"], row["estimated"]) == (gateway.standin.reported[-1]["prompt_tokens"], False)
    assert row["cost_usd"] == pytest.approx(
        row["tokens_in"] * prices["text-embedding-3-small"]["input"] / 1e6
    )
    assert row["cost_usd"] > 0

    from google import genai
    from google.genai import types

    client = genai.Client(
        api_key=ada.key, http_options=types.HttpOptions(base_url=gateway.base("google"), api_version="v1beta")
    )
    texts = ["What is the meaning of life?", "How much wood would a woodchuck chuck?"]
    result = await client.aio.models.embed_content(model="gemini-embedding-001", contents=texts)
    assert result.embeddings is not None and len(result.embeddings) == 2
    row = await gateway.last_usage()
    sent = gateway.standin.received[-1].body
    assert (row["model"], row["estimated"], row["tokens_out"]) == ("gemini-embedding-001", True, 0)
    assert row["tokens_in"] == request_tokens(sent) == tokens_of(sum(len(t) for t in texts))
    assert row["cost_usd"] == pytest.approx(row["tokens_in"] * prices["gemini-embedding-001"]["input"] / 1e6)


def test_amounts_are_printed_with_the_decimals_they_need() -> None:
    assert [usd_text(x) for x in (50, 0.5, 0.001, 0.000125, 12.3456, 0)] == [
        "$50.00",
        "$0.50",
        "$0.001",
        "$0.000125",
        "$12.3456",
        "$0.00",
    ]


def test_the_input_estimate_counts_text_and_not_binary_payloads() -> None:
    image = "data:image/png;base64," + "A" * 40_000
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "x" * 400},
                    {"type": "image_url", "image_url": {"url": image}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "image", "source": {"type": "base64", "data": "A" * 40_000}}],
            },
        ],
    }
    assert request_tokens(orjson.dumps(body)) == 100 + 2 * 258
    assert request_tokens(b"not json") == 0 and request_tokens(None) == 0
    assert request_tokens(orjson.dumps({"input": "héllo"})) == 2  # six UTF-8 bytes


async def test_python_sdks_give_up_at_once_on_a_quota_refusal_and_retry_a_providers_429(
    make_gateway: GatewayFactory,
) -> None:
    """Each SDK with its retries on: the gateway's daily-token refusal is one attempt and a readable
    error; the provider's own 429 is retried and the call then succeeds."""
    from google import genai
    from google.genai import errors, types

    gateway = await make_gateway()

    def clients(key: str) -> list[Any]:
        retry = types.HttpRetryOptions(attempts=3, initial_delay=0.01, max_delay=0.05)
        options = types.HttpOptions(
            base_url=gateway.base("google"), api_version="v1beta", retry_options=retry
        )
        return [
            openai.AsyncOpenAI(api_key=key, base_url=gateway.base("openai"), max_retries=2),
            anthropic.AsyncAnthropic(api_key=key, base_url=gateway.base("anthropic"), max_retries=2),
            genai.Client(api_key=key, http_options=options),
        ]

    def calls(gpt: Any, claude: Any, gemini: Any) -> list[Any]:
        return [
            gpt.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES),
            claude.messages.create(model="claude-standin", max_tokens=8, messages=MESSAGES),
            gemini.aio.models.generate_content(model="gemini-2.5-flash", contents=PROMPT),
        ]

    bo = await gateway.issue("bo@example.com")
    for call in calls(*clients(bo.key)):  # the provider's own 429, once each: retried, then answered
        gateway.standin.rate_limited = 1
        await call
    assert len(gateway.standin.received) == 6 and gateway.standin.rate_limited == 0

    ada = await gateway.issue("ada@example.com", limits=KeyLimits(tokens_per_day=1))
    spender, *_ = clients(ada.key)
    await spender.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # the day's tokens, spent
    expected = (openai.APIStatusError, anthropic.APIStatusError, errors.ClientError)
    for call, error in zip(calls(*clients(ada.key)), expected, strict=True):
        with pytest.raises(error, match="Daily token limit of 1 reached"):
            await call
    assert len(gateway.standin.received) == 7  # nothing more reached the provider
    refused = gateway.app[METRICS].render()
    for provider in ("openai", "anthropic", "google"):  # one attempt each, no retry
        assert f'vkey_refused_total{{provider="{provider}",reason="tokens_per_day"}} 1' in refused
