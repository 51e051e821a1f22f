"""A scripted OpenAI-compatible chat-completions endpoint (``POST /v1/chat/completions``, not streamed)
for the healer's repair loop: each answer comes from a script called with the conversation's number
(0, 1, …: a request with no assistant message yet starts a new conversation) and its turn (how many
assistant messages it holds), returning the assistant message to send back (``tool_calls`` or
``content``). Every request body and its Authorization header are recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Script = Callable[[int, int], dict[str, Any]]


@dataclass
class ScriptedModel:
    script: Script
    requests: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    conversations: int = 0


MODEL = web.AppKey("scripted_llm.model", ScriptedModel)


def tool_call(call_id: str, name: str, **arguments: Any) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def scripted_llm_app(script: Script) -> web.Application:
    app = web.Application()
    app[MODEL] = ScriptedModel(script)
    app.router.add_post("/v1/chat/completions", _chat)
    return app


async def _chat(request: web.Request) -> web.Response:
    model = request.app[MODEL]
    body = await request.json()
    model.requests.append(body)
    model.authorizations.append(request.headers.get("Authorization", ""))
    turn = sum(1 for message in body["messages"] if message["role"] == "assistant")
    if turn == 0:
        model.conversations += 1
    message = {"role": "assistant", "content": None, **model.script(model.conversations - 1, turn)}
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    return web.json_response(
        {
            "id": f"chatcmpl-{len(model.requests)}",
            "object": "chat.completion",
            "model": body.get("model", ""),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
        }
    )
