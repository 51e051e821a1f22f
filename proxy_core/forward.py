"""The forwarder: the one piece of the proxy that touches bodies.

It streams request and response bodies both ways without buffering (back-pressure on both sockets),
proxies WebSocket upgrades, strips hop-by-hop headers, sets the forwarded chain, keeps upstream
connections alive in a pool and turns upstream failures into clear 502/504 answers.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from multidict import CIMultiDict

from ._upstream import (
    UpstreamConnection,
    UpstreamConnectionError,
    UpstreamPool,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from ._websocket import WebSocketEnding, WebSocketRelay, WebSocketSettings, is_websocket_upgrade
from .credentials import OwnedCredentials
from .errors import error_response
from .exchange import (
    BodyLimit,
    RequestBodyTooLarge,
    default_error_renderer,
)

# Defined in .exchange (shared with the WebSocket relay); still importable from here, where they were.
from .exchange import ErrorRenderer as ErrorRenderer
from .exchange import ResponseTap as ResponseTap
from .exchange import Timeouts as Timeouts
from .exchange import Upstream as Upstream
from .exchange import UpstreamError as UpstreamError
from .exchange import UpstreamRequest as UpstreamRequest
from .headers import (
    ClientAddress,
    TrustedProxies,
    add_forwarded,
    origin_form,
    request_headers,
    response_header_items,
    response_header_raw,
)
from .metrics import Metrics
from .relayed import RelayedResponse

CLIENT_ADDRESS = web.RequestKey("proxy_core.client_address", ClientAddress)
"""The resolved client (after trusted proxies), cached on the request by :meth:`Forwarder.client`."""


@dataclass(slots=True)
class Outcome:
    """What happened to a request beyond its status, shared by every clone of the request (a stage that
    rewrites headers clones it; the clone's state is a shallow copy, so this object stays shared)."""

    client_gone: bool = False  # the client left while its answer streamed: reported as 499
    websocket: WebSocketEnding | None = None  # how a proxied WebSocket ended (logged with its 101)


OUTCOME = web.RequestKey("proxy_core.outcome", Outcome)

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_CHUNK = 64 * 1024


@dataclass
class Forwarder:
    """Shared by every stage of one app; create it in the app and ``await close()`` on shutdown."""

    trusted_proxies: TrustedProxies = field(default_factory=lambda: TrustedProxies(()))
    max_body_size: int = 0  # 0: unlimited
    timeouts: Timeouts = field(default_factory=Timeouts)
    metrics: Metrics = field(default_factory=Metrics)
    ssl_context: ssl.SSLContext | None = None  # for https upstreams; None: the system's CA bundle
    body_limit: BodyLimit = field(init=False)
    owned: OwnedCredentials = field(default_factory=OwnedCredentials)
    """The stages' own credentials, removed from every request built for an upstream."""
    websocket: WebSocketSettings = field(default_factory=WebSocketSettings)
    _pool: UpstreamPool | None = field(default=None, init=False, repr=False)
    _websockets: WebSocketRelay | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.body_limit = BodyLimit(self.max_body_size)

    @property
    def pool(self) -> UpstreamPool:
        if self._pool is None:
            self._pool = UpstreamPool(asyncio.get_running_loop(), ssl_context=self.ssl_context)
        return self._pool

    async def shut_down(self) -> None:
        """Called when the server starts draining: closes proxied WebSockets with 1001 (going away)."""
        if self._websockets is not None:
            await self._websockets.shut_down()

    @property
    def websockets(self) -> WebSocketRelay:
        if self._websockets is None:
            self._websockets = WebSocketRelay(self.metrics, self.websocket)
        return self._websockets

    async def close(self) -> None:
        if self._websockets is not None:
            await self._websockets.close()
            self._websockets = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def client(self, request: web.Request) -> ClientAddress:
        """Who sent ``request``, believing forwarded headers only from trusted proxies."""
        try:
            return request[CLIENT_ADDRESS]  # not ``request.get``: the generic ``Mapping.get`` costs twice
        except KeyError:
            address = request[CLIENT_ADDRESS] = self.trusted_proxies.resolve(request)
            return address

    def build(
        self,
        request: web.Request,
        upstream: Upstream,
        *,
        path: str | None = None,
        preserve_host: bool = False,
        forwarded: bool = True,
        drop: frozenset[str] = frozenset(),
    ) -> UpstreamRequest:
        """The default upstream request for ``request``: same method, path (or ``path``), filtered headers
        plus the forwarded chain (unless ``forwarded`` is False: an upstream outside the network learns
        no address inside it), minus the stages' own credentials and the client's headers named in
        ``drop`` (lower case: what the stage replaces with its own). ``path`` is raw (percent-encoded)
        and may carry a query string; an absolute-form target is sent in origin form."""
        headers = request_headers(request, drop)
        if self.owned:
            self.owned.strip(headers)
        if forwarded:
            add_forwarded(headers, self.client(request))
        host = request.headers.get("Host", "") if preserve_host else upstream.host
        target = upstream.prefix + (origin_form(request) if path is None else path)
        return UpstreamRequest(upstream.origin, target or "/", request.method, headers, host)

    async def forward(
        self,
        request: web.Request,
        upstream: Upstream,
        *,
        stage: str = "",
        timeouts: Timeouts | None = None,
    ) -> web.StreamResponse:
        """Forward ``request`` unchanged (apart from proxy headers) to ``upstream``."""
        return await self.send(request, self.build(request, upstream), stage=stage, timeouts=timeouts)

    async def send(
        self,
        request: web.Request,
        outgoing: UpstreamRequest,
        *,
        stage: str = "",
        timeouts: Timeouts | None = None,
        tap: ResponseTap | None = None,
        on_error: ErrorRenderer = default_error_renderer,
    ) -> web.StreamResponse:
        """Send ``outgoing`` and stream the answer back to ``request``'s client."""
        limits = timeouts or self.timeouts
        upgrade = is_websocket_upgrade(request)
        if upgrade:
            if self.websockets.over_budget():
                self.metrics.websocket_refused.inc((stage,))
                return error_response(
                    request,
                    503,
                    "The proxy holds too much WebSocket data right now; try again shortly.",
                    headers={"Retry-After": "1"},
                )
            self.websockets.prepare_upgrade(outgoing.headers)
        elif outgoing.body is None and self.body_limit.declared_too_large(request):
            return self.body_limit.refuse(request)
        try:
            conn, sender = await self._exchange(request, outgoing, limits, upgrade)
        except UpstreamError as exc:
            self.metrics.upstream_errors.inc((stage, exc.kind))
            return on_error(request, exc)
        except RequestBodyTooLarge:
            return self.body_limit.refuse(request)
        if conn.upgraded:
            handshake = CIMultiDict(self.owned.drop_set_cookies(response_header_items(conn.headers)))
            return await self.websockets.relay(request, conn, handshake, stage, _outcome_recorder(request))
        try:
            if (
                conn.complete
                and not conn.head_only
                and conn.status not in (204, 304)
                and _content_length(conn.headers) is not None
            ):
                # the whole (small) answer is already here: one write, headers and body together
                # (checked here rather than in _respond: no coroutine for the common case)
                if tap is None:
                    items = self.owned.drop_raw_set_cookies(response_header_raw(conn.headers))
                    return RelayedResponse(conn.status, items, conn.take_body())
                return self._tapped_whole(conn, tap)
            return await self._respond(request, conn, stage, limits, tap)
        finally:
            if sender is not None and not sender.done():
                sender.cancel()
                conn.keep_alive = False
            if conn.reusable:
                self.pool.release(conn)
            else:
                conn.abort()

    async def _exchange(
        self, request: web.Request, outgoing: UpstreamRequest, limits: Timeouts, upgrade: bool = False
    ) -> tuple[UpstreamConnection, asyncio.Task[None] | None]:
        streamed = outgoing.body is None and request.body_exists
        head = _encode_head(outgoing, request, streamed)
        pool = self.pool
        for attempt in (1, 2):
            conn = pool.take(outgoing.origin)
            if conn is None:
                try:
                    async with asyncio.timeout(limits.connect):
                        conn = await pool.connect(outgoing.origin)
                except TimeoutError:
                    raise UpstreamError(
                        504, "connect_timeout", "The upstream did not accept a connection in time."
                    ) from None
                except UpstreamConnectionError:
                    raise UpstreamError(502, "connect", "The upstream server is not reachable.") from None
            conn.begin(head_only=outgoing.method == "HEAD", upgrade=upgrade)
            sender: asyncio.Task[None] | None = None
            conn.start_timer(limits.read)
            try:
                conn.write(head)
                if outgoing.body:
                    conn.write(outgoing.body)
                elif streamed:
                    chunked = request.content_length is None
                    sender = asyncio.get_running_loop().create_task(self._send_body(request, conn, chunked))
                while not conn.head_received:
                    await conn.next_event()
                return conn, sender
            except UpstreamConnectionError:
                conn.abort()
                if sender is not None:
                    sender.cancel()
                replayable = sender is None and outgoing.method in _IDEMPOTENT
                if attempt == 1 and conn.reused and not conn.any_data and replayable:
                    continue  # a keep-alive connection the upstream had just closed: try a fresh one
                raise UpstreamError(
                    502, "reset", "The upstream server closed the connection without answering."
                ) from None
            except UpstreamProtocolError as exc:
                conn.abort()
                raise UpstreamError(
                    502, "protocol", f"The upstream server sent an invalid response: {exc}"
                ) from None
            except UpstreamTimeout:
                if sender is not None:
                    sender.cancel()
                raise UpstreamError(
                    504, "read_timeout", "The upstream server did not answer in time."
                ) from None
            except BaseException:
                conn.abort()
                if sender is not None:
                    sender.cancel()
                raise
            finally:
                conn.stop_timer()
        raise AssertionError("unreachable")

    async def _send_body(self, request: web.Request, conn: UpstreamConnection, chunked: bool) -> None:
        """Copy the client's body upstream, waiting on the upstream socket's buffer (back-pressure)."""
        limit, sent = self.body_limit, 0
        try:
            while chunk := await request.content.readany():
                sent += len(chunk)
                if limit.exceeded(sent):
                    raise RequestBodyTooLarge()
                if chunked:
                    conn.write_chunk(chunk)
                else:
                    conn.write(chunk)
                await conn.drain()
            if chunked:
                conn.write(b"0\r\n\r\n")
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the client went away or sent too much: stop the exchange
            conn.fail(exc)

    def _tapped_whole(self, conn: UpstreamConnection, tap: ResponseTap) -> web.StreamResponse:
        """A complete answer through ``tap`` as one chunk: the tap sees what it sees of a stream (head,
        the body, the end), and the client gets the result with its length, in one write."""
        headers = CIMultiDict(self.owned.drop_set_cookies(response_header_items(conn.headers)))
        tap.on_head(conn.status, headers)
        body = tap.on_chunk(conn.take_body())
        tail = tap.on_end()
        items = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
        return RelayedResponse(conn.status, items, body + tail if tail else body)

    async def _respond(
        self,
        request: web.Request,
        conn: UpstreamConnection,
        stage: str,
        limits: Timeouts,
        tap: ResponseTap | None,
    ) -> web.StreamResponse:
        headers = CIMultiDict(self.owned.drop_set_cookies(response_header_items(conn.headers)))
        if tap is not None:
            tap.on_head(conn.status, headers)
        length = _content_length(conn.headers) if tap is None else None
        response = web.StreamResponse(status=conn.status, headers=headers)
        if length is not None:
            response.content_length = length
        await response.prepare(request)
        gauge, labels = self.metrics.open_streams, (stage,)
        gauge.inc(labels)
        try:
            idle = limits.idle
            while chunk := await conn.read_body(idle):
                if tap is not None:
                    chunk = tap.on_chunk(chunk)
                if chunk:
                    await response.write(chunk)
            if tap is not None and (tail := tap.on_end()):
                await response.write(tail)
            await response.write_eof()
        except ConnectionResetError:
            # the client went away: the caller's ``finally`` drops the upstream connection; aiohttp
            # finishes the already-prepared response quietly
            if (outcome := request.get(OUTCOME)) is not None:
                outcome.client_gone = True
        except (UpstreamConnectionError, UpstreamProtocolError, UpstreamTimeout) as exc:
            # the answer has started: unless the tap can say so in the body's own terms, the only
            # honest signal left is to cut the client's connection
            kind = "idle_timeout" if isinstance(exc, UpstreamTimeout) else "midstream"
            self.metrics.upstream_errors.inc((stage, kind))
            farewell = tap.on_failure(kind) if tap is not None else b""
            if farewell:
                await _end_with(request, response, farewell)
            else:
                _cut(request)
        finally:
            gauge.dec(labels)
        return response


def _outcome_recorder(request: web.Request) -> Callable[[WebSocketEnding], None]:
    def record(ending: WebSocketEnding) -> None:
        if (outcome := request.get(OUTCOME)) is not None:
            outcome.websocket = ending

    return record


def _content_length(raw: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in raw:
        if len(name) == 14 and name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _end_with(request: web.Request, response: web.StreamResponse, farewell: bytes) -> None:
    try:
        await response.write(farewell)
        await response.write_eof()
    except ConnectionResetError:
        if (outcome := request.get(OUTCOME)) is not None:
            outcome.client_gone = True


def _cut(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


def _encode_head(outgoing: UpstreamRequest, request: web.Request, streamed: bool) -> bytes:
    parts = [f"{outgoing.method} {outgoing.target} HTTP/1.1\r\nHost: {outgoing.host}\r\n"]
    for name, value in outgoing.headers.items():
        if "\n" in value or "\r" in value:
            raise ValueError(f"header {name!r} contains a line break")
        parts.append(f"{name}: {value}\r\n")
    if outgoing.body is not None:
        if outgoing.body or outgoing.method not in ("GET", "HEAD"):
            parts.append(f"Content-Length: {len(outgoing.body)}\r\n")
    elif streamed:
        length = request.content_length
        parts.append("Transfer-Encoding: chunked\r\n" if length is None else f"Content-Length: {length}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("utf-8", "surrogateescape")
