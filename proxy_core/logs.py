"""Logs: one JSON object per line for machines, or short human lines on a terminal.

``[server] log_format = "auto"`` (the default) writes human lines when stderr is a terminal and JSON
otherwise; ``"json"`` or ``"text"`` force one. Every application log line passes through
:func:`proxy_core.redact.redact`, so no secret from the environment reaches it. A record logged with
``extra={"fields": {..., "highlight": True}}`` (the start-up banner, a sign-in code) stands on its
own line in text mode, set off by a blank line and ``==>``.

The access log keeps each request's fields in a small buffer; every 50 ms (and at shutdown) their
lines are made in one batch and handed to a writer thread (:mod:`proxy_core.logwriter`), so logging a
request costs a tuple and a list append, never a system call on the loop; a slow log reader, a full
disk or a closed stderr loses log lines (counted in ``proxy_access_log_dropped_total``), never
requests.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from typing import IO, Any

import orjson
from aiohttp import hdrs, web

from .logwriter import BackgroundWriter
from .metrics import Counter
from .redact import redact

_FLUSH_AFTER = 0.05
_FLUSH_LINES = 512
_MAX_PENDING = 8 * 1024 * 1024  # bytes waiting for a slow log reader before lines are dropped
_STDERR_WRITES = threading.RLock()
"""Held by whatever writes to the process's stderr (the application log's handler, the access log's
writer thread), so their lines never interleave mid-line."""


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
            entry.pop("highlight", None)  # a terminal's concern; JSON readers filter on "event"
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact(orjson.dumps(entry, default=str).decode())


class TextFormatter(logging.Formatter):
    """``12:00:01 info  proxy_core.server: listening address=http://…``, for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        fields = dict(fields) if isinstance(fields, dict) else {}
        highlight = bool(fields.pop("highlight", False))
        message = record.getMessage()
        if highlight:
            line = f"\n==> {message}\n"
        else:
            clock = time.strftime("%H:%M:%S", time.localtime(record.created))
            extra = "".join(f" {k}={v}" for k, v in fields.items())
            line = f"{clock} {record.levelname.lower():<7} {record.name}: {message}{extra}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


def resolve_format(fmt: str, stream: IO[str] | None = None) -> str:
    """``"json"`` or ``"text"``; ``"auto"`` is text on a terminal, JSON otherwise."""
    if fmt != "auto":
        return fmt
    target = stream or sys.stderr
    try:
        return "text" if target.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def setup_logging(level: str = "info", fmt: str = "auto", stream: IO[str] | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    if stream is None:
        handler.lock = _STDERR_WRITES
    if resolve_format(fmt, stream) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").disabled = True


_Entry = tuple[float, str, str, int, float, int, str, str, "dict[str, object] | None"]
"""What :meth:`AccessLog.record` keeps of a request until the next flush: time, method, path, status,
duration, bytes, client, user agent, how a WebSocket session ended."""

_JSON_LINE = b'{"ts":%.3f,"level":"info","logger":"access",%s,"status":%d,"duration_ms":%.3f,"bytes":%d}\n'
_JSON_WHO = b'"method":%s,"path":%s,"client":%s,"user_agent":%s'


def _json_text(text: str) -> bytes:
    """``text`` as a JSON string; bytes a client sent that are not UTF-8 (a header decoded with
    ``surrogateescape``) are written as ``\\xNN`` escapes rather than failing the whole batch."""
    try:
        return orjson.dumps(text)
    except orjson.JSONEncodeError:
        return orjson.dumps(_readable(text))


def _readable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _json_websocket_line(entry: _Entry) -> bytes:
    """A proxied WebSocket session's line: the same fields and how the session ended."""
    ts, method, path, status, duration, size, client, user_agent, websocket = entry
    fields = {
        "ts": round(ts, 3),
        "level": "info",
        "logger": "access",
        "method": _readable(method),
        "path": _readable(path),
        "client": _readable(client),
        "user_agent": _readable(user_agent),
        "status": status,
        "duration_ms": round(duration * 1000, 3),
        "bytes": size,
        "websocket": websocket,
    }
    return orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE)


class AccessLog:
    """Buffered access log, JSON or (``human``) short text lines. Paths are logged without their query
    string (it may carry keys).

    A request costs a tuple of the fields it logs; the lines are made from those in one batch when the
    buffer is flushed (every 50 ms, or every 512 requests): formatting a line in a tight loop costs
    half of what it costs between two requests, whose work has pushed the formatter out of the CPU's
    caches."""

    def __init__(
        self,
        stream: int | IO[bytes] | None = None,
        *,
        human: bool = False,
        dropped: Counter | None = None,
    ) -> None:
        target = stream if stream is not None else _stderr()
        on_drop = None if dropped is None else lambda lines: dropped.inc((), lines)
        lock = _STDERR_WRITES if stream is None else None
        self._writer = BackgroundWriter(target, max_pending=_MAX_PENDING, on_drop=on_drop, lock=lock)
        self._lines = self._text_lines if human else self._json_lines
        self._entries: list[_Entry] = []
        self._timer: asyncio.TimerHandle | None = None
        self._clock = (0, "")  # the text mode's HH:MM:SS, made once a second

    def record(
        self,
        request: web.BaseRequest,
        status: int,
        duration: float,
        size: int,
        client: str,
        websocket: dict[str, object] | None = None,
    ) -> None:
        """One line; a proxied WebSocket (status 101, the session's duration) adds how it ended."""
        entries = self._entries
        entries.append(
            (
                time.time(),
                request.method,
                request.path,
                status,
                duration,
                size,
                client,
                request.headers.get(hdrs.USER_AGENT, ""),
                websocket,
            )
        )
        if len(entries) >= _FLUSH_LINES:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(_FLUSH_AFTER, self.flush)

    @staticmethod
    def _json_lines(entries: list[_Entry]) -> bytes:
        who: dict[tuple[str, str, str, str], bytes] = {}  # a batch's requests repeat these four fields
        text = _json_text
        lines = []
        for entry in entries:
            ts, method, path, status, duration, size, client, user_agent, websocket = entry
            if websocket is not None:
                lines.append(_json_websocket_line(entry))
                continue
            key = (method, path, client, user_agent)
            fields = who.get(key)
            if fields is None:
                fields = who[key] = _JSON_WHO % (text(method), text(path), text(client), text(user_agent))
            lines.append(_JSON_LINE % (ts, fields, status, duration * 1000, size))
        return b"".join(lines)

    def _text_lines(self, entries: list[_Entry]) -> bytes:
        lines = []
        for ts, method, path, status, duration, size, client, _, websocket in entries:
            second = int(ts)
            if self._clock[0] != second:
                self._clock = (second, time.strftime("%H:%M:%S", time.localtime(second)))
            ended = ""
            if websocket is not None:
                ended = f" websocket {websocket['ended']} by {websocket['by']} code {websocket['code']}"
            lines.append(
                f"{self._clock[1]} access  {method} {path} {status} "
                f"{duration * 1000:.1f}ms {size}B {client}{ended}\n"
            )
        return "".join(lines).encode("utf-8", "backslashreplace")

    def flush(self) -> None:
        """Make the buffered requests' lines and hand them to the writer thread (never blocks)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._entries:
            entries, self._entries = self._entries, []
            self._writer.submit(self._lines(entries))

    def close(self, timeout: float = 1.0) -> None:
        """Flush, and let the writer finish what is queued (for at most ``timeout`` seconds)."""
        self.flush()
        self._writer.close(timeout)


def _stderr() -> int | IO[bytes]:
    """The process's stderr: its descriptor when it has one (written without Python's buffering)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return sys.stderr.buffer
