"""WebSocket proxying: text, binary, ping/pong and close frames relayed both ways, subprotocols negotiated
with the upstream, and every error path closing both sockets (configurable-http-proxy's leak)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from .errors import error_response
from .exchange import ErrorRenderer, Timeouts, UpstreamError, UpstreamRequest

if TYPE_CHECKING:
    from .metrics import Metrics

_HANDSHAKE_HEADERS = (
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Accept",
)
_UNSENDABLE_CODES = frozenset({1005, 1006, 1015})  # reserved: never put on the wire
_MAX_MESSAGE = 64 * 1024 * 1024  # aiohttp reassembles a message in memory: bound what one peer can pin

WebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


def is_websocket_upgrade(request: web.BaseRequest) -> bool:
    headers = request.headers
    return (
        request.method == "GET"
        and headers.get("Upgrade", "").lower() == "websocket"
        and "upgrade" in headers.get("Connection", "").lower()
    )


class WebSocketRelay:
    def __init__(self, metrics: Metrics, ssl_context: ssl.SSLContext | None = None) -> None:
        self._metrics = metrics
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._session: aiohttp.ClientSession | None = None
        self._open: set[web.WebSocketResponse] = set()

    async def shut_down(self) -> None:
        """Server shutdown: tell every proxied client "going away" (1001) so the drain need not wait."""
        await asyncio.gather(
            *(ws.close(code=1001, message=b"server shutting down") for ws in list(self._open)),
            return_exceptions=True,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def relay(
        self,
        request: web.Request,
        outgoing: UpstreamRequest,
        stage: str,
        limits: Timeouts,
        on_error: ErrorRenderer,
    ) -> web.StreamResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, force_close=True, ssl=self._ssl),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )
        scheme = "wss" if outgoing.origin.scheme == "https" else "ws"
        url = URL(f"{scheme}://{outgoing.origin.netloc}{outgoing.target}", encoded=True)
        headers = CIMultiDict(outgoing.headers)
        for name in _HANDSHAKE_HEADERS:
            headers.popall(name, None)
        headers["Host"] = outgoing.host
        offered = [
            p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
        ]
        try:
            async with asyncio.timeout(limits.connect + limits.read):
                upstream = await self._session.ws_connect(
                    url,
                    protocols=offered,
                    headers=headers,
                    autoping=False,
                    autoclose=False,
                    max_msg_size=_MAX_MESSAGE,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0),
                )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status >= 400:
                return error_response(request, exc.status, "The upstream refused the WebSocket connection.")
            error = UpstreamError(502, "ws_handshake", "The upstream did not accept the WebSocket upgrade.")
        except TimeoutError:
            error = UpstreamError(
                504, "connect_timeout", "The upstream did not accept the WebSocket in time."
            )
        except aiohttp.ClientError:
            error = UpstreamError(502, "connect", "The upstream server is not reachable.")
        else:
            return await self._relay_open(request, upstream, stage)
        self._metrics.upstream_errors.inc((stage, error.kind))
        return on_error(request, error)

    async def _relay_open(
        self, request: web.Request, upstream: aiohttp.ClientWebSocketResponse, stage: str
    ) -> web.StreamResponse:
        """The upstream accepted: accept the client with the same subprotocol and relay until closed."""
        client = web.WebSocketResponse(
            protocols=(upstream.protocol,) if upstream.protocol else (),
            autoping=False,
            autoclose=False,
            max_msg_size=_MAX_MESSAGE,
            compress=False,
        )
        gauge, labels = self._metrics.open_websockets, (stage,)
        try:
            await client.prepare(request)
            gauge.inc(labels)
            self._open.add(client)
            try:
                await _relay_both_ways(client, upstream)
            finally:
                self._open.discard(client)
                gauge.dec(labels)
        finally:
            await asyncio.shield(_close_both(client, upstream))
        return client


async def _relay_both_ways(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    loop = asyncio.get_running_loop()
    pumps = {loop.create_task(_pump(client, upstream)), loop.create_task(_pump(upstream, client))}
    try:
        _, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        # one side closed: its pump already relayed the close; give the other a moment to see it
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 10.0)
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


async def _pump(source: WebSocket, sink: WebSocket) -> None:
    """Copy frames from ``source`` to ``sink`` until ``source`` closes, then relay its close."""
    while True:
        msg = await source.receive()
        if sink.closed:
            return
        try:
            if msg.type is WSMsgType.TEXT:
                await sink.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await sink.send_bytes(msg.data)
            elif msg.type is WSMsgType.PING:
                await sink.ping(msg.data)
            elif msg.type is WSMsgType.PONG:
                await sink.pong(msg.data)
            elif msg.type is WSMsgType.CLOSE:
                code = msg.data if isinstance(msg.data, int) and msg.data not in _UNSENDABLE_CODES else 1000
                await sink.close(code=code, message=(msg.extra or "").encode()[:123])
                await source.close(code=code)  # answer the close we received
                return
            else:  # CLOSING, CLOSED, ERROR: the source went away without a clean close
                await sink.close(code=1011 if msg.type is WSMsgType.ERROR else 1001)
                return
        except (ConnectionError, RuntimeError):
            return


async def _close_both(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    for ws in (upstream, client):
        if not ws.closed:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await ws.close(code=1001)
