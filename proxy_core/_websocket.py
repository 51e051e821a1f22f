"""WebSocket proxying as a frame-aware tunnel.

The upgrade request travels like any other request (same headers, timeouts and error answers); an
upstream that refuses it answers the client itself, status, headers and body. Once the upstream has
answered 101, the relay forwards the bytes of each frame from one socket to the other unchanged:
masking, fragmentation and extensions (permessage-deflate and its negotiation) stay end to end, as on a
direct connection. It reads frame headers only to keep the rules a direct connection keeps:

- close frames pass through as they are (an empty close stays empty) and the closing handshake runs end
  to end: the closer gets the far side's own reply, then each hop's socket is closed;
- a peer that drops its connection without a close frame makes the relay drop the other connection too,
  so the far side sees an abnormal end (1006), never a clean close;
- the proxy speaks only for its own reasons: 1001 when it shuts down, 1009 when a message is larger than
  ``max_message`` (to the sender and to the other side, each with a reason);
- memory stays flat: bytes go straight from one socket to the other and reading pauses while the
  receiving socket's buffer is full (back-pressure), so no message is ever held whole.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from aiohttp import web
from multidict import CIMultiDict

if TYPE_CHECKING:
    from ._upstream import UpstreamConnection
    from .metrics import Metrics

Side = Literal["client", "upstream", "proxy"]

_CLOSE = 0x8
_SHUTDOWN_REASON = "server shutting down"


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
    """``max_message``: largest message in bytes as it crosses the proxy (compressed size when the ends
    negotiated permessage-deflate), 0 for no limit; ``compression``: let the ends negotiate
    permessage-deflate; ``buffer_limit``: bytes all WebSockets of the process may hold for slow
    receivers before new upgrades are refused (503), 0 for no limit; ``close_timeout``: seconds a
    closing handshake may take before the sockets are dropped."""

    max_message: int = 4 * 1024 * 1024
    compression: bool = True
    buffer_limit: int = 64 * 1024 * 1024
    close_timeout: float = 10.0


@dataclass(slots=True)
class WebSocketEnding:
    """How a proxied WebSocket ended: ``ended`` is ``clean`` (a closing handshake), ``abnormal`` (a
    connection dropped without one), ``too_big``, ``shutdown`` or ``close_timeout``; ``by`` is who
    started it; ``code`` the close code (1005 for a close frame without one; None when abnormal)."""

    ended: str
    by: Side
    code: int | None = None
    bytes_to_client: int = 0
    bytes_to_upstream: int = 0

    def log_fields(self) -> dict[str, object]:
        return {
            "ended": self.ended,
            "by": self.by,
            "code": self.code,
            "bytes_to_client": self.bytes_to_client,
            "bytes_to_upstream": self.bytes_to_upstream,
        }


def is_websocket_upgrade(request: web.BaseRequest) -> bool:
    headers = request.headers
    return (
        request.method == "GET"
        and headers.get("Upgrade", "").lower() == "websocket"
        and "upgrade" in headers.get("Connection", "").lower()
    )


def close_frame(code: int, reason: str, *, masked: bool) -> bytes:
    """A close frame; ``masked`` for frames a client sends (the proxy is the client of the upstream)."""
    payload = struct.pack("!H", code) + reason.encode()[:123]
    if not masked:
        return bytes((0x80 | _CLOSE, len(payload))) + payload
    key = os.urandom(4)
    return bytes((0x80 | _CLOSE, 0x80 | len(payload))) + key + _unmask(key, payload)


def close_status(payload: bytes) -> tuple[int, str]:
    """Code and reason of a close frame's payload (1005: the frame carried no code)."""
    if len(payload) < 2:
        return 1005, ""
    return int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8", "replace")


def _unmask(key: bytes, data: bytes) -> bytes:
    return bytes(b ^ key[i & 3] for i, b in enumerate(data))


class WebSocketRelay:
    """The open tunnels of one forwarder, their settings and the process-wide buffer account."""

    def __init__(self, metrics: Metrics, settings: WebSocketSettings) -> None:
        self.metrics = metrics
        self.settings = settings
        self.buffered = 0  # bytes waiting in the write buffers of paused sockets
        self._open: set[_Tunnel] = set()

    def prepare_upgrade(self, headers: CIMultiDict[str]) -> None:
        """The upgrade request as it goes upstream: the handshake headers of the client pass through
        (key, version, subprotocols; the extension offer when compression is on)."""
        headers["Connection"] = "Upgrade"
        headers["Upgrade"] = "websocket"
        if not self.settings.compression:
            headers.popall("Sec-WebSocket-Extensions", None)

    def over_budget(self) -> bool:
        limit = self.settings.buffer_limit
        return bool(limit) and self.buffered >= limit

    def account(self, delta: int) -> None:
        self.buffered += delta
        self.metrics.websocket_buffered.set((), self.buffered)

    async def shut_down(self) -> None:
        """Server shutdown: close every tunnel with 1001 (going away) to both sides."""
        for tunnel in list(self._open):
            tunnel.shut_down()

    async def close(self) -> None:
        for tunnel in list(self._open):
            tunnel.abort()
        await asyncio.sleep(0)  # let the transports report connection_lost

    async def relay(
        self,
        request: web.Request,
        conn: UpstreamConnection,
        headers: CIMultiDict[str],
        stage: str,
        on_end: Callable[[WebSocketEnding], None],
    ) -> web.StreamResponse:
        """The upstream answered 101 on ``conn``: answer the client the same (``headers``: the upstream's,
        as the forwarder passes them on) and tunnel until closed."""
        loop = asyncio.get_running_loop()
        upstream_transport, tail = conn.detach()
        upstream_transport.pause_reading()  # nothing reaches the client before its own 101
        client_transport = request.transport
        if client_transport is None or client_transport.is_closing():
            upstream_transport.abort()
            on_end(WebSocketEnding("abnormal", "client"))
            raise asyncio.CancelledError  # the client left while the upstream was answering
        tunnel = _Tunnel(self, loop)
        tunnel.upstream.attach(upstream_transport)
        upstream_transport.set_protocol(tunnel.upstream)
        headers["Upgrade"] = "websocket"
        headers["Connection"] = "Upgrade"
        response = web.StreamResponse(status=101, reason="Switching Protocols", headers=headers)
        response.force_close()
        # take the client's socket from aiohttp before the 101 leaves, so no frame can reach aiohttp;
        # aiohttp still hears when it closes (its connection bookkeeping)
        tunnel.client.attach(client_transport, previous=client_transport.get_protocol())
        client_transport.set_protocol(tunnel.client)
        gauge, labels = self.metrics.open_websockets, (stage,)
        gauge.inc(labels)
        self._open.add(tunnel)
        try:
            try:
                await response.prepare(request)
            except ConnectionError:
                tunnel.end(WebSocketEnding("abnormal", "client"))
                tunnel.abort()  # the client left before its 101 went out
            else:
                if tail:
                    tunnel.upstream.data_received(tail)
                upstream_transport.resume_reading()
                client_transport.resume_reading()
            await _until_finished(tunnel)
        except BaseException:
            tunnel.abort()
            raise
        finally:
            self._open.discard(tunnel)
            gauge.dec(labels)
            ending = tunnel.ending or WebSocketEnding("abnormal", "proxy")
            ending.bytes_to_client = tunnel.upstream.forwarded
            ending.bytes_to_upstream = tunnel.client.forwarded
            self.metrics.websocket_sessions.inc((stage, ending.ended))
            on_end(ending)
        return response


async def _until_finished(tunnel: _Tunnel) -> None:
    """Wait for both sockets to close. aiohttp cancels a handler whose client connection is lost; here
    that is a normal end, and the upstream's side of the close still runs (within close_timeout), after
    which the cancellation goes on."""
    cancelled = False
    while not tunnel.finished.done():
        try:
            await asyncio.shield(tunnel.finished)
        except asyncio.CancelledError:
            if not tunnel.client.lost:
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


class _Tunnel:
    """One proxied WebSocket: the client's socket, the upstream's, and the closing handshake's state."""

    def __init__(self, relay: WebSocketRelay, loop: asyncio.AbstractEventLoop) -> None:
        self.relay = relay
        self.loop = loop
        self.settings = relay.settings
        self.client = _Hop(self, "client", masks_outgoing=False)
        self.upstream = _Hop(self, "upstream", masks_outgoing=True)
        self.client.peer, self.upstream.peer = self.upstream, self.client
        self.ending: WebSocketEnding | None = None
        self.finished: asyncio.Future[None] = loop.create_future()
        self._timer: asyncio.TimerHandle | None = None

    def end(self, ending: WebSocketEnding) -> None:
        """Record how the session ended; a dropped connection overrides a handshake still in progress."""
        if self.ending is None or (ending.ended == "abnormal" and self.ending.ended == "clean"):
            self.ending = ending
        if self._timer is None:  # whatever started the end, it may take at most close_timeout
            self._timer = self.loop.call_later(self.settings.close_timeout, self._close_timed_out)

    def on_close_frame(self, hop: _Hop, payload: bytes) -> None:
        hop.sent_close = payload
        self.end(WebSocketEnding("clean", hop.name, close_status(payload)[0]))
        self.close_finished_hops()

    def close_finished_hops(self) -> None:
        """A hop whose closing handshake is complete (a close each way) is done: close its socket.
        The proxy is the server of the client's hop, so it closes that TCP connection first, as a
        server should; the upstream, the server of the other hop, closes its own."""
        for hop in (self.client, self.upstream):
            if hop.sent_close is not None and hop.got_close and not hop.closing:
                hop.close()

    def message_too_big(self, sender: _Hop) -> None:
        limit = self.settings.max_message
        self.end(WebSocketEnding("too_big", sender.name, 1009))
        sender.forwarding = False
        sender.peer.send_close(1009, f"the {sender.name} sent a message larger than {limit} bytes")
        sender.send_close(1009, f"message too big: the limit is {limit} bytes")

    def shut_down(self) -> None:
        """Going away: 1001 to both sides, then hang up without waiting for replies (a drain must not
        wait for a peer that does not answer)."""
        self.end(WebSocketEnding("shutdown", "proxy", 1001))
        for hop in (self.client, self.upstream):
            hop.send_close(1001, _SHUTDOWN_REASON, hang_up=True)

    def on_lost(self, hop: _Hop) -> None:
        peer = hop.peer
        if hop.sent_close is None:
            forwarded_close = hop.got_close and peer.sent_close is not None
            if not hop.got_close or forwarded_close:
                # gone without a close frame (or without answering the peer's close): the peer sees
                # its connection drop, as it would on a direct connection
                self.end(WebSocketEnding("abnormal", hop.name))
                peer.abort()
        if self.client.lost and self.upstream.lost:
            if self._timer is not None:
                self._timer.cancel()
            if not self.finished.done():
                self.finished.set_result(None)

    def _close_timed_out(self) -> None:
        if self.client.lost and self.upstream.lost:
            return
        if self.ending is not None and self.ending.ended == "clean":
            self.ending.ended = "close_timeout"
        self.abort()

    def abort(self) -> None:
        self.client.abort()
        self.upstream.abort()


class _Hop(asyncio.Protocol):
    """One of the tunnel's two sockets. It reads frames from its socket and forwards them to the peer's;
    frame headers are parsed (and held back until complete) so close frames and message sizes are
    seen, and so the proxy's own close frames go in only between two frames."""

    def __init__(self, tunnel: _Tunnel, name: Side, *, masks_outgoing: bool) -> None:
        self.tunnel = tunnel
        self.name = name
        self.masks_outgoing = masks_outgoing  # frames written to this socket are masked (upstream hop)
        self.peer: _Hop = self
        self.transport: asyncio.Transport | None = None
        self._previous: asyncio.BaseProtocol | None = None
        self.forwarding = True  # frames read here go to the peer
        self.sent_close: bytes | None = None  # payload of the close frame this side sent
        self.got_close = False  # a close frame was written to this side
        self.closing = False
        self.lost = False
        self.forwarded = 0  # bytes forwarded from this side to the peer
        self._paused_bytes = 0
        self._out: list[bytes] = []
        self._head = bytearray()
        self._remaining = 0
        self._opcode = 0
        self._fin = True
        self._mask_key = b""
        self._control = bytearray()
        self._message = 0
        # a close frame for the peer (and whether to hang up after it), written at this side's next frame end
        self._pending_close: tuple[bytes, bool] | None = None

    def attach(self, transport: asyncio.Transport, previous: asyncio.BaseProtocol | None = None) -> None:
        """Serve ``transport``; ``previous``, the protocol it is taken from, is told when it closes."""
        self.transport = transport
        self._previous = previous

    # -- asyncio.Protocol ---------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        pos, end = 0, len(data)
        head = self._head
        while True:
            if self._remaining:
                if pos == end:
                    break
                take = min(self._remaining, end - pos)
                chunk = data if take == end else data[pos : pos + take]
                pos += take
                self._remaining -= take
                if self._opcode >= 8 and len(self._control) < 125:
                    self._control += chunk[: 125 - len(self._control)]
                if self.forwarding:
                    self._out.append(chunk)
                if not self._remaining:
                    self._frame_end()
                continue
            if len(head) >= 2 and len(head) >= _header_length(head[1]):
                self._frame_start(bytes(head))
                head.clear()
                continue
            if pos == end:
                break
            need = 2 if len(head) < 2 else _header_length(head[1])
            take = min(need - len(head), end - pos)
            head += data[pos : pos + take]
            pos += take
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.closing = True
        self._release_buffer()
        self.tunnel.on_lost(self)
        if self._previous is not None:
            self._previous.connection_lost(exc)

    def pause_writing(self) -> None:
        """This socket's buffer is full: stop reading what would be written to it."""
        if self.transport is None:
            return
        self._paused_bytes = self.transport.get_write_buffer_size()
        self.tunnel.relay.account(self._paused_bytes)
        if not self.peer.closing and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        self._release_buffer()
        if not self.peer.closing and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    # -- frames ---------------------------------------------------------------------------------------
    def _frame_start(self, header: bytes) -> None:
        opcode = header[0] & 0x0F
        length = header[1] & 0x7F
        if length == 126:
            length = int.from_bytes(header[2:4], "big")
        elif length == 127:
            length = int.from_bytes(header[2:10], "big")
        self._opcode, self._fin, self._remaining = opcode, bool(header[0] & 0x80), length
        self._mask_key = header[-4:] if header[1] & 0x80 else b""
        self._control.clear()
        if opcode < 8:  # a data frame: a new message, or the next piece of one
            self._message = length if opcode else self._message + length
            limit = self.tunnel.settings.max_message
            if limit and self._message > limit and self.forwarding:
                self._flush()
                self.tunnel.message_too_big(self)
        if self.forwarding:
            self._out.append(header)
        if not length:
            self._frame_end()

    def _frame_end(self) -> None:
        if self._opcode == _CLOSE and self.sent_close is None:
            payload = bytes(self._control)
            if self._mask_key:
                payload = _unmask(self._mask_key, payload)
            if self.forwarding:
                self._flush()
                self.peer.got_close = True
                self.forwarding = False  # nothing may follow a close frame
            self.tunnel.on_close_frame(self, payload)
        if self._pending_close is not None:
            (frame, hang_up), self._pending_close = self._pending_close, None
            self._flush()
            self.forwarding = False
            self.peer._write_close(frame, hang_up)

    def send_close(self, code: int, reason: str, *, hang_up: bool = False) -> None:
        """Close this side for the proxy's own reason, at the next frame boundary of what flows to it;
        ``hang_up``: close the socket right after the frame instead of waiting for the reply."""
        if self.got_close or self.closing:
            return
        frame = close_frame(code, reason, masked=self.masks_outgoing)
        feeder = self.peer
        if feeder._remaining and feeder.forwarding:
            feeder._pending_close = (frame, hang_up)  # written once the frame in flight is complete
            return
        feeder._flush()
        feeder.forwarding = False
        self._write_close(frame, hang_up)

    def _write_close(self, frame: bytes, hang_up: bool = False) -> None:
        self.got_close = True
        if self.transport is not None and not self.closing:
            self.transport.write(frame)
        if hang_up:
            self.close()
        self.tunnel.close_finished_hops()

    def _flush(self) -> None:
        out = self._out
        if not out:
            return
        peer = self.peer.transport
        if peer is not None and not self.peer.closing:
            self.forwarded += sum(len(chunk) for chunk in out)
            peer.writelines(out)
        out.clear()

    # -- ending ---------------------------------------------------------------------------------------
    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()  # after what is buffered has been written

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def _release_buffer(self) -> None:
        if self._paused_bytes:
            self.tunnel.relay.account(-self._paused_bytes)
            self._paused_bytes = 0


def _header_length(second_byte: int) -> int:
    """Bytes in a frame header, from its second byte: 2, plus the extended length, plus the mask key."""
    length = second_byte & 0x7F
    extended = 2 if length == 126 else 8 if length == 127 else 0
    return 2 + extended + (4 if second_byte & 0x80 else 0)
