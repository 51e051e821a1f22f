"""A stand-in for Composio's API and its tool-router MCP endpoints, answering with payloads validated
against the Python SDK's own response types (``composio_client.types``), which the JS SDK's share:

* ``GET /api/v3[.1]/tools`` (``ToolListResponse``), ``GET /api/v3[.1]/tools/<slug>``
  (``ToolRetrieveResponse``), ``POST /api/v3[.1]/tools/execute/<slug>`` (``ToolExecuteResponse``).
* ``POST /api/v3.1/tool_router/session`` (``SessionCreateResponse``): its ``mcp.url`` is on this
  stand-in's own host, as Composio's is on ``backend.composio.dev``;
  ``POST /api/v3.1/tool_router/session/<id>/execute`` (``SessionExecuteResponse``).
* ``/tool_router/<id>/mcp``: MCP over streamable HTTP (JSON-RPC POSTs answered as SSE when the client
  accepts it, with an ``mcp-session-id``); ``/tool_router/<id>/sse`` and ``.../messages``: MCP's SSE
  transport (an ``endpoint`` event with a host-relative path, answers as ``message`` events).

Every route wants the real key in ``x-api-key`` and records what it received in the shared
:class:`~tests.standins.llm_providers.StandinState`.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
from aiohttp import web
from composio_client.types import ToolExecuteResponse, ToolListResponse, ToolRetrieveResponse
from composio_client.types.tool_router.session_create_response import SessionCreateResponse
from composio_client.types.tool_router.session_execute_response import SessionExecuteResponse
from pydantic import BaseModel

from .llm_providers import STATE, Received, StandinState

TOOL = "GITHUB_STAR_A_REPOSITORY"
_INPUT = {
    "type": "object",
    "properties": {"owner": {"type": "string"}, "repo": {"type": "string"}},
    "required": ["owner", "repo"],
}
_SESSIONS = web.AppKey("standin.mcp_sessions", dict)


def add_routes(app: web.Application) -> None:
    app[_SESSIONS] = {}  # SSE-transport session id → its queue of outgoing messages
    for version in ("v3", "v3.1"):
        app.router.add_get(f"/api/{version}/tools", tools)
        app.router.add_get(f"/api/{version}/tools/{{slug}}", tool)
        app.router.add_post(f"/api/{version}/tools/execute/{{slug}}", execute)
    app.router.add_post("/api/v3.1/tool_router/session", create_session)
    app.router.add_post("/api/v3.1/tool_router/session/{id}/execute", session_execute)
    app.router.add_route("*", "/tool_router/{id}/mcp", mcp_streamable)
    app.router.add_get("/tool_router/{id}/sse", mcp_sse)
    app.router.add_post("/tool_router/{id}/messages", mcp_sse_message)


def _typed(model: type[BaseModel], payload: dict[str, Any]) -> web.Response:
    """``payload`` as the SDK's type reads it back (so a missing or misnamed field fails here)."""
    body = model.model_validate(payload).model_dump(mode="json", exclude_unset=True, by_alias=True)
    return web.json_response(body)


async def _receive(request: web.Request) -> tuple[StandinState, bytes, web.Response | None]:
    state = request.app[STATE]
    body = await request.read()
    headers = {k.lower(): ", ".join(request.headers.getall(k)) for k in request.headers}
    state.received.append(Received("composio", request.path, request.query_string, headers, body))
    if request.headers.get("x-api-key") != state.real_keys["composio"]:
        denied = {"error": {"message": "Invalid API key", "status": 401}}
        return state, body, web.json_response(denied, status=401)
    return state, body, None


def _tool_item() -> dict[str, Any]:
    toolkit = {"slug": "github", "name": "GitHub", "logo": "https://logos.example/github.png"}
    return {
        "slug": TOOL,
        "name": "Star a repository",
        "description": "Stars a repository for the authenticated user.",
        "input_parameters": _INPUT,
        "output_parameters": {"type": "object", "properties": {"starred": {"type": "boolean"}}},
        "toolkit": toolkit,
        "version": "20250101_00",
        "available_versions": ["20250101_00"],
        "deprecated": {
            "available_versions": ["20250101_00"],
            "displayName": "Star a repository",
            "is_deprecated": False,
            "toolkit": {"logo": toolkit["logo"]},
            "version": "20250101_00",
        },
        "is_deprecated": False,
        "no_auth": False,
        "scopes": [],
        "tags": ["openWorldHint"],
    }


async def tools(request: web.Request) -> web.StreamResponse:
    _, _, denied = await _receive(request)
    if denied:
        return denied
    return _typed(
        ToolListResponse, {"items": [_tool_item()], "current_page": 1, "total_items": 1, "total_pages": 1}
    )


async def tool(request: web.Request) -> web.StreamResponse:
    _, _, denied = await _receive(request)
    if denied:
        return denied
    if request.match_info["slug"] != TOOL:
        return web.json_response({"error": {"message": "Tool not found", "status": 404}}, status=404)
    return _typed(ToolRetrieveResponse, _tool_item())


def _starred(arguments: dict[str, Any]) -> dict[str, Any]:
    return {"starred": True, "repository": f"{arguments.get('owner')}/{arguments.get('repo')}"}


async def execute(request: web.Request) -> web.StreamResponse:
    _, body, denied = await _receive(request)
    if denied:
        return denied
    arguments = orjson.loads(body).get("arguments") or {} if body else {}
    payload = {"data": _starred(arguments), "error": None, "successful": True, "log_id": "log_standin"}
    return _typed(ToolExecuteResponse, payload)


async def create_session(request: web.Request) -> web.StreamResponse:
    _, body, denied = await _receive(request)
    if denied:
        return denied
    asked = orjson.loads(body)
    session_id = "trs_" + uuid.uuid4().hex[:12]
    root = f"{request.scheme}://{request.host}"
    config = {
        "user_id": asked["user_id"],
        "execute": {"enable_multi_execute": True},
        "preload": {"tools": [TOOL]},
        "search": {"enable": True},
        "instant": False,
    }
    payload = {
        "session_id": session_id,
        "config": config,
        "config_version": 1,
        "mcp": {"type": "http", "url": f"{root}/tool_router/{session_id}/mcp"},  # Composio's own host
        "tool_router_tools": [TOOL],
    }
    return _typed(SessionCreateResponse, payload)


async def session_execute(request: web.Request) -> web.StreamResponse:
    _, body, denied = await _receive(request)
    if denied:
        return denied
    asked = orjson.loads(body)
    return _typed(
        SessionExecuteResponse, {"data": _starred(asked.get("arguments") or {}), "log_id": "log_standin"}
    )


# MCP ------------------------------------------------------------------------------------------------


def _answer(message: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON-RPC answer to one MCP message (``None`` for a notification)."""
    if "id" not in message:
        return None
    method, params = message.get("method"), message.get("params") or {}
    result: dict[str, Any]
    if method == "initialize":
        result = {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": "composio-tool-router-standin", "version": "1.0.0"},
        }
    elif method == "tools/list":
        result = {"tools": [{"name": TOOL, "description": "Star a repository", "inputSchema": _INPUT}]}
    elif method == "tools/call" and params.get("name") == TOOL:
        text = orjson.dumps({"successful": True, "data": _starred(params.get("arguments") or {})}).decode()
        result = {"content": [{"type": "text", "text": text}], "isError": False}
    elif method == "ping":
        result = {}
    else:
        return {
            "jsonrpc": "2.0",
            "id": message["id"],
            "error": {"code": -32601, "message": "Method not found"},
        }
    return {"jsonrpc": "2.0", "id": message["id"], "result": result}


async def mcp_streamable(request: web.Request) -> web.StreamResponse:
    _, body, denied = await _receive(request)
    if denied:
        return denied
    if request.method == "DELETE":
        return web.Response(status=200)
    if request.method != "POST":
        return web.Response(status=405, headers={"Allow": "POST, DELETE"})  # no server-initiated stream
    parsed = orjson.loads(body)
    answers = [a for m in (parsed if isinstance(parsed, list) else [parsed]) if (a := _answer(m)) is not None]
    headers = {"mcp-session-id": request.headers.get("mcp-session-id") or "mcp_" + uuid.uuid4().hex[:12]}
    if not answers:
        return web.Response(status=202, headers=headers)
    if "text/event-stream" not in request.headers.get("Accept", ""):
        return web.json_response(answers if isinstance(parsed, list) else answers[0], headers=headers)
    response = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream"})
    await response.prepare(request)
    for answer in answers:
        await response.write(b"event: message\ndata: " + orjson.dumps(answer) + b"\n\n")
    await response.write_eof()
    return response


async def mcp_sse(request: web.Request) -> web.StreamResponse:
    _, _, denied = await _receive(request)
    if denied:
        return denied
    session = uuid.uuid4().hex
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    request.app[_SESSIONS][session] = queue
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    path = f"/tool_router/{request.match_info['id']}/messages?sessionId={session}"  # host-relative
    await response.write(f"event: endpoint\ndata: {path}\n\n".encode())
    try:
        while True:
            await response.write(await queue.get())
    finally:
        del request.app[_SESSIONS][session]


async def mcp_sse_message(request: web.Request) -> web.StreamResponse:
    _, body, denied = await _receive(request)
    if denied:
        return denied
    queue = request.app[_SESSIONS].get(request.query.get("sessionId", ""))
    if queue is None:
        return web.Response(status=404, text="Unknown session")
    answer = _answer(orjson.loads(body))
    if answer is not None:
        queue.put_nowait(b"event: message\ndata: " + orjson.dumps(answer) + b"\n\n")
    return web.Response(status=202, text="Accepted")
