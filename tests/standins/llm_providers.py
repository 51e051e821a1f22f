"""Local stand-ins for the LLM providers the gateway serves, on one aiohttp app:

* OpenAI ``POST /v1/chat/completions`` and ``POST /v1/responses`` (Bearer key), streaming and not;
  chat streams honour ``stream_options.include_usage`` exactly like the real API (``"usage":null`` on
  every chunk and a final chunk with empty ``choices``).
* Anthropic ``POST /v1/messages`` (``x-api-key`` or Bearer), streaming (``message_start`` … ``message_delta``)
  and not.
* Gemini ``POST /v1beta/models/<model>:generateContent`` and ``:streamGenerateContent`` (SSE with
  ``?alt=sse``, a streamed JSON array without), keyed by ``x-goog-api-key`` or ``?key=``.
* Embeddings: OpenAI ``POST /v1/embeddings`` (with ``usage``), Gemini ``:embedContent`` and
  ``:batchEmbedContents`` (without, as the real API answers).
* Composio's API and its tool-router MCP endpoints: :mod:`tests.standins.composio`.

Each refuses any key but the real one (in the provider's error shape) and records what it received
(``RECEIVED``) and the usage it reported (``REPORTED``), so tests can compare both. Non-streamed
answers are gzip-compressed when the client accepts it, as the real APIs do.

Failures on demand, as the real providers produce them: ``cut_after`` ends every stream's connection
after that many events (no closing chunk: what a provider's crash or a dropped connection looks like),
``stall_after`` goes silent after that many (so a client's abort surely comes before the end),
and ``rate_limited`` answers that many next requests with the provider's own 429 and
``retry-after: 0``.
"""

from __future__ import annotations

import asyncio
import gzip
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

WORDS = ("Hello", " from", " the", " stand", "-in", " provider", ".")


@dataclass
class Received:
    provider: str
    path: str
    query_string: str
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class StandinState:
    real_keys: dict[str, str]
    received: list[Received] = field(default_factory=list)
    reported: list[dict[str, Any]] = field(default_factory=list)
    event_delay: float = 0.0  # seconds between streamed events
    cut_after: int | None = None  # streamed events sent before the connection is dropped
    stall_after: int | None = None  # streamed events sent before the stand-in goes silent
    rate_limited: int = 0  # next requests answered with the provider's own 429


STATE = web.AppKey("standin.state", StandinState)


def standin_app(real_keys: dict[str, str], event_delay: float = 0.0) -> web.Application:
    """The stand-in; ``real_keys`` maps "openai", "anthropic", "gemini", "composio" to the only
    key each accepts."""
    app = web.Application()
    app[STATE] = StandinState(real_keys, event_delay=event_delay)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/responses", responses)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1beta/models/{model}:{method}", gemini)
    from .composio import add_routes  # it builds on this module's state

    add_routes(app)
    return app


def _state(request: web.Request) -> StandinState:
    return request.app[STATE]


async def _receive(request: web.Request, provider: str) -> tuple[StandinState, bytes]:
    state = _state(request)
    body = await request.read()
    headers = {k.lower(): ", ".join(request.headers.getall(k)) for k in request.headers}
    state.received.append(Received(provider, request.path, request.query_string, headers, body))
    if state.rate_limited:
        state.rate_limited -= 1
        raise _rate_limited(provider)
    return state, body


def _rate_limited(provider: str) -> web.HTTPException:
    """The provider's own 429, as the real API sends it."""
    message = "Rate limit reached for requests. Please try again in 0s."
    payload: dict[str, Any] = {
        "openai": {
            "error": {"message": message, "type": "requests", "param": None, "code": "rate_limit_exceeded"}
        },
        "anthropic": {"type": "error", "error": {"type": "rate_limit_error", "message": message}},
        "gemini": {"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED"}},
    }.get(provider, {"error": {"message": message, "status": 429}})
    return web.HTTPTooManyRequests(
        text=orjson.dumps(payload).decode(), content_type="application/json", headers={"retry-after": "0"}
    )


def _json(request: web.Request, payload: Any, status: int = 200) -> web.Response:
    data = orjson.dumps(payload)
    if status == 200 and "gzip" in request.headers.get("Accept-Encoding", ""):
        return web.Response(
            body=gzip.compress(data),
            status=status,
            content_type="application/json",
            headers={"Content-Encoding": "gzip"},
        )
    return web.Response(body=data, status=status, content_type="application/json")


async def _sse(request: web.Request, events: list[bytes]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    return await _stream(request, response, events)


async def _stream(
    request: web.Request, response: web.StreamResponse, parts: list[bytes]
) -> web.StreamResponse:
    await response.prepare(request)
    state = _state(request)
    for n, part in enumerate(parts):
        if n == state.cut_after:
            _drop(request)
            return response
        if n == state.stall_after:
            await _until_gone(request)
            return response
        await response.write(part)
        if state.event_delay:
            await asyncio.sleep(state.event_delay)
    await response.write_eof()
    return response


async def _until_gone(request: web.Request) -> None:
    """Stay silent (the rest of the answer never comes) until the gateway drops the connection."""
    for _ in range(1500):  # 30 s at most, then the connection is dropped: never a complete answer
        if request.transport is None or request.transport.is_closing():
            return
        await asyncio.sleep(0.02)
    _drop(request)


def _drop(request: web.Request) -> None:
    """Close the connection after what was written, without the closing chunk."""
    assert request.transport is not None
    request.transport.close()


def _data(payload: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


def _prompt_tokens(body: dict[str, Any]) -> int:
    return 7 + len(orjson.dumps(body.get("messages") or body.get("input") or body.get("contents"))) // 4


# OpenAI ---------------------------------------------------------------------------------------------


def _openai_denied(request: web.Request, state: StandinState) -> web.Response | None:
    if request.headers.get("Authorization") == f"Bearer {state.real_keys['openai']}":
        return None
    error = {
        "message": "Incorrect API key provided.",
        "type": "invalid_request_error",
        "code": "invalid_api_key",
    }
    return web.json_response({"error": error}, status=401)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state, raw = await _receive(request, "openai")
    if (denied := _openai_denied(request, state)) is not None:
        return denied
    body = orjson.loads(raw)
    model = str(body.get("model", "gpt-4o-mini")) + "-2024-07-18"
    usage = {
        "prompt_tokens": _prompt_tokens(body),
        "completion_tokens": len(WORDS),
        "total_tokens": _prompt_tokens(body) + len(WORDS),
        "prompt_tokens_details": {"cached_tokens": 2, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }
    state.reported.append({"provider": "openai", "model": model, **usage})
    base = {
        "id": "chatcmpl-standin",
        "created": 1700000000,
        "model": model,
        "system_fingerprint": "fp_standin",
    }
    if not body.get("stream"):
        message = {"role": "assistant", "content": "".join(WORDS), "refusal": None}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
        return _json(request, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
    include = bool((body.get("stream_options") or {}).get("include_usage"))
    chunk = {**base, "object": "chat.completion.chunk"}
    events = []
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}, *({"content": w} for w in WORDS)]
    for delta in deltas:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        events.append(_data({**chunk, "choices": [choice], **({"usage": None} if include else {})}))
    final = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    events.append(_data({**chunk, "choices": [final], **({"usage": None} if include else {})}))
    if include:
        events.append(_data({**chunk, "choices": [], "usage": usage}))
    events.append(b"data: [DONE]\n\n")
    return await _sse(request, events)


async def responses(request: web.Request) -> web.StreamResponse:
    state, raw = await _receive(request, "openai")
    if (denied := _openai_denied(request, state)) is not None:
        return denied
    body = orjson.loads(raw)
    model = str(body.get("model", "gpt-4o-mini"))
    usage = {
        "input_tokens": _prompt_tokens(body),
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": len(WORDS),
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": _prompt_tokens(body) + len(WORDS),
    }
    state.reported.append({"provider": "openai", "model": model, **usage})
    text = "".join(WORDS)
    item = {
        "id": "msg_standin",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    response = {
        "id": "resp_standin",
        "object": "response",
        "created_at": 1700000000,
        "status": "completed",
        "model": model,
        "output": [item],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }
    if not body.get("stream"):
        return _json(request, response)
    # The real API's sequence: the response, the item and its part opened, the text's deltas, each
    # closed again, and the completed response with its usage.
    started = {**response, "status": "in_progress", "output": [], "usage": None}
    part = {"type": "output_text", "text": "", "annotations": []}
    where = {"item_id": "msg_standin", "output_index": 0, "content_index": 0}
    opened = {**item, "status": "in_progress", "content": []}
    payloads: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.output_item.added", "output_index": 0, "item": opened},
        {"type": "response.content_part.added", **where, "part": part},
        *({"type": "response.output_text.delta", **where, "delta": w, "logprobs": []} for w in WORDS),
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": {**part, "text": text}},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": response},
    ]
    events = [_data({**p, "sequence_number": n}, p["type"]) for n, p in enumerate(payloads)]
    return await _sse(request, events)


async def embeddings(request: web.Request) -> web.StreamResponse:
    state, raw = await _receive(request, "openai")
    if (denied := _openai_denied(request, state)) is not None:
        return denied
    body = orjson.loads(raw)
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    tokens = sum(len(str(text)) // 4 + 1 for text in inputs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    state.reported.append({"provider": "openai", "model": body["model"], **usage})
    data = [{"object": "embedding", "index": n, "embedding": [0.1, 0.2, 0.3]} for n in range(len(inputs))]
    return _json(request, {"object": "list", "data": data, "model": body["model"], "usage": usage})


# Anthropic ------------------------------------------------------------------------------------------


async def messages(request: web.Request) -> web.StreamResponse:
    state, raw = await _receive(request, "anthropic")
    real = state.real_keys["anthropic"]
    # Recent SDKs send the key as a Bearer token, older ones (and the AI SDK) as x-api-key.
    if real not in (request.headers.get("x-api-key"), request.headers.get("Authorization", "")[7:]):
        error = {"type": "authentication_error", "message": "invalid x-api-key"}
        return web.json_response({"type": "error", "error": error}, status=401)
    body = orjson.loads(raw)
    model = str(body.get("model", "claude-standin"))
    usage = {
        "input_tokens": _prompt_tokens(body),
        "cache_creation_input_tokens": 3,
        "cache_read_input_tokens": 5,
        "output_tokens": len(WORDS),
    }
    state.reported.append({"provider": "anthropic", "model": model, **usage})
    message = {"id": "msg_standin", "type": "message", "role": "assistant", "model": model}
    if not body.get("stream"):
        content = [{"type": "text", "text": "".join(WORDS)}]
        return _json(
            request,
            {**message, "content": content, "stop_reason": "end_turn", "stop_sequence": None, "usage": usage},
        )
    start_usage = {**usage, "output_tokens": 1}
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}
    events = [
        _data({"type": "message_start", "message": start}, "message_start"),
        _data(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            "content_block_start",
        ),
        _data({"type": "ping"}, "ping"),
    ]
    for word in WORDS:
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}}
        events.append(_data(delta, "content_block_delta"))
    events.append(_data({"type": "content_block_stop", "index": 0}, "content_block_stop"))
    end = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": usage["output_tokens"]},
    }
    events.append(_data(end, "message_delta"))
    events.append(_data({"type": "message_stop"}, "message_stop"))
    return await _sse(request, events)


# Gemini ---------------------------------------------------------------------------------------------


async def gemini(request: web.Request) -> web.StreamResponse:
    state, raw = await _receive(request, "gemini")
    key = request.headers.get("x-goog-api-key") or request.query.get("key")
    if key != state.real_keys["gemini"]:
        error = {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}
        return web.json_response({"error": error}, status=400)
    method = request.match_info["method"]
    if method in ("embedContent", "batchEmbedContents"):
        body = orjson.loads(raw)
        count = len(body.get("requests") or [body])
        vectors = [{"values": [0.1, 0.2, 0.3]} for _ in range(count)]
        # The real API reports no token usage for embeddings.
        return _json(
            request, {"embedding": vectors[0]} if method == "embedContent" else {"embeddings": vectors}
        )
    if method not in ("generateContent", "streamGenerateContent"):
        return web.json_response(
            {"error": {"code": 404, "message": "no such method", "status": "NOT_FOUND"}}, status=404
        )
    body = orjson.loads(raw)
    model = request.match_info["model"]
    prompt = _prompt_tokens(body)
    usage = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": len(WORDS),
        "thoughtsTokenCount": 4,
        "totalTokenCount": prompt + len(WORDS) + 4,
    }
    state.reported.append({"provider": "gemini", "model": model, **usage})

    def chunk(text: str, upto: int, last: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
        if last:
            candidate["finishReason"] = "STOP"
        counts = {**usage, "candidatesTokenCount": upto, "totalTokenCount": prompt + upto + 4}
        return {"candidates": [candidate], "usageMetadata": counts, "modelVersion": model, "responseId": "r1"}

    if method == "generateContent":
        return _json(request, chunk("".join(WORDS), len(WORDS), True))
    chunks = [chunk(w, n, n == len(WORDS)) for n, w in enumerate(WORDS, 1)]
    if request.query.get("alt") == "sse":
        return await _sse(request, [b"data: " + orjson.dumps(c) + b"\r\n\r\n" for c in chunks])
    parts = [b"[" + orjson.dumps(chunks[0])] + [b",\r\n" + orjson.dumps(c) for c in chunks[1:]] + [b"]"]
    response = web.StreamResponse(headers={"Content-Type": "application/json; charset=UTF-8"})
    return await _stream(request, response, parts)
