"""One repair attempt: a conversation with a model through the cloud gateway (OpenAI-compatible chat
completions with tools), bounded in turns, time and tokens. It returns what the model says it did."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from log import log
from redact import redact
from settings import Settings
from tools import SCHEMAS, Toolbox

SYSTEM = """You repair a Mastra app (a TypeScript project run by `npm run dev` / `mastra dev` under pm2) \
that has stopped working in a user's sandbox. Use the tools to look at the project's files and the app \
log, find the cause, fix it with the smallest change, restart the app and wait to see it answer /health. \
You may only touch files inside the project. Call `finish` with a short summary of the cause and what \
you changed (or why you could not fix it)."""

MAX_COMPLETION_TOKENS = 4096


class ModelUnavailable(Exception):
    pass


def _complete(settings: Settings, messages: list[dict[str, Any]], timeout: float) -> dict[str, Any]:
    body = {
        "model": settings.model,
        "messages": messages,
        "tools": SCHEMAS,
        "tool_choice": "auto",
        "max_tokens": MAX_COMPLETION_TOKENS,
    }
    request = urllib.request.Request(
        f"{settings.llm_base_url}/chat/completions",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {settings.virtual_key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as error:
        raise ModelUnavailable(f"the model answered HTTP {error.code}") from None
    except (OSError, ValueError) as error:
        raise ModelUnavailable(f"the model could not be reached ({type(error).__name__})") from None


def attempt(settings: Settings, toolbox: Toolbox, problem: str, log_tail: str, number: int) -> str:
    """Run one attempt; the model's summary (or why the attempt stopped)."""
    if not settings.llm_base_url:
        return "no model gateway is configured (OPENAI_BASE_URL / SHMASTRA_CLOUD_URL)"
    toolbox.finished = None
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM},
        {
            "role": "user",
            "content": redact(
                f"Repair attempt {number} of {settings.max_attempts}.\nProblem: {problem}\n"
                f"Project folder: {settings.project.name}/ (paths are relative to it)\n\n"
                f"Recent app log:\n{log_tail}",
                settings.virtual_key,
            ),
        },
    ]
    deadline = time.monotonic() + settings.attempt_seconds
    tokens = 0
    last_text = ""
    for _turn in range(settings.max_turns):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return f"stopped: the attempt's time ({settings.attempt_seconds:.0f} s) ran out. {last_text}"
        if tokens >= settings.attempt_tokens:
            return f"stopped: the attempt's token budget ({settings.attempt_tokens}) ran out. {last_text}"
        try:
            answer = _complete(settings, messages, timeout=min(120.0, remaining))
        except ModelUnavailable as error:
            return str(error)
        tokens += int((answer.get("usage") or {}).get("total_tokens") or 0)
        choices = answer.get("choices") or [{}]
        message = choices[0].get("message") or {}
        last_text = str(message.get("content") or "").strip()
        calls = message.get("tool_calls") or []
        messages.append(
            {
                "role": "assistant",
                "content": message.get("content"),
                **({"tool_calls": calls} if calls else {}),
            }
        )
        if not calls:
            return last_text or "the model stopped without a summary"
        for call in calls:
            function = call.get("function") or {}
            name = str(function.get("name", ""))
            result = toolbox.call(name, str(function.get("arguments") or "{}"))
            log(f"attempt {number}: {name} -> {result.splitlines()[0] if result else ''}")
            messages.append({"role": "tool", "tool_call_id": call.get("id", ""), "content": result})
        if toolbox.finished is not None:
            return toolbox.finished
    return f"stopped after {settings.max_turns} turns. {last_text}"
