"""The Vercel AI SDK (``ai`` 5 with ``@ai-sdk/openai``, ``@ai-sdk/anthropic``, ``@ai-sdk/google``:
what Mastra apps in the sandboxes use) through the gateway, in Node, for every provider: answers
intact and streamed in pieces, rows exact; an aborted stream charged at an estimate; a cut stream a
readable error; a quota refusal final at once while a provider's own 429 is retried."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from proxy_core.app import METRICS
from tests.node_clients import run_script
from tests.plugins.vkey.conftest import Gateway, GatewayFactory
from tests.standins.llm_providers import WORDS

pytestmark = pytest.mark.slow

TEXT = "".join(WORDS)
PROMPT = "Tell me about the gateway. " * 20
PROVIDERS = {  # the AI SDK provider → (gateway provider, model)
    "openai-chat": ("openai", "gpt-4o-mini"),
    "openai-responses": ("openai", "gpt-4o-mini"),
    "anthropic": ("anthropic", "claude-standin"),
    "google": ("google", "gemini-2.5-flash"),
}


# Events each stand-in stream has sent once four words went out (before any closing event).
STALL_AFTER_FOUR_WORDS = {"openai-chat": 5, "openai-responses": 7, "anthropic": 7, "google": 4}


async def ai_sdk(node_clients: Path, gateway: Gateway, provider: str, key: str, **scenario: Any) -> Any:
    name, model = PROVIDERS[provider]
    scenario = {
        "provider": provider,
        "baseURL": gateway.base(name),
        "apiKey": key,
        "model": model,
        "prompt": PROMPT,
        **scenario,
    }
    return await run_script(node_clients, "ai_sdk.mjs", scenario)


def reported_counts(provider: str, reported: dict[str, Any]) -> tuple[int, int]:
    """(input, output) as the gateway records them from what the stand-in reported."""
    if provider.startswith("openai"):
        return reported.get("prompt_tokens", reported.get("input_tokens", 0)), reported.get(
            "completion_tokens", reported.get("output_tokens", 0)
        )
    if provider == "anthropic":
        return reported["input_tokens"] + 3 + 5, reported["output_tokens"]
    return reported["promptTokenCount"], reported["candidatesTokenCount"] + reported["thoughtsTokenCount"]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("action", ["generate", "stream"])
async def test_answers_are_intact_and_counted_exactly(
    make_gateway: GatewayFactory, node_clients: Path, provider: str, action: str
) -> None:
    gateway = await make_gateway()
    ada = await gateway.issue("ada@example.com")
    result = await ai_sdk(node_clients, gateway, provider, ada.key, action=action)
    assert result["ok"], result
    assert result["text"] == TEXT
    if action == "stream":
        assert result["chunks"] == len(WORDS) and result["error"] is None  # streamed word by word
    (row,) = await gateway.usage()
    assert (row["status"], row["estimated"], row["reported"]) == (200, False, True)
    assert (row["tokens_in"], row["tokens_out"]) == reported_counts(provider, gateway.standin.reported[-1])
    received = gateway.standin.received[-1]
    assert ada.key not in str(received.headers) + received.query_string


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_stream_aborted_by_the_client_is_charged_at_an_estimate(
    make_gateway: GatewayFactory, node_clients: Path, provider: str
) -> None:
    gateway = await make_gateway()
    gateway.standin.stall_after = STALL_AFTER_FOUR_WORDS[provider]  # the end never comes before the abort
    ada = await gateway.issue("ada@example.com")
    result = await ai_sdk(node_clients, gateway, provider, ada.key, action="abort", abortAfter=3)
    assert result["ok"] and result["aborted"] and 3 <= result["chunks"] < len(WORDS), result
    for _ in range(100):
        rows = await gateway.usage()
        if rows:
            break
        await asyncio.sleep(0.02)
    (row,) = rows
    assert (row["status"], row["estimated"]) == (499, True)
    assert row["tokens_in"] > 0 and row["tokens_out"] >= 1  # OpenAI's used to be 0 / 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_stream_the_provider_cuts_off_is_a_readable_error(
    make_gateway: GatewayFactory, node_clients: Path, provider: str
) -> None:
    gateway = await make_gateway()
    gateway.standin.cut_after = 5
    ada = await gateway.issue("ada@example.com")
    result = await ai_sdk(node_clients, gateway, provider, ada.key, action="stream")
    assert result["ok"], result
    assert result["error"] is not None, result  # not a bare "terminated"
    assert "The provider's stream was cut off before it ended (gateway)." in result["error"]["message"]
    assert TEXT.startswith(result["text"]) and result["text"] != TEXT
    (row,) = await gateway.usage()
    assert (row["status"], row["estimated"]) == (502, True)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_quota_refusal_is_final_at_once_and_a_providers_429_is_retried(
    make_gateway: GatewayFactory, node_clients: Path, provider: str
) -> None:
    gateway = await make_gateway(limits={"tokens_per_day": 1})
    ada = await gateway.issue("ada@example.com")
    gateway.standin.rate_limited = 1  # the provider's own 429 with retry-after: 0
    result = await ai_sdk(node_clients, gateway, provider, ada.key, action="generate", maxRetries=2)
    assert result["ok"] and result["text"] == TEXT, result
    assert len(gateway.standin.received) == 2  # retried once

    refused = await ai_sdk(node_clients, gateway, provider, ada.key, action="generate", maxRetries=2)
    assert not refused["ok"]
    error = refused["error"]
    assert (error["name"], error["statusCode"], error["isRetryable"], error["attempts"]) == (
        "AI_APICallError",  # not a RetryError: one attempt
        402,
        False,
        1,
    )
    assert error["message"] == "Daily token limit of 1 reached; it resets at 00:00 UTC."
    name = PROVIDERS[provider][0]
    metrics = gateway.app[METRICS].render()
    assert f'vkey_refused_total{{provider="{name}",reason="tokens_per_day"}} 1' in metrics
    assert len(gateway.standin.received) == 2


@pytest.mark.parametrize(
    ("provider", "model"), [("openai-chat", "text-embedding-3-small"), ("google", "gemini-embedding-001")]
)
async def test_embeddings(
    make_gateway: GatewayFactory, node_clients: Path, provider: str, model: str
) -> None:
    gateway = await make_gateway(prices={model: {"input": 0.1}})
    ada = await gateway.issue("ada@example.com")
    values = ["sunny day at the beach", "rainy night in the city"]
    result = await ai_sdk(
        node_clients, gateway, provider, ada.key, action="embed", model=model, values=values
    )
    assert result["ok"] and result["embeddings"] == 2, result
    (row,) = await gateway.usage()
    assert row["model"] == model and row["tokens_in"] > 0 and row["cost_usd"] > 0
    assert row["estimated"] == (provider == "google")  # Gemini reports no embedding tokens
