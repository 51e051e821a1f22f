"""What a gateway call did, for its usage row: the operation (``POST /api/v3.1/tools/execute/X``) and,
for tool executions, the tool's slug, so an engineer can tell an execution from a listing and the
usage report can count each user's executions.

Composio executes a tool in three ways: ``POST /api/v3[.1]/tools/execute/<slug>`` (the slug in the
path), ``POST /api/v3.1/tool_router/session/<id>/execute`` (``tool_slug`` in the body) and an MCP
``tools/call`` request to a tool-router session's MCP endpoint (``params.name`` of the JSON-RPC body,
POSTed to ``.../mcp``, or to ``.../messages`` on MCP's SSE transport).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from .errors import Shape

MAX_OPERATION = 200  # characters of method and path kept
MAX_BODY = 1024 * 1024  # a body read only to find the tool in it is at most this large

_EXECUTE_PATH = re.compile(r"/api/v3(?:\.\d+)?/tools/execute/([^/?]+)$")
_SESSION_EXECUTE = re.compile(r"/tool_router/session/[^/]+/execute$")
_MCP_MESSAGES = re.compile(r"/(mcp|messages)$")  # streamable HTTP, and the SSE transport's POSTs
_NOT_TOOLS = frozenset({"proxy"})  # /tools/execute/proxy calls an API through a connection


def operation(method: str, path: str) -> str:
    return f"{method} {path}"[:MAX_OPERATION]


def reads_body(shape: Shape, method: str, path: str) -> bool:
    """Whether the request body names the tool (so the gateway reads it before forwarding)."""
    if shape != "composio" or method != "POST":
        return False
    return _MCP_MESSAGES.search(path) is not None or _SESSION_EXECUTE.search(path) is not None


def tool_of(shape: Shape, method: str, path: str, body: bytes | None) -> str | None:
    """The slug of the tool this call executes, or ``None`` when it executes none."""
    if shape != "composio" or method != "POST":
        return None
    found = _EXECUTE_PATH.search(path)
    if found is not None:
        slug = found.group(1)
        return None if slug in _NOT_TOOLS else slug[:MAX_OPERATION]
    if not body or not reads_body(shape, method, path):
        return None
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if _MCP_MESSAGES.search(path) is not None:
        for message in parsed if isinstance(parsed, list) else [parsed]:
            if isinstance(message, dict) and message.get("method") == "tools/call":
                params = message.get("params")
                name = params.get("name") if isinstance(params, dict) else None
                return name[:MAX_OPERATION] if isinstance(name, str) else None
        return None
    slug = parsed.get("tool_slug") if isinstance(parsed, dict) else None
    return slug[:MAX_OPERATION] if isinstance(slug, str) else None
