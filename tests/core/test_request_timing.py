"""Request durations (the latency histogram, the access log) are measured finer than the event loop's
clock: uvloop's ``loop.time()`` counts whole milliseconds and stands still within a loop turn."""

from __future__ import annotations

import time

import aiohttp
import uvloop
from aiohttp import web

from proxy_core.testing import make_app, run_proxy

WORK = 0.0006  # seconds of work in the handler, within one turn of the loop: over the first bucket


def test_durations_under_uvloop_are_not_rounded_to_its_clock() -> None:
    async def busy(request: web.Request) -> web.Response:
        time.sleep(WORK)  # blocking on purpose: the loop's clock does not move meanwhile
        return web.Response(text="done")

    async def main() -> str:
        app = make_app([])
        app.router.add_get("/busy", busy)
        async with run_proxy(app) as url, aiohttp.ClientSession() as session:
            for _ in range(20):
                async with session.get(url / "busy") as answer:
                    assert answer.status == 200
            async with session.get(url / "metrics") as answer:
                return await answer.text()

    text = uvloop.run(main())
    assert "proxy_request_duration_seconds_count 20" in text
    # every request took longer than the first bucket's 0.5 ms; on uvloop's clock about half took 0
    assert 'proxy_request_duration_seconds_bucket{le="0.0005"} 0' in text
