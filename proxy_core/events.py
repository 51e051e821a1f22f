"""Server-sent events a stage answers itself (progress pages, live lists): one way to open the stream,
so every one is uncached and unbuffered by proxies in front of the cloud."""

from __future__ import annotations

from aiohttp import web


async def open_event_stream(request: web.Request) -> web.StreamResponse:
    """A prepared ``text/event-stream`` response for ``request``; write ``data: ...\\n\\n`` events to it."""
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    return response
