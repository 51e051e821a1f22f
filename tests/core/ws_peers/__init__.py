"""WebSocket peers that are not aiohttp, for comparing the relay with a direct connection.

Every peer speaks the same small script, chosen by the URL path ``/case/<behaviour>/<id>`` on the server
side and by an argument on the client side, and reports what it saw as ``(code, reason)`` of the close
frame it received, with 1006 when the connection dropped without one:

- server behaviours: ``wait`` (echo until the client closes), ``close_4001`` (close at once with 4001
  "server bye"), ``close_empty`` (a close frame without a code), ``drop`` (cut the TCP connection at
  the first message);
- client behaviours: ``close_4002`` (close with 4002 "bye"), ``close_empty``, ``wait`` (send "go", wait
  for the server to end it), ``drop`` (send "go", cut the TCP connection).

Implementations: the ``websockets`` package (in-process), Node's ``ws`` (installed from the npm
registry into the test cache, once per lockfile), and a raw-socket peer that records the exact bytes of the
close frames it receives. ``proxy_to`` puts the proxy (the production runner) in front of a peer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import websockets
from aiohttp import web
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from yarl import URL

from proxy_core.stages.upstream import UpstreamStage
from proxy_core.testing import config_from_toml, make_app, run_proxy, stage
from tests.npm_cache import npm_installed

HERE = Path(__file__).parent
Seen = tuple[int, str]


def node_modules() -> Path:
    """``node_modules`` holding ``ws`` (the version this folder's lockfile pins), installed into the
    test cache by :func:`tests.npm_cache.npm_installed`."""
    return npm_installed("ws-peers", HERE) / "node_modules"


def _seen(connection: Any) -> Seen:
    received = connection.protocol.close_rcvd
    return (1006, "") if received is None else (int(received.code), received.reason)


@contextlib.asynccontextmanager
async def proxy_to(upstream_url: str, config: str = "") -> AsyncIterator[tuple[URL, web.Application]]:
    """The proxy in front of the WebSocket server at ``upstream_url``: its ws:// URL and its app."""
    http_url = upstream_url.replace("ws://", "http://", 1)
    app = make_app([stage(UpstreamStage, url=http_url)], config_from_toml(config))
    async with run_proxy(app) as url:
        yield URL(str(url).replace("http://", "ws://", 1)), app


# -- servers -------------------------------------------------------------------------------------------
class PythonServer:
    """A ``websockets`` server in this process."""

    def __init__(self, compression: bool = True) -> None:
        self.results: dict[str, Seen] = {}
        self.extensions: dict[str, str] = {}
        self.compression = compression
        self.url = ""

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        _, _, behaviour, key = ws.request.path.split("/")
        self.extensions[key] = ws.response.headers.get("Sec-WebSocket-Extensions", "") if ws.response else ""
        try:
            if behaviour == "close_4001":
                await ws.close(4001, "server bye")
            elif behaviour == "close_empty":
                await ws.close(None)  # type: ignore[arg-type]  # no code: an empty close frame
            with contextlib.suppress(websockets.ConnectionClosed):
                async for message in ws:
                    if behaviour == "drop":
                        ws.transport.abort()
                        break
                    await ws.send(message)
            await ws.wait_closed()
        finally:
            self.results[key] = _seen(ws)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[PythonServer]:
        async with serve(
            self.handler, "127.0.0.1", 0, compression="deflate" if self.compression else None
        ) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            self.url = f"ws://127.0.0.1:{port}"
            yield self

    async def result(self, key: str) -> Seen:
        async with asyncio.timeout(10):
            while key not in self.results:
                await asyncio.sleep(0.01)
        return self.results.pop(key)


class NodeServer:
    """A Node ``ws`` server in a child process (``server.cjs``)."""

    def __init__(self) -> None:
        self.results: dict[str, Seen] = {}
        self.extensions: dict[str, str] = {}
        self.url = ""

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[NodeServer]:
        process = await asyncio.create_subprocess_exec(
            "node",
            str(HERE / "server.cjs"),
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "NODE_PATH": str(node_modules())},
        )
        assert process.stdout is not None
        port = orjson.loads(await process.stdout.readline())["port"]
        self.url = f"ws://127.0.0.1:{port}"
        reader = asyncio.get_running_loop().create_task(self._read(process.stdout))
        try:
            yield self
        finally:
            reader.cancel()
            process.kill()
            await process.wait()

    async def _read(self, stdout: asyncio.StreamReader) -> None:
        while line := await stdout.readline():
            entry = orjson.loads(line)
            self.extensions[entry["id"]] = entry["extensions"]
            self.results[entry["id"]] = (entry["code"], entry["reason"])

    async def result(self, key: str) -> Seen:
        async with asyncio.timeout(10):
            while key not in self.results:
                await asyncio.sleep(0.01)
        return self.results.pop(key)


# -- clients -------------------------------------------------------------------------------------------
async def python_client(url: str, behaviour: str) -> Seen:
    """A ``websockets`` client acting out ``behaviour``; what it saw of the end."""
    ws = await connect(url, compression="deflate", open_timeout=5, close_timeout=5)
    with contextlib.suppress(websockets.ConnectionClosed):
        if behaviour == "close_4002":
            await ws.close(4002, "bye")
        elif behaviour == "close_empty":
            await ws.close(None)  # type: ignore[arg-type]
        elif behaviour == "drop":
            await ws.send("go")
            await asyncio.sleep(0.1)
            ws.transport.abort()
        else:
            await ws.send("go")
            async for _ in ws:
                pass
    async with asyncio.timeout(10):
        await ws.wait_closed()
    return _seen(ws)


async def node_client(url: str, behaviour: str, size: int = 0) -> dict[str, Any]:
    """A Node ``ws`` client (``client.cjs``): its JSON report (code, reason, extensions, echoed)."""
    process = await asyncio.create_subprocess_exec(
        "node",
        str(HERE / "client.cjs"),
        url,
        behaviour,
        str(size),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "NODE_PATH": str(node_modules())},
    )
    async with asyncio.timeout(20):
        out, _ = await process.communicate()
    report: dict[str, Any] = orjson.loads(out.splitlines()[-1])
    return report


# -- raw sockets ---------------------------------------------------------------------------------------
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def frame(opcode: int, payload: bytes, *, mask: bytes | None = None, fin: bool = True) -> bytes:
    """One frame; ``mask`` (4 bytes) for frames a client sends."""
    first = (0x80 if fin else 0) | opcode
    length = len(payload)
    bit = 0x80 if mask is not None else 0
    if length < 126:
        head = bytes((first, bit | length))
    elif length < 65536:
        head = bytes((first, bit | 126)) + struct.pack("!H", length)
    else:
        head = bytes((first, bit | 127)) + struct.pack("!Q", length)
    if mask is None:
        return head + payload
    masked = int.from_bytes(payload, "big") ^ int.from_bytes((mask * (length // 4 + 1))[:length], "big")
    return head + mask + masked.to_bytes(length, "big")


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """The next whole frame, exactly as it came off the wire (header, mask key, payload)."""
    head = await reader.readexactly(2)
    length = head[1] & 0x7F
    extra = b""
    if length == 126:
        extra = await reader.readexactly(2)
        length = struct.unpack("!H", extra)[0]
    elif length == 127:
        extra = await reader.readexactly(8)
        length = struct.unpack("!Q", extra)[0]
    key = await reader.readexactly(4) if head[1] & 0x80 else b""
    return head + extra + key + await reader.readexactly(length)


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> None:
        self.reader, self.writer, self.head = reader, writer, head

    @classmethod
    async def connect(cls, host: str, port: int, path: str, extra: str = "") -> RawClient:
        reader, writer = await asyncio.open_connection(host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        return cls(reader, writer, head)

    @property
    def status(self) -> int:
        return int(self.head.split(b" ", 2)[1])

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def frames_until_eof(self) -> list[bytes]:
        frames: list[bytes] = []
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                frames.append(await read_frame(self.reader))
        return frames

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


class RawServer:
    """Accepts WebSocket handshakes on a raw socket; records every frame a client sends, exactly, and
    answers a close frame with ``reply`` (the bytes of a close frame; None: echo the received payload
    unmasked)."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.first_frames: list[bytes] = []  # sent right after the handshake
        self.ended = asyncio.Event()
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        key = next(
            line.split(":", 1)[1].strip()
            for line in head.split("\r\n")
            if line.lower().startswith("sec-websocket-key:")
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n".encode()
            + b"".join(self.first_frames)
        )
        try:
            while True:
                data = await read_frame(reader)
                self.received.append(data)
                if data[0] & 0x0F == 0x8:
                    payload = data[6:] if data[1] & 0x80 else data[2:]
                    if data[1] & 0x80:
                        key_bytes = data[2:6]
                        payload = bytes(b ^ key_bytes[i % 4] for i, b in enumerate(payload))
                    writer.write(frame(0x8, payload))
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.ended.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[RawServer]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
