"""The response tap: reads usage from a copy of the stream while the bytes pass through unchanged.

SSE streams are read event by event; JSON bodies (including Gemini's streamed JSON array) are read
whole at the end from a bounded copy. Compressed bodies pass through untouched; the tap reads a
decompressed copy. When the gateway itself asked OpenAI for ``stream_options.include_usage``, the tap
removes what that added (the final usage chunk and the ``"usage":null`` of the other chunks), so the
client sees exactly the stream it asked for: then it forwards whole events only, one write per event.
"""

from __future__ import annotations

import re
import zlib

from multidict import CIMultiDict

from .errors import Shape
from .usage import UsageReport, parse_json, sse_data

_EVENT_END = re.compile(rb"\r?\n\r?\n")
_NULL_USAGE = re.compile(rb',\s*"usage"\s*:\s*null')
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
_MAX_COPY = 16 * 1024 * 1024  # a JSON body larger than this is not read for usage
_MAX_EVENT = 1024 * 1024  # nor an SSE event larger than this


class UsageTap:
    """A :class:`proxy_core.ResponseTap` for one gateway response."""

    __slots__ = (
        "_body",
        "_inflate",
        "_mode",
        "_pending",
        "_size",
        "extra_headers",
        "report",
        "status",
        "strip_usage",
    )

    def __init__(self, shape: Shape, *, strip_usage: bool = False) -> None:
        self.report = UsageReport(shape)
        self.strip_usage = strip_usage
        self.status = 0
        self.extra_headers: dict[str, str] = {}
        self._mode = ""  # "sse", "json" or "" (not read)
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
        elif "json" in kind and self.report.shape != "composio":
            self._mode = "json"
        encoding = headers.get("Content-Encoding", "identity").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            self._inflate = zlib.decompressobj(wbits=47)  # gzip or zlib, detected from the header
            self.strip_usage = False
        elif encoding != "identity":
            self._mode = ""  # an encoding the gateway did not offer: pass it through unread
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
            return data
        if self.strip_usage:
            return self._strip(copy)
        self._read_events(copy)
        return data

    def on_end(self) -> bytes:
        if self._mode == "json" and self._size <= _MAX_COPY:
            parsed = parse_json(b"".join(self._body))
            for item in parsed if isinstance(parsed, list) else (parsed,):
                self.report.add(item)
            self._body.clear()
        tail, self._pending = self._pending, b""
        if self._mode == "sse" and tail.strip():
            self._read_event(tail)
        return tail if self.strip_usage else b""

    def _read_events(self, data: bytes) -> None:
        buffer = self._pending + data if self._pending else data
        start = 0
        for end in _EVENT_END.finditer(buffer):
            self._read_event(buffer[start : end.start()])
            start = end.end()
        self._pending = buffer[start:] if len(buffer) - start <= _MAX_EVENT else b""

    def _read_event(self, event: bytes) -> None:
        if b"sage" in event or b"message_start" in event:  # usage, usageMetadata, Anthropic's start
            self.report.add(parse_json(sse_data(event)))

    def _strip(self, data: bytes) -> bytes:
        buffer = self._pending + data if self._pending else data
        out: list[bytes] = []
        start = 0
        for end in _EVENT_END.finditer(buffer):
            event = buffer[start : end.start()]
            if _USAGE_OBJECT.search(event):
                parsed = parse_json(sse_data(event))
                self.report.add(parsed)
                if isinstance(parsed, dict) and parsed.get("choices") == []:
                    start = end.end()
                    continue  # the chunk the gateway asked for: the client did not
            elif b'"usage"' in event:
                event = _NULL_USAGE.sub(b"", event)
            out.append(event + buffer[end.start() : end.end()])
            start = end.end()
        if len(buffer) - start > _MAX_EVENT:  # no event boundary in sight: stop holding bytes back
            out.append(buffer[start:])
            start = len(buffer)
        self._pending = buffer[start:]
        return b"".join(out)
