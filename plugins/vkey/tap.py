"""The response tap: reads usage from a copy of the stream while the bytes pass through unchanged.

SSE streams are read event by event and forwarded whole events at a time (an event is only usable
once complete, so holding back its first half delays nothing a client could see), which keeps the
stream well-formed when the provider cuts it off: the tap then ends it with one error event in the
provider's own shape instead of leaving the client with a bare reset. JSON bodies (including Gemini's
streamed JSON array) are read whole at the end from a bounded copy, or as far as they got when they
never ended. Compressed bodies pass through untouched; the tap reads a decompressed copy. When the
gateway itself asked OpenAI for ``stream_options.include_usage``, the tap removes what that added
(the final usage chunk and the ``"usage":null`` of the other chunks), so the client sees exactly the
stream it asked for. For a provider whose answers carry URLs of its own API (Composio's MCP URLs),
the tap rewrites them to the gateway (:class:`UrlRewrite`): JSON bodies are then held until complete.
"""

from __future__ import annotations

import re
import zlib

from multidict import CIMultiDict

from .errors import Shape, stream_error_event
from .usage import UsageReport, parse_json, sse_data

_EVENT_END = re.compile(rb"\r?\n\r?\n")
_NULL_USAGE = re.compile(rb',\s*"usage"\s*:\s*null')
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
_MAX_COPY = 16 * 1024 * 1024  # a JSON body larger than this is not read for usage
_MAX_EVENT = 1024 * 1024  # nor an SSE event larger than this
_SALVAGE_TRIES = 64  # element ends tried when reading what arrived of an unfinished JSON array

FAILURE_STATUS = {"midstream": 502, "idle_timeout": 504}
_ENDPOINT_EVENT = re.compile(rb"^event:\s*endpoint\s*$", re.MULTILINE)
_RELATIVE_DATA = re.compile(rb"^(data:\s?)/(?!/)", re.MULTILINE)


class UrlRewrite:
    """URLs under ``upstream`` (the provider's API base, e.g. ``https://backend.composio.dev``) become
    URLs under ``gateway`` (``https://cloud.example.com/api/gateway/composio``, as the client reached
    the gateway); an MCP SSE ``endpoint`` event's host-relative path gets the gateway's path."""

    __slots__ = ("_pattern", "gateway", "gateway_path", "upstream")

    def __init__(self, upstream: str, gateway: str, gateway_path: str) -> None:
        self.upstream = upstream.encode()
        self.gateway = gateway.encode()
        self.gateway_path = gateway_path.encode()
        # the base itself, not a longer host name that starts with it
        self._pattern = re.compile(re.escape(self.upstream) + rb"(?=[/\"?#\\]|$)")

    def apply(self, data: bytes) -> bytes:
        if self.upstream not in data:
            return data
        return self._pattern.sub(lambda _: self.gateway, data)

    def event(self, event: bytes) -> bytes:
        event = self.apply(event)
        if _ENDPOINT_EVENT.search(event):
            event = _RELATIVE_DATA.sub(lambda m: m.group(1) + self.gateway_path + b"/", event)
        return event


class UsageTap:
    """A :class:`proxy_core.ResponseTap` for one gateway response."""

    __slots__ = (
        "_body",
        "_encoded",
        "_inflate",
        "_mode",
        "_pending",
        "_size",
        "ended",
        "extra_headers",
        "failed",
        "report",
        "responses_api",
        "rewrite",
        "status",
        "strip_usage",
    )

    def __init__(
        self,
        shape: Shape,
        *,
        strip_usage: bool = False,
        responses_api: bool = False,
        rewrite: UrlRewrite | None = None,
    ) -> None:
        self.report = UsageReport(shape)
        self.strip_usage = strip_usage
        self.responses_api = responses_api  # OpenAI's Responses API: its own stream error event
        self.rewrite = rewrite
        self.status = 0
        self.ended = False  # the provider's answer ended normally
        self.failed = ""  # how the provider's answer broke off mid-way ("midstream", "idle_timeout")
        self.extra_headers: dict[str, str] = {}
        self._mode = ""  # "sse", "json" or "" (not read)
        self._encoded = False
        self._inflate: zlib._Decompress | None = None
        self._pending = b""
        self._body: list[bytes] = []
        self._size = 0

    def on_head(self, status: int, headers: CIMultiDict[str]) -> None:
        self.status = status
        headers["X-Accel-Buffering"] = "no"
        headers.update(self.extra_headers)
        kind = headers.get("Content-Type", "").lower()
        if "text/event-stream" in kind:
            self._mode = "sse"
        elif "json" in kind and (self.report.shape != "composio" or self.rewrite is not None):
            self._mode = "json"
        encoding = headers.get("Content-Encoding", "identity").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            self._inflate = zlib.decompressobj(wbits=47)  # gzip or zlib, detected from the header
            self._encoded = True
            self.strip_usage = False
        elif encoding != "identity":
            self._mode = ""  # an encoding the gateway did not offer: pass it through unread
            self._encoded = True
        if self._encoded:
            self.rewrite = None  # the gateway asked for identity; a provider that ignored it is not rewritten
        if self._mode != "sse":
            self.strip_usage = False

    def on_chunk(self, data: bytes) -> bytes:
        if not self._mode:
            return data
        copy = data
        if self._inflate is not None:
            try:
                copy = self._inflate.decompress(data)
            except zlib.error:
                self._mode = ""
                return data
        if self._mode == "json":
            self._size += len(copy)
            if self._size <= _MAX_COPY:
                self._body.append(copy)
                return b"" if self.rewrite is not None else data  # held until complete, to rewrite
            if self.rewrite is not None:  # too large to hold: what was held goes, the rest passes
                held, self.rewrite = self._body, None
                return b"".join(held) + data
            return data
        if self._encoded:  # compressed events pass as they come; only the copy is read
            self._events(copy, False)
            return data
        return self._events(copy, True)

    def on_end(self) -> bytes:
        self.ended = True
        if self._mode == "json" and self.rewrite is not None:
            held = b"".join(self._body)
            self.salvage()
            return self.rewrite.apply(held)
        self.salvage()
        tail, self._pending = self._pending, b""
        if self._mode == "sse" and tail.strip():
            self._read_event(tail)
            if self.rewrite is not None:
                tail = self.rewrite.event(tail)
        return b"" if self._encoded else tail

    def on_failure(self, kind: str) -> bytes:
        """The provider broke off mid-answer: one error event in its stream shape, or ``b""`` (the
        connection is cut) when the body is not an event stream the gateway writes into."""
        self.failed = kind
        self._pending = b""  # half an event is no event: dropped, and the error event follows
        if self._mode != "sse" or self._encoded or self.report.shape == "composio":
            return b""  # Composio's streams are MCP's JSON-RPC: no error event of theirs fits
        status = FAILURE_STATUS.get(kind, 502)
        message = (
            "The provider's stream was cut off before it ended (gateway)."
            if status == 502
            else "The provider went silent mid-stream and the stream was ended (gateway)."
        )
        return stream_error_event(self.report.shape, status, message, responses_api=self.responses_api)

    def salvage(self) -> None:
        """Read the JSON body as far as it arrived (once): whole when it ended, else the elements of a
        streamed JSON array that did arrive."""
        if self._mode != "json" or not self._body or self._size > _MAX_COPY:
            return
        body = b"".join(self._body)
        self._body.clear()
        parsed = parse_json(body)
        if parsed is None and body.lstrip().startswith(b"["):
            parsed = _partial_array(body)
        for item in parsed if isinstance(parsed, list) else (parsed,):
            self.report.add(item)

    def _events(self, data: bytes, forward: bool) -> bytes:
        """Read the whole events in ``data``; with ``forward``, return the bytes to send on (whole
        events, and the gateway's own usage chunk removed when it asked for one)."""
        buffer = self._pending + data if self._pending else data
        out: list[bytes] = []
        start = 0
        rewrite = self.rewrite
        for end in _EVENT_END.finditer(buffer):
            event = buffer[start : end.start()]
            if rewrite is not None:
                self._read_event(event)
                out.append(rewrite.event(event) + buffer[end.start() : end.end()])
            elif self.strip_usage:
                if _USAGE_OBJECT.search(event):
                    parsed = self._read_event(event)
                    if isinstance(parsed, dict) and parsed.get("choices") == []:
                        start = end.end()
                        continue  # the chunk the gateway asked for: the client did not
                elif b'"usage"' in event:
                    self._read_event(event)
                    event = _NULL_USAGE.sub(b"", event)
                else:
                    self._read_event(event)
                out.append(event + buffer[end.start() : end.end()])
            else:
                self._read_event(event)
            start = end.end()
        if len(buffer) - start > _MAX_EVENT:  # no event boundary in sight: stop holding bytes back
            if self.strip_usage or rewrite is not None:
                out.append(buffer[start:])
            start = len(buffer)
        self._pending = buffer[start:]
        if not forward:
            return b""
        if self.strip_usage or rewrite is not None:
            return b"".join(out)
        return buffer if start == len(buffer) else buffer[:start]

    def _read_event(self, event: bytes) -> object:
        payload = sse_data(event)
        if not payload or payload == b"[DONE]":
            return None
        parsed = parse_json(payload)
        self.report.add(parsed)
        return parsed


def _partial_array(body: bytes) -> list[object]:
    """The elements of an unfinished JSON array, up to the last one that arrived whole."""
    end = len(body)
    for _ in range(_SALVAGE_TRIES):
        end = body.rfind(b"}", 0, end)
        if end < 0:
            break
        parsed = parse_json(body[: end + 1] + b"]")
        if isinstance(parsed, list):
            return parsed
    return []
