"""WebSocket round trips (small text echo, one at a time): direct, through ours, and optionally through the
proxy of another checkout (to compare two versions of the relay), in interleaved rounds.

``python -m bench.ws_echo [--messages N] [--rounds R] [--other PATH]`` prints p50/p99 per path and round,
then the median ratio of each proxy's p50 to the direct p50 (ratios, not absolute numbers, are what a
shared machine can tell).
"""

from __future__ import annotations

import argparse
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
    with procs.aiohttp_upstream(cpus="0") as up:
        for round_ in range(1, rounds + 1):
            starts = [("direct", None), ("ours", lambda: procs.ours(up.url, cpus="1"))]
            if other is not None:
                starts.append(("other", lambda: _other(up.url, other)))
            if round_ % 2 == 0:
                starts = [starts[0], *reversed(starts[1:])]  # alternate the order of the proxies
            for name, start in starts:
                if start is None:
                    times = run_async(_round_trips(up.url, messages))
                else:
                    with start() as proxy:
                        times = run_async(_round_trips(proxy.url, messages))
                times.sort()
                p50, p99 = times[len(times) // 2], times[int(len(times) * 0.99)]
                p50s.setdefault(name, []).append(p50)
                rows.append((round_, name, f"{p50 * 1000:.3f}", f"{p99 * 1000:.3f}"))
    table(
        f"WebSocket echo round trip, {messages} messages per row (ms)", ("round", "path", "p50", "p99"), rows
    )
    direct = p50s["direct"]
    for name, values in p50s.items():
        if name != "direct":
            ratio = statistics.median(v / d for v, d in zip(values, direct, strict=True))
            print(f"  {name}: p50 / direct p50, median over rounds = {ratio:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench.ws_echo", description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--other", type=Path, help="another checkout whose proxy to compare")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    run(args.messages, args.rounds, args.other)
