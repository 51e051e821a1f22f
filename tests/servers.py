"""Real server processes for tests, on loopback: a free port, a process started in its own session with
its output in a log file, its JSON log lines read back, waiting until it answers ``/readyz``, and
stopping it (and whatever it started)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import orjson


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def spawn(
    args: list[str], env: dict[str, str] | None, log: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``args`` in its own session (so :func:`stop` can end its whole group), output to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def json_lines(log: Path) -> list[dict[str, Any]]:
    """The JSON objects a server logged to ``log`` so far (other lines, a traceback's, are skipped)."""
    found = []
    for raw in log.read_bytes().splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            line = orjson.loads(raw)
            if isinstance(line, dict):
                found.append(line)
    return found


async def until_ready(
    session: aiohttp.ClientSession,
    url: str,
    process: subprocess.Popen[bytes],
    log: Path,
    name: str,
    tries: int = 600,
) -> None:
    """Polls ``url``'s ``/readyz`` every 0.1 s until it answers 200; fails, naming the server ``name``
    and quoting the end of its ``log``, if the process exits first or ``tries`` polls go unanswered."""
    for _ in range(tries):
        if process.poll() is not None:
            raise AssertionError(f"{name} exited: {log.read_text()[-3000:]}")
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(url + "/readyz") as answer:
                if answer.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} never became ready: {log.read_text()[-3000:]}")


async def stop(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, then up to ``grace`` seconds (in a thread: the loop stays free for the stand-ins the
    server may still call) before its whole process group is killed."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(process.wait, grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
