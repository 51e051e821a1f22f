"""The aiohttp upstream the streaming benchmarks talk to: ``python -m bench.upstream PORT``.

Routes: ``/small``; ``/download?size=N`` (generated, never buffered); ``POST /upload`` (consumed and
counted); ``/sse?interval=S&count=N`` (each event carries ``time.monotonic_ns()`` at write time, a
system-wide clock on Linux); ``/sse-idle``; ``/ws`` (echo); ``/ws-abort`` (drops the socket after the
first message); ``/reset`` (half a body, then a TCP reset).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import sys
import time

from aiohttp import WSMsgType, web

from .procs import HOST, SMALL_BODY

CHUNK = b"x" * (256 * 1024)


async def small(request: web.Request) -> web.Response:
    return web.Response(text=SMALL_BODY)


async def download(request: web.Request) -> web.StreamResponse:
    size = int(request.query.get("size", "1048576"))
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = size
    await response.prepare(request)
    view = memoryview(CHUNK)
    while size > 0:
        piece = view[: min(size, len(CHUNK))]
        await response.write(piece)  # waits for the socket to drain: no buffering here
        size -= len(piece)
    await response.write_eof()
    return response


async def upload(request: web.Request) -> web.Response:
    received = 0
    while chunk := await request.content.readany():
        received += len(chunk)
    return web.json_response({"received": received})


async def sse(request: web.Request) -> web.StreamResponse:
    interval = float(request.query.get("interval", "0.02"))
    count = int(request.query.get("count", "0"))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    sent = 0
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while count == 0 or sent < count:
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        await response.write(b"data: %d\n\n" % time.monotonic_ns())
        sent += 1
    await response.write_eof()
    return response


async def sse_idle(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b": connected\n\n")
    await asyncio.Event().wait()  # until the client goes away (the handler is cancelled)
    return response


async def ws_echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=None)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


async def ws_abort(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=None)
    await ws.prepare(request)
    await ws.receive()
    _reset(request)
    return ws


async def reset(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.content_length = 1024 * 1024
    await response.prepare(request)
    await response.write(CHUNK[: 64 * 1024])
    _reset(request)
    return response


def _reset(request: web.Request) -> None:
    """Close with a TCP RST (SO_LINGER 0), not a polite FIN."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/small", small)
    app.router.add_get("/download", download)
    app.router.add_post("/upload", upload)
    app.router.add_get("/sse", sse)
    app.router.add_get("/sse-idle", sse_idle)
    app.router.add_get("/ws", ws_echo)
    app.router.add_get("/ws-abort", ws_abort)
    app.router.add_get("/reset", reset)
    return app


def main() -> None:
    import uvloop

    logging.disable(logging.CRITICAL)
    web.run_app(
        make_app(),
        host=HOST,
        port=int(sys.argv[1]),
        access_log=None,
        print=None,
        backlog=4096,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
