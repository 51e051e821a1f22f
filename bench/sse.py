"""Benchmark 3: how long an SSE event takes from the upstream's write to the client, direct vs proxies.

The upstream stamps each event with ``time.monotonic_ns()`` (CLOCK_MONOTONIC is system-wide on Linux)
just before writing it, every 20 ms; the client subtracts that from its own clock on arrival.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from . import procs
from .clients import run_async, session
from .report import percentile, table, verdict

WARMUP_EVENTS = 5


async def delays(url: str, events: int) -> list[float]:
    """Per-event delay in ms for ``events`` events read from ``url``."""
    out: list[float] = []
    async with session() as s, s.get(f"{url}/sse?interval=0.02&count={events + WARMUP_EVENTS}") as r:
        seen = 0
        while line := await r.content.readline():
            if line.startswith(b"data: "):
                arrived = time.monotonic_ns()
                seen += 1
                if seen > WARMUP_EVENTS:
                    out.append((arrived - int(line[6:])) / 1e6)
    return out


def run(events: int = 250) -> None:
    with procs.aiohttp_upstream(cpus="0") as up:
        starters: list[tuple[str, Callable[[], procs.Service] | None]] = [
            ("direct", None),
            ("ours", lambda: procs.ours(up.url, cpus="1")),
            ("configurable-http-proxy", lambda: procs.chp(up.url, cpus="1")),
        ]
        results: dict[str, list[float]] = {}
        for name, start in starters:
            if start is None:
                results[name] = run_async(delays(up.url, events))
                continue
            with start() as proxy:
                results[name] = run_async(delays(proxy.url, events))
        rows = []
        for name, values in results.items():
            rows.append((name, len(values), percentile(values, 50), percentile(values, 99), max(values)))
        table(
            f"SSE: one event every 20 ms, delay from upstream write to client read ({events} events)",
            ("path", "events", "p50 ms", "p99 ms", "max ms"),
            rows,
        )
        added = percentile(results["ours"], 99) - percentile(results["direct"], 99)
        worst = max(results["ours"])
        verdict(
            "ours p99 delay (ms)",
            percentile(results["ours"], 99),
            "<= 2 ms",
            percentile(results["ours"], 99) <= 2,
        )
        print(f"  ours adds {added:.2f} ms at p99 over direct; worst event {worst:.2f} ms")
