"""Errors in each provider's own shape and status, so the official SDKs raise their usual exception
with a readable message (``openai.AuthenticationError``, ``anthropic.RateLimitError`` and so on)."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from aiohttp import web

Shape = Literal["openai", "anthropic", "gemini", "composio"]

_OPENAI = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    402: ("insufficient_quota", "insufficient_quota"),
    404: ("invalid_request_error", "not_found"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("requests", "rate_limit_exceeded"),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "timeout"),
}
_ANTHROPIC = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
}
_GEMINI = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "RESOURCE_EXHAUSTED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_body(shape: Shape, status: int, message: str) -> dict[str, Any]:
    if shape == "anthropic":
        kind = _ANTHROPIC.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    if shape == "gemini":
        return {"error": {"code": status, "message": message, "status": _GEMINI.get(status, "INTERNAL")}}
    if shape == "composio":
        return {"error": {"message": message, "status": status}}
    kind, code = _OPENAI.get(status, ("server_error", "server_error"))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def provider_error(
    shape: Shape,
    status: int,
    message: str,
    *,
    retry_after: int | None = None,
    retryable: bool = True,
) -> web.Response:
    """An error answer. ``retryable=False`` sets ``x-should-retry: false``, which the OpenAI and
    Anthropic SDKs obey, so an exhausted budget is reported at once instead of after backing off."""
    headers = {"Cache-Control": "no-store"}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if not retryable:
        headers["x-should-retry"] = "false"
    return web.Response(
        status=status,
        body=orjson.dumps(error_body(shape, status, message)),
        content_type="application/json",
        headers=headers,
    )
