"""What a forwarding exchange is made of, shared by the HTTP forwarder and the WebSocket relay: the
upstream, the request about to be sent, timeouts, the tap on the response, and upstream failures with
how to render them. A leaf module: it imports nothing else of the forwarder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from ._upstream import Origin
from .errors import error_response


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Upstream timeouts in seconds: ``connect``; ``read``, until the response head arrives; ``idle``,
    the longest silence between two pieces of a body (``None``: wait forever, for long-lived streams)."""

    connect: float = 10.0
    read: float = 60.0
    idle: float | None = 900.0


@dataclass(frozen=True, slots=True)
class Upstream:
    """A base URL to forward to: its origin plus a path prefix put before the request's own path."""

    origin: Origin
    prefix: str = ""
    host: str = field(init=False, repr=False, compare=False)
    """``origin.netloc``, the ``Host`` header it is sent, made once rather than per request."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", self.origin.netloc)

    @classmethod
    def from_url(cls, url: str | URL) -> Upstream:
        parsed = URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"expected an http:// or https:// URL with a host, got {str(url)!r}")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        return cls(Origin(parsed.scheme, parsed.host, port), parsed.raw_path.rstrip("/"))

    def __str__(self) -> str:
        return f"{self.origin.scheme}://{self.origin.netloc}{self.prefix}"


@dataclass(slots=True)
class UpstreamRequest:
    """What will be sent upstream. Stages may change any field before calling :meth:`Forwarder.send`."""

    origin: Origin
    target: str  # raw path and query, as sent on the request line
    method: str
    headers: CIMultiDict[str]
    host: str
    body: bytes | None = None  # None: stream the client's own body


class ResponseTap(Protocol):
    """Watches (and may rewrite) a response as it streams. Used e.g. to read token usage."""

    def on_head(self, status: int, headers: CIMultiDict[str]) -> None: ...

    def on_chunk(self, data: bytes) -> bytes: ...

    def on_end(self) -> bytes: ...

    def on_failure(self, kind: str) -> bytes:
        """The upstream broke off after the answer started (``kind``: "midstream" or "idle_timeout").
        Bytes returned are sent and the answer is ended cleanly (e.g. an error event a streaming
        client understands); ``b""`` cuts the client's connection, the default signal."""
        ...


class UpstreamError(Exception):
    """The upstream failed before an answer could start; ``status`` is what the client should get."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


class RequestBodyTooLarge(Exception):
    pass


@dataclass(frozen=True, slots=True)
class BodyLimit:
    """The one rule for request bodies (``[server] max_body_size``; 0: none): a body declared or
    found larger is refused with 413 and this message, whoever reads it (the forwarder streaming it,
    a stage reading it whole)."""

    max_size: int = 0

    @property
    def message(self) -> str:
        return f"The request body is larger than {self.max_size} bytes."

    def declared_too_large(self, request: web.BaseRequest) -> bool:
        """The request's ``Content-Length`` is over the limit."""
        return bool(self.max_size) and (request.content_length or 0) > self.max_size

    def exceeded(self, size: int) -> bool:
        return bool(self.max_size) and size > self.max_size

    async def read(self, request: web.BaseRequest) -> bytes | None:
        """The whole body, or ``None`` as soon as it is over the limit (the rest is not read)."""
        if self.declared_too_large(request):
            return None
        content = request.content
        if content.is_eof():  # the whole body came with the head (a small request): no waiting
            body = content.read_nowait()
            return None if self.exceeded(len(body)) else body
        chunks, size = [], 0
        while chunk := await content.readany():
            size += len(chunk)
            if self.exceeded(size):
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def refuse(self, request: web.Request) -> web.Response:
        """The 413 in the proxy's own shape (HTML for browsers, JSON for the rest)."""
        return error_response(request, 413, self.message)


ErrorRenderer = Callable[[web.Request, UpstreamError], web.StreamResponse]


def default_error_renderer(request: web.Request, error: UpstreamError) -> web.StreamResponse:
    return error_response(request, error.status, error.message)
