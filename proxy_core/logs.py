"""Logs: one JSON object per line for machines, or short human lines on a terminal.

``[server] log_format = "auto"`` (the default) writes human lines when stderr is a terminal and JSON
otherwise; ``"json"`` or ``"text"`` force one. Every application log line passes through
:func:`proxy_core.redact.redact`, so no secret from the environment reaches it. A record logged with
``extra={"fields": {..., "highlight": True}}`` (the start-up banner, a sign-in code) stands on its
own line in text mode, set off by a blank line and ``==>``.

The access log is gathered in a small buffer handed every 50 ms (and at shutdown) to a writer thread
(:mod:`proxy_core.logwriter`), so logging a request costs one ``orjson.dumps`` and a list append, never
a system call on the loop; a slow log reader, a full disk or a closed stderr loses log lines (counted
in ``proxy_access_log_dropped_total``), never requests.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from typing import IO, Any

import orjson
from aiohttp import web

from .logwriter import BackgroundWriter
from .metrics import Counter
from .redact import redact

_FLUSH_AFTER = 0.05
_FLUSH_BYTES = 64 * 1024
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


class AccessLog:
    """Buffered access log, JSON or (``human``) short text lines. Paths are logged without their query
    string (it may carry keys)."""

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
        self._human = human
        self._buffer: list[bytes] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._clock = (0, "")  # the text mode's HH:MM:SS, made once a second

    def record(
        self,
        request: web.BaseRequest,
        status: int,
        duration: float,
        size: int,
        client: str,
        *,
        websocket: dict[str, object] | None = None,
    ) -> None:
        """One line; a proxied WebSocket (status 101, the session's duration) adds how it ended."""
        if self._human:
            second = int(time.time())
            if self._clock[0] != second:
                self._clock = (second, time.strftime("%H:%M:%S", time.localtime(second)))
            clock = self._clock[1]
            ended = ""
            if websocket is not None:
                ended = f" websocket {websocket['ended']} by {websocket['by']} code {websocket['code']}"
            line = (
                f"{clock} access  {request.method} {request.path} {status} "
                f"{duration * 1000:.1f}ms {size}B {client}{ended}\n"
            ).encode("utf-8", "backslashreplace")
        else:
            line = self._json_line(request, status, duration, size, client, websocket)
        self._buffer.append(line)
        self._size += len(line)
        if self._size >= _FLUSH_BYTES:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(_FLUSH_AFTER, self.flush)

    @staticmethod
    def _json_line(
        request: web.BaseRequest,
        status: int,
        duration: float,
        size: int,
        client: str,
        websocket: dict[str, object] | None,
    ) -> bytes:
        entry: dict[str, object] = {
            "ts": round(time.time(), 3),
            "level": "info",
            "logger": "access",
            "method": request.method,
            "path": request.path,
            "status": status,
            "duration_ms": round(duration * 1000, 3),
            "bytes": size,
            "client": client,
            "user_agent": request.headers.get("User-Agent", ""),
        }
        if websocket is not None:
            entry["websocket"] = websocket
        return orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE)

    def flush(self) -> None:
        """Hand what is buffered to the writer thread (never blocks)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer.clear()
            self._size = 0
            self._writer.submit(data)

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
