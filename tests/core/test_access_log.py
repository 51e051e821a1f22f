"""The access log's lines: made in batches from what each request left, yet each line whole, valid and
true to its own request (fields that repeat within a batch are encoded once and shared)."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from proxy_core.logs import AccessLog

PATHS = ["/", '/a "quoted" \\ path', "/ünïcode/路径", "/tab\there", "/api/mastra/agents"]
AGENTS = ["", "curl/8", 'Mozilla/5.0 "x"']


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


async def test_every_line_is_json_with_its_own_requests_fields(tmp_path: Path) -> None:
    file = tmp_path / "access.log"
    write = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    log = AccessLog(write)
    expected = []
    for n in range(1300):  # more than one batch of lines flushed by count
        path, agent = PATHS[n % len(PATHS)], AGENTS[n % len(AGENTS)]
        request = make_mocked_request("POST" if n % 7 == 0 else "GET", path, headers={"User-Agent": agent})
        websocket = {"ended": "closed", "by": "client", "code": 1000} if n == 600 else None
        log.record(request, 200 + n % 3, n / 1e6, n, f"10.0.0.{n % 4}", websocket)
        expected.append((request.method, request.path, 200 + n % 3, n, f"10.0.0.{n % 4}", agent, websocket))
    log.close()
    os.close(write)
    lines = file.read_bytes().splitlines()
    assert len(lines) == len(expected)
    for line, (method, path, status, size, client, agent, websocket) in zip(lines, expected, strict=True):
        entry = orjson.loads(line)
        assert (entry["logger"], entry["level"]) == ("access", "info")
        assert (entry["method"], entry["path"], entry["status"]) == (method, path, status)
        assert (entry["bytes"], entry["client"], entry["user_agent"]) == (size, client, agent)
        assert entry["duration_ms"] == round(size / 1000, 3)
        assert entry.get("websocket") == websocket
        assert isinstance(entry["ts"], float)


async def test_a_full_batch_is_handed_over_without_waiting_for_the_timer() -> None:
    """The loop is held (no ``await``), so only a flush by count can reach the writer thread."""
    read, write = os.pipe()
    os.set_blocking(read, False)
    log = AccessLog(write)
    request = make_mocked_request("GET", "/x")
    for _ in range(511):
        log.record(request, 200, 0.001, 1, "127.0.0.1")
    time.sleep(0.3)  # the writer thread looks every 50 ms
    assert _read_nonblocking(read) == b""
    log.record(request, 200, 0.001, 1, "127.0.0.1")
    written = b""
    deadline = time.monotonic() + 10
    while written.count(b"\n") < 512 and time.monotonic() < deadline:
        time.sleep(0.02)
        written += _read_nonblocking(read)
    assert written.count(b"\n") == 512
    log.close()
    os.close(read)
    os.close(write)


def _read_nonblocking(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 20)
    except BlockingIOError:
        return b""


async def test_bytes_that_are_not_utf8_are_escaped_not_fatal_to_the_batch(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    """aiohttp decodes header bytes that are not UTF-8 with ``surrogateescape``; such a line is
    written with escapes, and the lines around it are kept."""
    file = tmp_path / "access.log"
    write = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    log = AccessLog(write)

    async def handler(request: web.Request) -> web.Response:
        log.record(request, 200, 0.001, 1, "127.0.0.1")
        if request.path == "/ws":
            log.record(request, 101, 1.0, 0, "127.0.0.1", {"ended": "closed", "by": "client", "code": 1000})
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    server = await aiohttp_server(app)
    for target, agent in (
        (b"/before", b"curl"),
        (b"/x", b"agent\xff\xfe"),
        (b"/ws", b"\xff"),
        (b"/after", b""),
    ):
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(
            b"GET %s HTTP/1.1\r\nHost: x\r\nUser-Agent: %s\r\nConnection: close\r\n\r\n" % (target, agent)
        )
        assert (await reader.read()).startswith(b"HTTP/1.1 200")
        writer.close()
    log.close()
    os.close(write)
    entries = [orjson.loads(line) for line in file.read_bytes().splitlines()]
    assert [e["path"] for e in entries] == ["/before", "/x", "/ws", "/ws", "/after"]
    assert entries[1]["user_agent"] == "agent\\xff\\xfe"
    assert entries[2]["user_agent"] == entries[3]["user_agent"] == "\\xff"
    assert entries[3]["websocket"]["code"] == 1000


async def test_human_lines_for_a_terminal() -> None:
    read, write = os.pipe()
    log = AccessLog(write, human=True)
    log.record(make_mocked_request("GET", "/studio"), 200, 0.0123, 512, "127.0.0.1")
    websocket = {"ended": "closed", "by": "upstream", "code": 1001}
    log.record(make_mocked_request("GET", "/ws"), 101, 2.5, 0, "10.1.1.1", websocket)
    log.close()
    os.close(write)
    text = _read_all(read).decode()
    os.close(read)
    first, second = text.splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d access  GET /studio 200 12\.3ms 512B 127\.0\.0\.1", first)
    assert second.endswith("access  GET /ws 101 2500.0ms 0B 10.1.1.1 websocket closed by upstream code 1001")
