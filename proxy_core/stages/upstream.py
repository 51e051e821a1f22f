"""The built-in ``upstream`` stage: forward everything that reaches it to one fixed URL.

With it alone, ``proxy_core`` is a complete reverse proxy.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from aiohttp import web
from pydantic import AnyHttpUrl, Field

from ..config import StageConfig
from ..exchange import Timeouts, Upstream
from ..inject import page_tap
from ..stage import Next, Stage, StageContext


class UpstreamConfig(StageConfig):
    url: AnyHttpUrl
    preserve_host: bool = False
    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(60.0, gt=0)
    idle_timeout: float | None = Field(900.0, gt=0)
    inject_html: bool = False
    """Let earlier stages add their scripts to the HTML pages it serves (the cloud menu, say)."""


class UpstreamStage(Stage[UpstreamConfig]):
    name = "upstream"

    def __init__(self, config: UpstreamConfig, context: StageContext) -> None:
        super().__init__(config, context)
        self.upstream = Upstream.from_url(str(config.url))
        self.timeouts = Timeouts(config.connect_timeout, config.read_timeout, config.idle_timeout)
        self.forwarder = context.forwarder

    def __call__(self, request: web.Request, next: Next) -> Coroutine[Any, Any, web.StreamResponse]:
        # a plain function returning send()'s coroutine (what an ``async def`` returns too), so the hot
        # path has one coroutine frame fewer
        forwarder = self.forwarder
        outgoing = forwarder.build(request, self.upstream, preserve_host=self.config.preserve_host)
        tap = page_tap(request, outgoing) if self.config.inject_html else None
        return forwarder.send(request, outgoing, stage=self.name, timeouts=self.timeouts, tap=tap)
