"""A complete upstream answer relayed to the client in one write, its head serialised straight from the
upstream's header bytes.

Most proxied answers are small and arrive whole before the proxy answers (status, headers and a
``Content-Length`` body). aiohttp's own response path decodes those headers into a ``CIMultiDict``,
adds its defaults, encodes them again and then writes head and body; here the head is joined from
the bytes the upstream sent (hop-by-hop headers already removed) with the same defaults aiohttp adds
(``Date``, ``Server``, ``Content-Type`` for a non-empty body, ``Connection`` when the client's keep-alive
needs saying) and written with the body in one ``transport.write``.

It stays an ordinary :class:`aiohttp.web.StreamResponse` to everyone else: a stage that reads or changes
``headers``, sets a cookie, asks for compression or chunking after the forwarder built it (or an app
with ``on_response_prepare`` signals) gets aiohttp's own path with the same headers.
"""

from __future__ import annotations

from typing import Any

from aiohttp import hdrs, web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, HttpVersion10, HttpVersion11
from multidict import CIMultiDict, CIMultiDictProxy

_SERVER = f"Server: {SERVER_SOFTWARE}\r\n".encode("latin-1")
_DEFAULT_TYPE = b"Content-Type: application/octet-stream\r\n"
_CLOSE = b"Connection: close\r\n"
_KEEP_ALIVE = b"Connection: keep-alive\r\n"
_INTERNALS = (
    "_payload_writer",
    "_eof_sent",
    "_keep_alive",
    "_headers",
    "_cookies",
    "_compression",
    "_chunked",
    "_must_be_empty_body",
    "_body_length",
    "_req",
)
# The one-write path relies on these attributes of aiohttp's StreamResponse (and the request's
# ``_payload_writer``), present in 3.12-3.14; an aiohttp without them gets its own response path.
_FAST_PATH = all(hasattr(web.StreamResponse(), name) for name in _INTERNALS)


class RelayedResponse(web.StreamResponse):
    """``status``, the upstream's ``items`` (raw, hop-by-hop headers and ``Content-Length`` removed) and
    the whole ``body``. Never for HEAD answers, 1xx, 204 or 304 (no body may follow their head)."""

    def __init__(self, status: int, items: list[tuple[bytes, bytes]], body: bytes) -> None:
        super().__init__(status=status)
        self._items: list[tuple[bytes, bytes]] | None = items
        self._relayed = body

    # -- seen from outside: a response like any other -------------------------------------------------
    @property
    def headers(self) -> CIMultiDict[str]:
        self._materialise()
        return super().headers

    @property
    def content_length(self) -> int | None:
        return len(self._relayed) if self._items is not None else super().content_length

    @content_length.setter
    def content_length(self, value: int | None) -> None:
        raise RuntimeError("Content length is set from the relayed body")

    def _materialise(self) -> None:
        """Move the raw items into aiohttp's headers (values set meanwhile take precedence)."""
        items = self._items
        if items is None:
            return
        self._items = None
        explicit = CIMultiDictProxy(self._headers.copy())
        headers = self._headers
        headers.clear()
        for name, value in items:
            key = name.decode("latin-1")
            if key not in explicit:
                headers.add(key, value.decode("latin-1"))
        headers.extend(explicit)
        headers[hdrs.CONTENT_LENGTH] = str(len(self._relayed))

    # -- sending ----------------------------------------------------------------------------------------
    async def prepare(self, request: web.BaseRequest) -> Any:
        if self._eof_sent or self._payload_writer is not None:
            return await super().prepare(request)
        if (
            not _FAST_PATH
            or getattr(request, "_payload_writer", None) is None
            or self._items is None
            or self._headers
            or self._cookies
            or self._compression
            or self._chunked
            or request.method == hdrs.METH_HEAD
            or _has_prepare_signals(request)
        ):
            self._materialise()
            return await super().prepare(request)
        keep_alive = self._keep_alive
        if keep_alive is None:
            keep_alive = self._keep_alive = request.keep_alive
        version = request.version
        body = self._relayed
        parts = [f"HTTP/{version[0]}.{version[1]} {self._status} {self._reason}\r\n".encode("latin-1")]
        date = server = content_type = False
        for name, value in self._items:
            if len(name) in (4, 6, 12):
                lower = name.lower()
                date = date or lower == b"date"
                server = server or lower == b"server"
                content_type = content_type or lower == b"content-type"
            parts.append(b"%s: %s\r\n" % (name, value))
        if not date:
            parts.append(f"Date: {rfc822_formatted_time()}\r\n".encode("latin-1"))
        if not server:
            parts.append(_SERVER)
        if body and not content_type:
            parts.append(_DEFAULT_TYPE)
        parts.append(b"Content-Length: %d\r\n" % len(body))
        if keep_alive and version == HttpVersion10:
            parts.append(_KEEP_ALIVE)
        elif not keep_alive and version == HttpVersion11:
            parts.append(_CLOSE)
        parts.append(b"\r\n")
        head = b"".join(parts)
        if head.count(b"\n") != len(parts):
            # a line break inside a name or value (the upstream's parser never lets one through):
            # refused, as aiohttp's own serialiser refuses it
            raise ValueError("a relayed header holds a line break")
        self._req = request
        writer = self._payload_writer = request._payload_writer
        await writer.write_eof(head + body)
        self._eof_sent = True
        self._body_length = writer.output_size
        self._req = None
        self._payload_writer = None
        return writer

    async def write_eof(self, data: bytes = b"") -> None:
        """After aiohttp's own path sent the head: the body (none where the status or method forbids
        one)."""
        assert not data, "the relayed body is the whole body"
        if self._eof_sent:
            return
        await super().write_eof(b"" if self._must_be_empty_body else self._relayed)


def _has_prepare_signals(request: web.BaseRequest) -> bool:
    match_info = request.match_info if isinstance(request, web.Request) else None
    return match_info is not None and any(app.on_response_prepare for app in match_info.apps)
