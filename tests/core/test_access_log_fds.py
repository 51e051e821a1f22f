"""The access log never stops serving: the real server with its stderr on a full disk (``/dev/full``),
on a pipe whose reader has gone, and on a pipe nobody reads; and the writer's bounded queue on a real
pipe."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import aiohttp
import orjson
import pytest

from proxy_core.logwriter import BackgroundWriter


@pytest.fixture
def config(tmp_path: Path, unused_tcp_port: int) -> Path:
    path = tmp_path / "proxy.toml"
    path.write_text(f'[server]\nport = {unused_tcp_port}\naccess_log = true\nlog_format = "json"\n')
    return path


def _serve(config: Path, stderr: int | IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "proxy_core.cli", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


@pytest.fixture
def port(config: Path) -> int:
    return int(config.read_text().split("port = ")[1].split("\n")[0])


@pytest.fixture
def stopped() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


async def _requests(port: int, count: int) -> list[int]:
    """``count`` requests (eight at a time) after the server is up; their statuses."""
    statuses: list[int] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)

        async def one(i: int) -> None:
            async with session.get(f"http://127.0.0.1:{port}/page/{i}?token=abc") as resp:
                await resp.read()
                statuses.append(resp.status)

        for start in range(0, count, 8):
            await asyncio.gather(*(one(i) for i in range(start, min(start + 8, count))))
    return statuses


async def _dropped(port: int) -> float:
    await asyncio.sleep(0.2)  # past a flush
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        text = await resp.text()
    samples = [x for x in text.splitlines() if x.startswith("proxy_access_log_dropped_total")]
    return float(samples[0].split()[-1]) if samples else 0.0  # a counter never increased has no sample


async def test_a_full_disk_loses_log_lines_not_requests(
    config: Path, port: int, stopped: list[subprocess.Popen[bytes]]
) -> None:
    with open("/dev/full", "wb") as full:
        stopped.append(_serve(config, full))
    statuses = await _requests(port, 300)
    assert statuses == [404] * 300
    assert await _dropped(port) >= 300
    assert stopped[0].poll() is None


async def test_a_closed_stderr_loses_log_lines_not_requests(
    config: Path, port: int, stopped: list[subprocess.Popen[bytes]]
) -> None:
    read, write = os.pipe()
    stopped.append(_serve(config, write))
    os.close(write)
    os.close(read)  # the reader is gone: every write gets EPIPE
    statuses = await _requests(port, 300)
    assert statuses == [404] * 300
    assert await _dropped(port) >= 300
    assert stopped[0].poll() is None


async def test_a_stalled_log_reader_holds_up_no_request(
    config: Path, port: int, stopped: list[subprocess.Popen[bytes]]
) -> None:
    read, write = os.pipe()
    stopped.append(_serve(config, write))
    os.close(write)
    try:
        statuses = await _requests(port, 2000)  # ~400 KB of lines: far more than a pipe holds
        assert statuses == [404] * 2000
        assert await _dropped(port) == 0  # queued, not lost
        stopped[0].terminate()
        output = b""
        os.set_blocking(read, True)
        while chunk := os.read(read, 1 << 16):
            output += chunk
    finally:
        os.close(read)
    lines = [orjson.loads(line) for line in output.splitlines()]  # every line whole
    access = [line for line in lines if line.get("logger") == "access"]
    assert len(access) == 2000
    assert {line["path"] for line in access} == {f"/page/{i}" for i in range(2000)}


def test_the_writer_queue_is_bounded_and_drains() -> None:
    read, write = os.pipe()
    writer = BackgroundWriter(write, max_pending=256 * 1024)
    try:
        line = b"x" * 1023 + b"\n"
        accepted = sum(writer.submit(line * 16) for _ in range(64))  # 1 MiB against a 64 KiB pipe
        assert accepted < 64
        assert writer.pending <= 256 * 1024
        assert writer.dropped == (64 - accepted) * 16
        received = 0
        while received < accepted * 16 * 1024:
            received += len(os.read(read, 1 << 16))
        assert received == accepted * 16 * 1024
        assert writer.submit(line)  # room again once the reader caught up
    finally:
        writer.close()
        os.close(read)
        os.close(write)
