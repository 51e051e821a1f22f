"""Bad input and security: every refusal in the provider's own shape, and no secret ever leaks."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import openai
import orjson
import pytest
from aiohttp import ClientSession

from plugins.auth import USER_DIRECTORY
from plugins.vkey.keys import KeyRecord, display_prefix, hash_key, new_key
from plugins.vkey.store import VirtualKeys
from proxy_core.app import METRICS
from tests.plugins.vkey.conftest import REAL, GatewayFactory

CHAT = "/chat/completions"
ADA = uuid.uuid4()
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


async def post_openai(gateway_url: str, headers: dict[str, str], **kw: Any) -> tuple[int, Any, Any]:
    async with ClientSession() as http:
        resp = await http.post(gateway_url + CHAT, json=kw.pop("json", BODY), headers=headers, **kw)
        return resp.status, await resp.json(content_type=None), resp.headers


async def test_missing_key_is_401_in_each_providers_shape(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway()
    async with ClientSession() as http:
        resp = await http.post(gateway.base("openai") + CHAT, json=BODY)
        assert resp.status == 401
        assert (await resp.json())["error"]["message"] == "Missing API key"
        assert (await resp.json())["error"]["code"] == "invalid_api_key"
        resp = await http.post(gateway.base("anthropic") + "/messages", json={})
        assert await resp.json() == {
            "type": "error",
            "error": {"type": "authentication_error", "message": "Missing API key"},
        }
        resp = await http.post(gateway.base("gemini") + "/models/g:generateContent", json={})
        assert await resp.json() == {
            "error": {"code": 401, "message": "Missing API key", "status": "UNAUTHENTICATED"}
        }
    assert gateway.standin.received == []


@pytest.mark.parametrize(
    "key",
    [
        "sk-not-a-virtual-key",
        f"vk_{ADA}_" + "z" * 64,  # not hex
        f"vk_{ADA}_" + "a" * 63,  # too short
        "vk__" + "a" * 64,  # no user id
        f"vk_{ADA}_" + "a" * 64,  # well formed, never issued
    ],
)
async def test_malformed_or_unknown_key_is_401_invalid(make_gateway: GatewayFactory, key: str) -> None:
    gateway = await make_gateway()
    client = openai.AsyncOpenAI(api_key=key, base_url=gateway.base("openai"), max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        await client.chat.completions.create(**BODY)  # type: ignore[call-overload]
    assert caught.value.status_code == 401
    assert caught.value.body["message"] == "Invalid API key"  # type: ignore[index]
    assert gateway.standin.received == []
    await client.close()


async def test_revoked_expired_and_disabled_keys_are_401_with_the_reason(
    make_gateway: GatewayFactory,
) -> None:
    """Revoking and disabling through the key service take effect at once in this process, even
    while the keys are cached (for a minute here)."""
    gateway = await make_gateway(key_cache_seconds=60)
    revoked = await gateway.issue("a@example.com")
    expired = await gateway.issue("b@example.com", expires_in=timedelta(seconds=-1))
    disabled = await gateway.issue("c@example.com")
    for issued in (revoked, disabled):
        status, _, _ = await post_openai(gateway.base("openai"), {"Authorization": f"Bearer {issued.key}"})
        assert status == 200  # now cached
    await gateway.keys.revoke("a@example.com")
    await gateway.keys.set_disabled("c@example.com", True)
    for issued, reason in (
        (revoked, "API key revoked"),
        (expired, "API key expired"),
        (disabled, "API key owner is disabled"),
    ):
        client = anthropic.AsyncAnthropic(
            api_key=issued.key, base_url=gateway.base("anthropic"), max_retries=0
        )
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await client.messages.create(model="m", max_tokens=1, messages=[{"role": "user", "content": "x"}])
        assert caught.value.body["error"]["message"] == reason  # type: ignore[index]
        await client.close()
    await gateway.keys.set_disabled("c@example.com", False)
    status, _, _ = await post_openai(gateway.base("openai"), {"Authorization": f"Bearer {disabled.key}"})
    assert status == 200


async def test_a_key_with_another_users_id_spliced_in_is_refused(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway()
    ada = await gateway.issue("ada@example.com")
    bo = await gateway.issue("bo@example.com")
    spliced = ada.key.replace(str(ada.user.id), str(bo.user.id))
    status, body, _ = await post_openai(gateway.base("openai"), {"Authorization": f"Bearer {spliced}"})
    assert (status, body["error"]["message"]) == (401, "Invalid API key")
    # Even a stored key whose owner differs from the id written in it is refused.
    forged = new_key(bo.user.id)
    record = KeyRecord(uuid.uuid4(), ada.user.id, display_prefix(forged), hash_key(forged), datetime.now(UTC))
    await VirtualKeys(gateway.db).insert(record)
    status, body, _ = await post_openai(gateway.base("openai"), {"Authorization": f"Bearer {forged}"})
    assert (status, body["error"]["message"]) == (401, "Invalid API key")
    assert gateway.standin.received == []


async def test_two_different_keys_in_one_request_are_refused(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway()
    ada = await gateway.issue("ada@example.com")
    bo = await gateway.issue("bo@example.com")
    headers = {"Authorization": f"Bearer {ada.key}", "x-api-key": bo.key}
    status, body, _ = await post_openai(gateway.base("openai"), headers)
    assert (status, body["error"]["message"]) == (401, "Invalid API key")


async def test_every_other_trace_of_the_virtual_key_is_removed(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway()
    ada = await gateway.issue("ada@example.com")
    headers = {
        "x-goog-api-key": ada.key,
        "X-Debug-Copy": f"copy {ada.key}",
        "Cookie": "session=abc",
        "X-Forwarded-For": "10.1.2.3",
    }
    async with ClientSession() as http:
        resp = await http.post(
            gateway.base("gemini") + "/models/gemini-2.5-flash:generateContent",
            params={"key": ada.key, "note": ada.key, "alt": "json"},
            json={"contents": []},
            headers=headers,
        )
        assert resp.status == 200
    received = gateway.standin.received[-1]
    assert received.headers["x-goog-api-key"] == REAL["gemini"]
    assert received.query_string == f"key={REAL['gemini']}&alt=json"
    for name in ("x-debug-copy", "cookie", "x-forwarded-for", "forwarded", "x-forwarded-host"):
        assert name not in received.headers
    assert "vk_" not in orjson.dumps(received.headers).decode()


async def test_oversized_bodies_are_refused_with_413(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway("[server]\naccess_log = false\nmax_body_size = 2048\n")
    ada = await gateway.issue("ada@example.com")
    big = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 4096}]}
    client = openai.AsyncOpenAI(api_key=ada.key, base_url=gateway.base("openai"), max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(**big)  # type: ignore[call-overload]
    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "request_too_large"  # type: ignore[index]

    async def chunks() -> Any:  # no Content-Length: the limit is applied while reading
        yield orjson.dumps(big)

    async with ClientSession() as http:
        headers = {"Authorization": f"Bearer {ada.key}", "Content-Type": "application/json"}
        resp = await http.post(gateway.base("openai") + CHAT, data=chunks(), headers=headers)
        assert resp.status == 413
        resp = await http.post(
            gateway.base("anthropic") + "/messages", json=big, headers={"x-api-key": ada.key}
        )
        assert resp.status == 413
        assert (await resp.json())["error"]["type"] == "request_too_large"
    assert gateway.standin.received == []
    await client.close()


async def test_unknown_provider_is_404(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway()
    ada = await gateway.issue("ada@example.com")
    async with ClientSession() as http:
        resp = await http.post(
            str(gateway.url / "api/gateway/mistral/v1/chat"), headers={"Authorization": f"Bearer {ada.key}"}
        )
        assert resp.status == 404
        resp = await http.get(
            gateway.base("openai") + "/../../admin", headers={"Authorization": f"Bearer {ada.key}"}
        )
        assert resp.status == 404
        resp = await http.get(
            gateway.base("openai") + "/%2e%2e/admin", headers={"Authorization": f"Bearer {ada.key}"}
        )
        assert resp.status == 404
    assert gateway.standin.received == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_upstream_down_is_502_in_the_providers_shape(make_gateway: GatewayFactory) -> None:
    port = _closed_port()
    down = {name: {"url": f"http://127.0.0.1:{port}/v1"} for name in ("openai", "anthropic", "gemini")}
    gateway = await make_gateway(providers=down)
    ada = await gateway.issue("ada@example.com")
    client = openai.AsyncOpenAI(api_key=ada.key, base_url=gateway.base("openai"), max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(**BODY)  # type: ignore[call-overload]
    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "server_error"  # type: ignore[index]
    await client.close()
    async with ClientSession() as http:
        resp = await http.post(
            gateway.base("anthropic") + "/messages", json={}, headers={"x-api-key": ada.key}
        )
        assert resp.status == 502
        assert (await resp.json())["error"]["type"] == "api_error"
        resp = await http.post(
            gateway.base("gemini") + "/models/g:generateContent", json={}, headers={"x-goog-api-key": ada.key}
        )
        assert (await resp.json())["error"]["status"] == "UNAVAILABLE"


async def test_a_provider_without_a_real_key_answers_503(
    make_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COMPOSIO_API_KEY")
    gateway = await make_gateway()
    ada = await gateway.issue("ada@example.com")
    async with ClientSession() as http:
        resp = await http.get(gateway.base("composio") + "/api/v3/tools", headers={"x-api-key": ada.key})
        assert resp.status == 503
        assert (await resp.json())["error"]["message"] == "The gateway has no key for composio."
        ready = await (await http.get(str(gateway.url / "readyz"))).json()
        assert ready["checks"]["vkey"] == {"ready": True, "detail": "no real key for: composio"}


async def test_real_keys_never_appear_in_logs_errors_metrics_or_responses(
    make_gateway: GatewayFactory,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = await make_gateway("[server]\naccess_log = true\n")
    ada = await gateway.issue("ada@example.com")
    revoked = await gateway.issue("bo@example.com")
    await gateway.keys.revoke("bo@example.com")
    seen: list[str] = []
    url = gateway.url
    async with ClientSession() as http:
        base = str(url / "api/gateway")
        calls = [
            ("post", f"{base}/openai/chat/completions", {"Authorization": f"Bearer {ada.key}"}, BODY),
            ("post", f"{base}/openai/chat/completions", {"Authorization": f"Bearer {revoked.key}"}, BODY),
            ("post", f"{base}/openai/chat/completions", {}, BODY),
            ("post", f"{base}/anthropic/messages", {"x-api-key": ada.key}, {"model": "m", "stream": True}),
            ("post", f"{base}/gemini/models/g:generateContent?key={ada.key}", {}, {}),
            ("post", f"{base}/gemini/models/g:nope?key={ada.key}", {}, {}),
            ("get", f"{base}/composio/api/v3/tools", {"x-api-key": ada.key}, None),
        ]
        for method, target, headers, body in calls:
            resp = await http.request(method, target, headers=headers, json=body)
            seen.append(str(resp.status) + str(list(resp.headers.items())) + await resp.text())
        seen.append(await (await http.get(str(url / "metrics"))).text())
        await asyncio.sleep(0.1)  # the access log flushes every 50 ms
    out, err = capfd.readouterr()
    everything = "\n".join([*seen, out, err, caplog.text])
    assert '"path":"/api/gateway/openai/chat/completions"' in err  # the access log was captured
    for real in REAL.values():
        assert real not in everything
    assert ada.key not in everything and revoked.key not in everything
    assert "vkey_requests_total" in gateway.app[METRICS].render()


async def test_an_unreachable_store_is_503_in_the_providers_shape(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(database=f"postgresql://postgres@127.0.0.1:{_closed_port()}/none")
    key = new_key(uuid.uuid4())
    client = openai.AsyncOpenAI(api_key=key, base_url=gateway.base("openai"), max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(**BODY)  # type: ignore[call-overload]
    assert caught.value.status_code == 503
    assert caught.value.body["message"] == "The gateway cannot check keys right now."  # type: ignore[index]
    assert key not in str(caught.value.body) and gateway.standin.received == []
    await client.close()


async def test_disabling_through_auths_directory_refuses_cached_keys_at_once(
    make_gateway: GatewayFactory,
) -> None:
    """vkey listens to auth's user directory: a disable there reaches the key cache at once."""
    gateway = await make_gateway(key_cache_seconds=60)
    issued = await gateway.issue("d@example.com")
    headers = {"Authorization": f"Bearer {issued.key}"}
    assert (await post_openai(gateway.base("openai"), headers))[0] == 200  # now cached
    await gateway.app[USER_DIRECTORY].set_disabled("d@example.com", True)
    status, body, _ = await post_openai(gateway.base("openai"), headers)
    assert (status, body["error"]["message"]) == (401, "API key owner is disabled")
    await gateway.app[USER_DIRECTORY].set_disabled("d@example.com", False)
    assert (await post_openai(gateway.base("openai"), headers))[0] == 200
