"""Benchmark 4: 2,000 concurrent idle WebSockets (then 2,000 idle SSE streams) held through each proxy.

Reports the proxy's RSS and open descriptors before, while held (and KB per connection), and after
everything is closed again, which should be back near the baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import aiohttp

from . import procs
from .clients import batched, gauges, run_async, session
from .procs import Snapshot
from .report import table

BATCH = 200
SETTLE = 2.0


async def _hold(
    kind: str, url: str, count: int, pid: int, ours: bool
) -> tuple[Snapshot, Snapshot, Snapshot, str]:
    async with session() as s:
        # warm-up: one of each, so first-use allocations are not counted as per-connection cost
        await _cycle(s, kind, url, 1)
        await asyncio.sleep(SETTLE)
        before = Snapshot.of(pid)

        async def open_ws() -> aiohttp.ClientWebSocketResponse:
            # offer permessage-deflate, as browsers do (aiohttp's client does not by default)
            return await s.ws_connect(url + "/ws", autoping=False, heartbeat=None, compress=15)

        async def open_sse() -> aiohttp.ClientResponse:
            response = await s.get(url + "/sse-idle")
            await response.content.readline()  # the first comment: the stream is established end to end
            return response

        opener = open_ws if kind == "ws" else open_sse
        held: list[Any] = await batched(range(count), BATCH, lambda _: opener())
        await asyncio.sleep(SETTLE)
        during = Snapshot.of(pid)
        open_gauges = await gauges(url) if ours else {}
        await batched(held, BATCH, _close)
    await asyncio.sleep(SETTLE)
    after = Snapshot.of(pid)
    note = ""
    if ours:
        closed_gauges = await gauges(url)
        note = " ".join(
            f"{k.removeprefix('proxy_')}={v:.0f}->{closed_gauges[k]:.0f}" for k, v in open_gauges.items()
        )
    return before, during, after, note


async def _cycle(s: aiohttp.ClientSession, kind: str, url: str, count: int) -> None:
    for _ in range(count):
        if kind == "ws":
            async with s.ws_connect(url + "/ws", compress=15) as ws:
                await ws.send_str("hi")
                await ws.receive()
        else:
            async with s.get(url + "/sse-idle") as r:
                await r.content.readline()


async def _close(held: aiohttp.ClientWebSocketResponse | aiohttp.ClientResponse) -> None:
    with contextlib.suppress(Exception):
        if isinstance(held, aiohttp.ClientWebSocketResponse):
            await held.close()
        else:
            held.close()


def _proxies(kind: str, upstream: str, with_chp: bool) -> list[Callable[[], procs.Service]]:
    """Ours (for WebSockets: with permessage-deflate negotiated through it, and with it turned off), then
    CHP. The bench client and upstream (aiohttp) both support compression, so "on" compresses."""
    ours: list[Callable[[], procs.Service]] = [lambda: procs.ours(upstream, cpus="1")]
    if kind == "ws":
        ours.append(
            lambda: procs.ours(
                upstream, cpus="1", extra_pipeline="websocket_compression = false\n", label="no deflate"
            )
        )
    return ours + ([lambda: procs.chp(upstream, cpus="1")] if with_chp else [])


async def _negotiated(url: str) -> str:
    async with session() as s, s.ws_connect(url + "/ws", compress=15) as ws:
        return f"deflate={'on' if ws.compress else 'off'} "


def run(count: int = 2000, with_chp: bool = True) -> None:
    rows = []
    with procs.aiohttp_upstream(cpus="0") as up:
        for kind in ("ws", "sse"):
            for start in _proxies(kind, up.url, with_chp):
                with start() as proxy:
                    ours = proxy.name.startswith("ours")
                    before, during, after, note = run_async(_hold(kind, proxy.url, count, proxy.pid, ours))
                    if kind == "ws":
                        note = run_async(_negotiated(proxy.url)) + note
                    per_conn = (during.rss_kb - before.rss_kb) / count
                    rows.append(
                        (
                            f"{kind}: {proxy.name}",
                            f"{before.rss_kb / 1024:.1f}",
                            f"{during.rss_kb / 1024:.1f}",
                            f"{per_conn:.1f}",
                            f"{after.rss_kb / 1024:.1f}",
                            before.fds,
                            during.fds,
                            after.fds,
                            note,
                        )
                    )
    table(
        f"idle: {count} idle WebSockets / SSE streams held, then closed "
        f"(RSS in MB, after = {SETTLE:.0f} s later)",
        (
            "connections",
            "RSS before",
            "RSS held",
            "KB/conn",
            "RSS after",
            "fds before",
            "fds held",
            "fds after",
            "gauges held->after",
        ),
        rows,
    )
