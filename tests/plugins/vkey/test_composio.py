"""Composio from a sandbox: both SDKs (``composio`` for Python, ``@composio/core`` for Node) through the
gateway against the stand-in, a tool-router session whose MCP URL (rewritten to the gateway) an MCP
client then uses over streamable HTTP and SSE with the key swapped, second credentials and account
selectors kept from the provider, and every execution recorded as such."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from aiohttp import ClientSession

from plugins.vkey import UsageReports
from plugins.vkey.reports import month_start
from tests.node_clients import run_script
from tests.plugins.vkey.conftest import REAL, Gateway, GatewayFactory
from tests.standins.composio import TOOL

STARRED = {"starred": True, "repository": "mastra-ai/mastra"}


def assert_only_real_key_reached_composio(gateway: Gateway, issued_key: str) -> None:
    received = [r for r in gateway.standin.received if r.provider == "composio"]
    assert received, "nothing reached the stand-in"
    for request in received:
        assert request.headers["x-api-key"] == REAL["composio"], request.path
        everything = orjson.dumps(request.headers).decode() + request.query_string + request.body.decode()
        assert issued_key not in everything and "vk_" not in everything


def composio_python(gateway: Gateway, key: str) -> Any:
    from composio import Composio

    return Composio(api_key=key, base_url=gateway.base("composio"), allow_tracking=False)


async def test_the_python_sdk_lists_executes_and_gets_a_session_whose_mcp_url_is_the_gateways(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    ada = await gateway.issue("ada@example.com")
    composio = composio_python(gateway, ada.key)

    def use() -> tuple[Any, Any, Any]:  # the SDK is synchronous: a thread, while the gateway serves
        tools = composio.tools.get_raw_composio_tools(toolkits=["GITHUB"])
        arguments = {"owner": "mastra-ai", "repo": "mastra"}
        executed = composio.tools.execute(TOOL, arguments, user_id="ada", dangerously_skip_version_check=True)
        return tools, executed, composio.create(user_id="ada", mcp=True)  # was MCPDestinationError

    tools, executed, session = await asyncio.to_thread(use)
    assert [tool.slug for tool in tools] == [TOOL]
    assert executed["successful"] and executed["data"] == STARRED
    assert session.mcp.url == f"{gateway.base('composio')}/tool_router/{session.session_id}/mcp"
    assert session.mcp.headers == {"x-api-key": ada.key}  # the SDK only sends its key to its own origin
    assert_only_real_key_reached_composio(gateway, ada.key)

    rows = await gateway.usage()
    assert [(r["operation"], r["tool"], r["cost_usd"], r["status"]) for r in rows] == [
        ("GET /api/v3.1/tools", None, None, 200),
        ("GET /api/v3.1/tools/" + TOOL, None, None, 200),  # the SDK reads the tool's schema first
        ("POST /api/v3.1/tools/execute/" + TOOL, TOOL, None, 200),
        ("POST /api/v3.1/tool_router/session", None, None, 200),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_an_mcp_client_uses_the_sessions_mcp_url_through_the_gateway(
    make_gateway: GatewayFactory, node_clients: Path, transport: str
) -> None:
    gateway = await make_gateway()
    ada = await gateway.issue("ada@example.com")
    session = await asyncio.to_thread(composio_python(gateway, ada.key).create, user_id="ada", mcp=True)
    url = session.mcp.url if transport == "http" else session.mcp.url.removesuffix("/mcp") + "/sse"
    result = await run_script(
        node_clients,
        "composio.mjs",
        {"action": "mcp", "url": url, "headers": session.mcp.headers, "transport": transport},
    )
    assert result["ok"], result
    assert (result["tools"], result["result"]) == ([TOOL], {"successful": True, "data": STARRED})
    assert_only_real_key_reached_composio(gateway, ada.key)
    calls = [r for r in await gateway.usage() if r["tool"]]
    assert [(r["tool"], r["cost_usd"]) for r in calls] == [
        (TOOL, None)
    ]  # the MCP tools/call, as an execution
    path = "/mcp" if transport == "http" else "/messages"
    assert calls[0]["operation"] == f"POST /tool_router/{session.session_id}{path}"


@pytest.mark.slow
async def test_the_js_sdk_and_its_sessions_mcp_endpoint_through_the_gateway(
    make_gateway: GatewayFactory, node_clients: Path
) -> None:
    gateway = await make_gateway()
    ada = await gateway.issue("ada@example.com")
    result = await run_script(
        node_clients,
        "composio.mjs",
        {"action": "sdk", "baseURL": gateway.base("composio"), "apiKey": ada.key, "userId": "ada"},
    )
    assert result["ok"], result
    assert result["tools"] == [TOOL]
    assert result["executed"] == {"successful": True, "data": STARRED}
    session_id = result["session"]["id"]
    assert result["session"]["mcp"] == {
        "type": "http",
        "url": f"{gateway.base('composio')}/tool_router/{session_id}/mcp",  # not Composio's host
        "headers": {"x-api-key": ada.key},
    }
    assert result["mcp"] == {"tools": [TOOL], "result": {"successful": True, "data": STARRED}}
    assert_only_real_key_reached_composio(gateway, ada.key)
    assert sorted(r["tool"] for r in await gateway.usage() if r["tool"]) == [
        TOOL,
        TOOL,
    ]  # execute, tools/call


async def test_second_credentials_are_refused_and_account_selectors_stripped(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    ada = await gateway.issue("ada@example.com")
    tools = gateway.base("composio") + "/api/v3.1/tools"
    async with ClientSession() as http:
        for name in ("x-user-api-key", "x-org-api-key", "X-User-Api-Key"):
            resp = await http.get(tools, headers={"x-api-key": ada.key, name: "uak_someone_elses"})
            assert resp.status == 400
            message = (await resp.json())["error"]["message"]
            assert message.startswith(f"The gateway does not accept the {name.lower()} header")
        assert gateway.standin.received == []
        selectors = {"x-org-id": "org_other", "x-project-id": "proj_other"}
        resp = await http.get(tools, headers={"x-api-key": ada.key, **selectors})
        assert resp.status == 200
    received = gateway.standin.received[-1].headers
    assert "x-org-id" not in received and "x-project-id" not in received
    assert received["x-api-key"] == REAL["composio"]

    gpt = openai.AsyncOpenAI(
        api_key=ada.key,
        base_url=gateway.base("openai"),
        organization="org-other",
        project="proj-other",
        max_retries=0,
    )
    await gpt.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    await gpt.close()
    received = gateway.standin.received[-1].headers
    assert "openai-organization" not in received and "openai-project" not in received
    async with ClientSession() as http:
        resp = await http.post(
            gateway.base("gemini") + "/models/gemini-2.5-flash:generateContent",
            json={"contents": []},
            headers={"x-goog-api-key": ada.key, "x-goog-user-project": "someone-elses"},
        )
        assert resp.status == 200
    assert "x-goog-user-project" not in gateway.standin.received[-1].headers


async def test_composio_urls_are_rewritten_only_where_they_point_at_its_api(
    make_gateway: GatewayFactory,
) -> None:
    """The stand-in's own origin plays Composio's API host; a longer host name that merely starts with
    it is left alone, and the answer stays valid JSON."""
    from plugins.vkey.tap import UrlRewrite

    rewrite = UrlRewrite(
        "https://backend.composio.dev", "http://cloud.test/api/gateway/composio", "/api/gateway/composio"
    )
    body = orjson.dumps(
        {
            "mcp": "https://backend.composio.dev/tool_router/x/mcp",
            "base": "https://backend.composio.dev",
            "query": "https://backend.composio.dev?x=1",
            "other": "https://backend.composio.dev.example.com/x",
            "docs": "https://docs.composio.dev/x",
        }
    )
    assert orjson.loads(rewrite.apply(body)) == {
        "mcp": "http://cloud.test/api/gateway/composio/tool_router/x/mcp",
        "base": "http://cloud.test/api/gateway/composio",
        "query": "http://cloud.test/api/gateway/composio?x=1",
        "other": "https://backend.composio.dev.example.com/x",
        "docs": "https://docs.composio.dev/x",
    }
    event = b"event: endpoint\ndata: /tool_router/x/messages?sessionId=1"
    assert (
        rewrite.event(event)
        == b"event: endpoint\ndata: /api/gateway/composio/tool_router/x/messages?sessionId=1"
    )
    message = b"event: message\ndata: /not/an/endpoint"
    assert rewrite.event(message) == message


async def test_executions_are_counted_per_user(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(prices={"gpt-4o-mini": {"input": 1.0, "output": 1.0}})
    ada = await gateway.issue("ada@example.com")
    bo = await gateway.issue("bo@example.com")
    for issued, executions in ((ada, 2), (bo, 1)):
        composio = composio_python(gateway, issued.key)

        def use(composio: Any = composio, executions: int = executions) -> None:
            composio.tools.get_raw_composio_tools(toolkits=["GITHUB"])
            for _ in range(executions):
                arguments = {"owner": "o", "repo": "r"}
                composio.tools.execute(TOOL, arguments, user_id="u", dangerously_skip_version_check=True)

        await asyncio.to_thread(use)
    gpt = openai.AsyncOpenAI(api_key=ada.key, base_url=gateway.base("openai"), max_retries=0)
    await gpt.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    await gpt.close()
    await gateway.usage()  # flushed
    rows = await gateway.usage()
    lines = await UsageReports(gateway.db).summary(by="provider", since=month_start())
    composio = {line.user_id: line for line in lines if line.group == "composio"}
    for issued, executions in ((ada, 2), (bo, 1)):
        own = [r for r in rows if r["user_id"] == issued.user.id and r["provider"] == "composio"]
        line = composio[issued.user.id]
        assert (line.requests, line.tool_executions, line.cost_usd, line.unpriced) == (
            len(own),
            executions,
            0.0,
            0,
        )
    (chat,) = [line for line in lines if line.group == "openai"]
    assert (chat.user_id, chat.tool_executions, chat.unpriced) == (ada.user.id, 0, 0) and chat.cost_usd > 0
