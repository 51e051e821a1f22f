"""WebSocket echo through a proxy: round trips of small text messages one at a time (latency), and a
burst of them sent without waiting (messages per second), direct, through ours, and optionally through
the proxy of another checkout (to compare two versions of the relay), in interleaved rounds.

``python -m bench.ws_echo [--messages N] [--rounds R] [--other PATH]`` prints p50/p99 and the burst
rate per path and round, then per proxy the median over rounds of its p50 relative to direct and of
its burst rate relative to direct (ratios, not absolute numbers, are what a shared machine can tell).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from . import procs
from .clients import run_async, session
from .report import table


async def _round_trips(url: str, messages: int) -> list[float]:
    async with session() as s, s.ws_connect(url + "/ws", autoping=False) as ws:
        for _ in range(50):  # warm-up
            await ws.send_str("x" * 32)
            await ws.receive()
        times = []
        for _ in range(messages):
            start = time.perf_counter()
            await ws.send_str("x" * 32)
            msg = await ws.receive()
            times.append(time.perf_counter() - start)
            assert msg.type is aiohttp.WSMsgType.TEXT
        return times


async def _burst(url: str, messages: int) -> float:
    """Messages per second echoed when ``messages`` are sent back to back (the reader runs alongside)."""
    async with session() as s, s.ws_connect(url + "/ws", autoping=False) as ws:

        async def read_all() -> None:
            for _ in range(messages):
                await ws.receive()

        start = time.perf_counter()
        reader = asyncio.get_running_loop().create_task(read_all())
        for _ in range(messages):
            await ws.send_str("x" * 32)
        await reader
        return messages / (time.perf_counter() - start)


def _other(upstream: str, repo: Path) -> procs.Service:
    """The proxy of another checkout (run from its folder, so its ``proxy_core`` is imported), same
    config as ours."""
    port = procs.free_port()
    config = procs.write_temp(
        f"[server]\nport = {port}\naccess_log = false\n"
        f'[[pipeline]]\nstage = "upstream"\nurl = "{upstream}"\n',
        ".toml",
    )
    process = subprocess.Popen(
        [*procs.pin("1"), sys.executable, "-m", "proxy_core.cli", "serve", "-c", str(config)],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    service = procs.Service(f"other ({repo})", process, port, [config])
    try:
        procs.wait_for_port(port, proc=process)
    except BaseException:
        service.stop()
        raise
    return service


def run(messages: int = 2000, rounds: int = 3, other: Path | None = None) -> None:
    rows = []
    p50s: dict[str, list[float]] = {}
    rates: dict[str, list[float]] = {}
    with procs.aiohttp_upstream(cpus="0") as up:
        for round_ in range(1, rounds + 1):
            starts = [("direct", None), ("ours", lambda: procs.ours(up.url, cpus="1"))]
            if other is not None:
                starts.append(("other", lambda: _other(up.url, other)))
            if round_ % 2 == 0:
                starts = [starts[0], *reversed(starts[1:])]  # alternate the order of the proxies
            for name, start in starts:
                with contextlib.ExitStack() as stack:
                    url = up.url if start is None else stack.enter_context(start()).url
                    times = sorted(run_async(_round_trips(url, messages)))
                    rate = run_async(_burst(url, messages * 10))
                p50, p99 = times[len(times) // 2], times[int(len(times) * 0.99)]
                p50s.setdefault(name, []).append(p50)
                rates.setdefault(name, []).append(rate)
                rows.append((round_, name, f"{p50 * 1000:.3f}", f"{p99 * 1000:.3f}", f"{rate:,.0f}"))
    table(
        f"WebSocket echo: {messages} round trips one at a time (ms), then {messages * 10} sent back to back",
        ("round", "path", "p50", "p99", "burst msg/s"),
        rows,
    )
    for name in p50s:
        if name != "direct":
            latency = statistics.median(v / d for v, d in zip(p50s[name], p50s["direct"], strict=True))
            rate = statistics.median(v / d for v, d in zip(rates[name], rates["direct"], strict=True))
            print(f"  {name}: p50 {latency:.2f}x direct's, burst rate {rate:.2f}x direct's (medians)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench.ws_echo", description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--other", type=Path, help="another checkout whose proxy to compare")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    run(args.messages, args.rounds, args.other)
