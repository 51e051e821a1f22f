"""Errors in each provider's own shape and status, so the official SDKs raise their usual exception
with a readable message (``openai.AuthenticationError``, ``anthropic.RateLimitError`` and so on),
both as an answer of their own and as the last event of a stream that broke off mid-way."""

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


def stream_error_event(shape: Shape, status: int, message: str, *, responses_api: bool = False) -> bytes:
    """One SSE event that the provider's SDKs (official and the AI SDK's) read as a stream error:
    OpenAI chat and Gemini ``data: {"error": {...}}``, OpenAI Responses ``type: "error"`` (its fields
    both at the top, as the API documents them, and under ``error``, as the AI SDK reads them),
    Anthropic ``event: error``."""
    body = error_body(shape, status, message)
    if shape == "anthropic":
        return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"
    if shape == "openai" and responses_api:
        error = body["error"]
        event = {
            "type": "error",
            "code": error["code"],
            "message": message,
            "param": None,
            "sequence_number": 0,
            "error": {"type": error["type"], "code": error["code"], "message": message, "param": None},
        }
        return b"event: error\ndata: " + orjson.dumps(event) + b"\n\n"
    return b"data: " + orjson.dumps(body) + b"\n\n"


def provider_error(
    shape: Shape,
    status: int,
    message: str,
    *,
    retry_after: int | None = None,
    retryable: bool = True,
) -> web.Response:
    """An error answer. ``retryable=False`` sets ``x-should-retry: false``, which the OpenAI and
    Anthropic SDKs obey; the AI SDK and google-genai ignore it and go by the status alone, which is
    why refusals that cannot succeed soon use a status no client retries (see :mod:`.limits`)."""
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
