"""Token usage, read from every response shape as it streams past.

* OpenAI chat completions: ``usage`` of the body, or of the final chunk when
  ``stream_options.include_usage`` is set; OpenAI responses: ``usage`` of the body or of the
  ``response.completed`` event's ``response``.
* Anthropic messages: ``usage`` of the body, or ``message_start``'s ``message.usage`` followed by the
  cumulative counts of ``message_delta``.
* Gemini: ``usageMetadata`` of the body, of each streamed chunk (``?alt=sse``) or of each element of
  the streamed JSON array (without ``alt=sse``).

Later reports override earlier ones field by field, which is how every provider's streams count.

Beside the counts, a report knows whether the provider's *final* count arrived (``final``) and how many
UTF-8 bytes of generated text (content, reasoning, tool-call arguments) streamed past
(``text_bytes``): what a stream that ended early is estimated from (see :mod:`.estimate`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from .errors import Shape


class Usage(NamedTuple):
    """Normalized counts: ``input_tokens`` includes cache reads and writes, ``output_tokens`` includes
    reasoning. ``reported`` is False when the provider said nothing (an error, a cut stream). A tuple:
    one is made per gateway request."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    model: str = ""
    reported: bool = False
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class UsageReport:
    """The raw counts collected so far for one response, keyed by the provider's own field names."""

    shape: Shape
    counts: dict[str, int] = field(default_factory=dict)
    model: str = ""
    final: bool = False  # the provider's closing count arrived
    text_bytes: int = 0  # generated text seen so far

    def add(self, event: Any) -> bool:
        """Fold one parsed JSON object in; True when it carried usage."""
        if not isinstance(event, dict):
            return False
        return _EXTRACTORS[self.shape](self, event)

    def add_text(self, value: Any) -> None:
        if isinstance(value, str):
            self.text_bytes += len(value.encode())

    def merge(self, usage: Any, prefix: str = "") -> bool:
        if not isinstance(usage, dict):
            return False
        counts = self.counts
        for name, value in usage.items():
            if isinstance(value, int) and not isinstance(value, bool):
                counts[prefix + name] = value
            elif isinstance(value, dict) and not prefix:
                self.merge(value, f"{name}.")
        return True

    def result(self) -> Usage:
        c = self.counts
        if not c:
            return Usage(model=self.model)
        if self.shape == "anthropic":
            read = c.get("cache_read_input_tokens", 0)
            write = c.get("cache_creation_input_tokens", 0)
            return Usage(
                c.get("input_tokens", 0) + read + write,
                c.get("output_tokens", 0),
                read,
                write,
                self.model,
                True,
            )
        if self.shape == "gemini":
            return Usage(
                c.get("promptTokenCount", 0) + c.get("toolUsePromptTokenCount", 0),
                c.get("candidatesTokenCount", 0) + c.get("thoughtsTokenCount", 0),
                c.get("cachedContentTokenCount", 0),
                0,
                self.model,
                True,
            )
        cached = c.get("prompt_tokens_details.cached_tokens", c.get("input_tokens_details.cached_tokens", 0))
        return Usage(
            c.get("prompt_tokens", c.get("input_tokens", 0)),
            c.get("completion_tokens", c.get("output_tokens", 0)),
            cached,
            0,
            self.model,
            True,
        )


def _model(report: UsageReport, value: Any) -> None:
    if isinstance(value, str) and value:
        report.model = value


def _openai(report: UsageReport, event: dict[str, Any]) -> bool:
    kind = event.get("type")
    response = event.get("response")
    if isinstance(response, dict):  # a Responses API stream event
        _model(report, response.get("model"))
        if report.merge(response.get("usage")):
            report.final = True
            return True
        return False
    if isinstance(kind, str) and kind.endswith(".delta"):  # Responses: text, arguments, reasoning
        report.add_text(event.get("delta"))
        return False
    _model(report, event.get("model"))
    for choice in event.get("choices") or ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict):  # a chat completion chunk
            report.add_text(delta.get("content"))
            report.add_text(delta.get("reasoning_content"))
            report.add_text(delta.get("refusal"))
            for call in delta.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    report.add_text(function.get("name"))
                    report.add_text(function.get("arguments"))
    if report.merge(event.get("usage")):
        report.final = True
        return True
    return False


def _anthropic(report: UsageReport, event: dict[str, Any]) -> bool:
    message = event.get("message")
    if isinstance(message, dict):  # message_start: the input, and a placeholder for the output
        _model(report, message.get("model"))
        return report.merge(message.get("usage"))
    delta = event.get("delta")
    if isinstance(delta, dict):  # content_block_delta (text, thinking, tool input) or message_delta
        for name in ("text", "thinking", "partial_json"):
            report.add_text(delta.get(name))
    _model(report, event.get("model"))
    if report.merge(event.get("usage")):  # message_delta, or a whole message
        report.final = True
        return True
    return False


def _gemini(report: UsageReport, event: dict[str, Any]) -> bool:
    _model(report, event.get("modelVersion"))
    for candidate in event.get("candidates") or ():
        if not isinstance(candidate, dict):
            continue
        content = candidate.get("content")
        for part in (content.get("parts") if isinstance(content, dict) else None) or ():
            if isinstance(part, dict):
                report.add_text(part.get("text"))
                if "functionCall" in part:
                    report.text_bytes += len(orjson.dumps(part["functionCall"]))
        if candidate.get("finishReason"):
            report.final = True
    return report.merge(event.get("usageMetadata"))


def _none(report: UsageReport, event: dict[str, Any]) -> bool:
    return False


_EXTRACTORS: dict[Shape, Callable[[UsageReport, dict[str, Any]], bool]] = {
    "openai": _openai,
    "anthropic": _anthropic,
    "gemini": _gemini,
    "composio": _none,
}


def sse_data(event: bytes) -> bytes:
    """The payload of one SSE event: its ``data:`` lines joined by newlines."""
    lines = [line for line in event.splitlines() if line.startswith(b"data:")]
    return b"\n".join(line[6:] if line[5:6] == b" " else line[5:] for line in lines)


def parse_json(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
