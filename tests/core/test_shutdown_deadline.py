"""Shutdown has one deadline: in-flight requests get ``shutdown_timeout`` in total, and a stream still
running then is cut (aiohttp alone waits the timeout twice and lets a streaming handler run on)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from proxy_core.server import runner_for
from proxy_core.stages.upstream import UpstreamStage
from proxy_core.testing import config_from_toml, make_app, stage

TICKS = 35  # one every 0.1 s: the stream would end 3.5 s after it starts


def ticking_upstream(started: asyncio.Event) -> web.Application:
    async def ticks(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        started.set()
        for index in range(TICKS):
            await response.write(f"data: {index}\n\n".encode())
            await asyncio.sleep(0.1)
        await response.write(b"data: done\n\n")
        return response

    app = web.Application()
    app.router.add_get("/events", ticks)
    return app


async def test_a_stream_longer_than_the_deadline_is_cut_at_it(aiohttp_server: Any) -> None:
    """With ``shutdown_timeout = 2`` a 3.5 s stream must not reach its end: before, the first wait
    (2 s) and the second (2 s more) let it finish."""
    started = asyncio.Event()
    upstream = await aiohttp_server(ticking_upstream(started))
    config = config_from_toml("[server]\naccess_log = false\nshutdown_timeout = 2\n")
    app = make_app([stage(UpstreamStage, url=str(upstream.make_url("/")))], config)
    runner = runner_for(app, config)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    received = bytearray()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/events") as response:
            await started.wait()
            received += await response.content.readuntil(b"\n\n")
            cleanup = asyncio.ensure_future(runner.cleanup())  # what SIGTERM does
            try:
                async for chunk in response.content.iter_any():
                    received += chunk
            except aiohttp.ClientPayloadError:
                pass  # cut: the honest signal that the stream did not end
            await cleanup
    assert received.startswith(b"data: 0\n\n")
    assert b"data: done" not in received  # cut at the deadline, not run to its end


async def test_requests_that_finish_in_time_are_not_cut(aiohttp_server: Any) -> None:
    started = asyncio.Event()
    upstream = await aiohttp_server(ticking_upstream(started))
    config = config_from_toml("[server]\naccess_log = false\nshutdown_timeout = 30\n")
    app = make_app([stage(UpstreamStage, url=str(upstream.make_url("/")))], config)
    runner = runner_for(app, config)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/events") as response:
            await started.wait()
            cleanup = asyncio.ensure_future(runner.cleanup())
            body = await response.read()
            await cleanup
    assert body.endswith(b"data: done\n\n")
    assert body.count(b"data: ") == TICKS + 1
