"""Benchmark 5: a leak soak. 100,000 requests mixing normal GETs, clients aborting mid-response, upstream
resets mid-stream, WebSockets dropped abruptly from either side and WebSocket upgrades to a dead upstream.

Before and after (with every client connection closed) it reads, without any debug hook, the proxy's
open descriptors (/proc/PID/fd, split into client/upstream sockets), its RSS and the ``/metrics`` gauges
``proxy_open_streams`` and ``proxy_open_websockets``. Nothing may grow. Only 127.0.0.1 is targeted.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import aiohttp

from . import procs
from .clients import gauges, run_async, session
from .rawws import RawWebSocket
from .report import table, verdict

CONCURRENCY = 50
SETTLE = 3.0
MIX: dict[str, float] = {
    "get": 0.86,
    "client_abort": 0.03,
    "upstream_reset": 0.03,
    "ws_client_reset": 0.02,
    "ws_upstream_reset": 0.02,
    "ws_clean": 0.02,
    "ws_dead_upstream": 0.02,
}
Op = Callable[[aiohttp.ClientSession, procs.Service], Awaitable[str]]


async def op_get(s: aiohttp.ClientSession, proxy: procs.Service) -> str:
    async with s.get(proxy.url + "/small") as r:
        await r.read()
        return "ok" if r.status == 200 else f"status {r.status}"


async def op_client_abort(s: aiohttp.ClientSession, proxy: procs.Service) -> str:
    async with s.get(proxy.url + f"/download?size={8 * 1024 * 1024}") as r:
        await r.content.readexactly(64 * 1024)
        if r.connection is not None and r.connection.transport is not None:
            r.connection.transport.abort()
        r.close()
    return "ok"


async def op_upstream_reset(s: aiohttp.ClientSession, proxy: procs.Service) -> str:
    try:
        async with s.get(proxy.url + "/reset") as r:
            await r.read()
    except aiohttp.ClientPayloadError:
        return "ok"  # the proxy cut the client's connection: the body is visibly incomplete
    return "complete body (unexpected)"


async def op_ws_client_reset(s: aiohttp.ClientSession, proxy: procs.Service) -> str:
    ws = await RawWebSocket.connect(proxy.port, "/ws")
    if ws.status != 101:
        await ws.close()
        return f"status {ws.status}"
    ws.send_text("ping")
    await ws.read_frame()
    ws.reset()
    return "ok"


async def op_ws_upstream_reset(s: aiohttp.ClientSession, proxy: procs.Service) -> str:
    ws = await RawWebSocket.connect(proxy.port, "/ws-abort")
    try:
        if ws.status != 101:
            return f"status {ws.status}"
        ws.send_text("bye")
        opcode, _ = await ws.read_frame()
        return "ok" if opcode == 0x8 else f"opcode {opcode}"
    except asyncio.IncompleteReadError:
        return "ok (connection closed without a close frame)"
    finally:
        await ws.close()


async def op_ws_clean(s: aiohttp.ClientSession, proxy: procs.Service) -> str:
    async with s.ws_connect(proxy.url + "/ws") as ws:
        await ws.send_str("hello")
        msg = await ws.receive()
        return "ok" if msg.data == "hello" else f"got {msg.type}"


async def op_ws_dead_upstream(s: aiohttp.ClientSession, proxy: procs.Service) -> str:
    ws = await RawWebSocket.connect(proxy.port, "/dead/ws")
    await ws.close()
    return "ok" if ws.status == 502 else f"status {ws.status}"


OPS: dict[str, Op] = {
    "get": op_get,
    "client_abort": op_client_abort,
    "upstream_reset": op_upstream_reset,
    "ws_client_reset": op_ws_client_reset,
    "ws_upstream_reset": op_ws_upstream_reset,
    "ws_clean": op_ws_clean,
    "ws_dead_upstream": op_ws_dead_upstream,
}


async def _state(proxy: procs.Service) -> dict[str, float]:
    sockets = procs.tcp_sockets(proxy.pid, proxy.port)
    return {
        "fds": procs.fd_count(proxy.pid),
        "client sockets": sockets["client"],
        "upstream sockets": sockets["upstream"],
        "RSS MB": procs.rss_kb(proxy.pid) / 1024,
        **{k.removeprefix("proxy_"): v for k, v in (await gauges(proxy.url)).items()},
    }


async def _soak(proxy: procs.Service, requests: int, cap_seconds: float) -> tuple[Counter[str], int, float]:
    rng = random.Random(2)
    kinds = rng.choices(list(MIX), weights=list(MIX.values()), k=requests)
    outcomes: Counter[str] = Counter()
    done = 0
    deadline = time.monotonic() + cap_seconds
    started = time.monotonic()
    async with session() as s:

        async def worker(offset: int) -> None:
            nonlocal done
            for kind in kinds[offset::CONCURRENCY]:
                if time.monotonic() > deadline:
                    return
                try:
                    async with asyncio.timeout(30):
                        outcome = await OPS[kind](s, proxy)
                except Exception as exc:
                    outcome = f"{type(exc).__name__}"
                outcomes[f"{kind}: {outcome}"] += 1
                done += 1

        await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
    return outcomes, done, time.monotonic() - started


async def _warm_up(proxy: procs.Service) -> None:
    async with session() as s:
        for kind, op in OPS.items():
            for _ in range(CONCURRENCY if kind == "get" else 3):
                with contextlib.suppress(Exception):
                    await op(s, proxy)
        await asyncio.gather(*(op_get(s, proxy) for _ in range(CONCURRENCY)))
    await asyncio.sleep(SETTLE)


async def _run(proxy: procs.Service, requests: int, cap_seconds: float) -> None:
    await _warm_up(proxy)
    before = await _state(proxy)
    outcomes, done, seconds = await _soak(proxy, requests, cap_seconds)
    await asyncio.sleep(SETTLE)
    after = await _state(proxy)
    table(
        f"soak: {done:,} requests in {seconds:.0f} s "
        f"({done / seconds:,.0f}/s, {CONCURRENCY} concurrent), outcomes",
        ("operation: outcome", "count"),
        sorted(outcomes.items()),
    )
    table(
        f"soak: proxy state before vs after (every client connection closed, {SETTLE:.0f} s settle)",
        ("measure", "before", "after"),
        [(k, f"{before[k]:g}", f"{after[k]:g}") for k in before],
    )
    leaked = after["client sockets"] + after["open_streams"] + after["open_websockets"]
    verdict("leftover client sockets + open streams + open websockets", leaked, "0", leaked == 0)
    pool_growth = after["upstream sockets"] - before["upstream sockets"]
    verdict(
        "fd growth",
        after["fds"] - before["fds"],
        f"<= idle-pool jitter ({pool_growth:+g} upstream)",
        after["fds"] - before["fds"] <= max(0.0, pool_growth),
    )
    growth = after["RSS MB"] - before["RSS MB"]
    print(f"  RSS growth over the soak: {growth:+.1f} MB (informational, see bench/README.md)")
    if done < requests:
        print(f"  note: stopped at the {cap_seconds:.0f} s cap after {done:,} of {requests:,} requests")


def run(requests: int = 100_000, cap_seconds: float = 240.0) -> None:
    dead = procs.free_port()  # nothing listens there
    extra = f'[[pipeline]]\nstage = "bench.stages:PrefixUpstream"\nprefix = "/dead/"\nurl = "http://127.0.0.1:{dead}"\n'
    with procs.aiohttp_upstream(cpus="0") as up, procs.ours(up.url, cpus="1", extra_pipeline=extra) as proxy:
        run_async(_run(proxy, requests, cap_seconds))
