"""A stage used by the soak: requests under a path prefix go to another upstream (a dead one there)."""

from __future__ import annotations

from aiohttp import web
from pydantic import AnyHttpUrl

from proxy_core.forward import Upstream
from proxy_core.stage import Next, Stage, StageConfig, StageContext


class PrefixUpstreamConfig(StageConfig):
    prefix: str
    url: AnyHttpUrl


class PrefixUpstream(Stage[PrefixUpstreamConfig]):
    name = "bench-prefix-upstream"

    def __init__(self, config: PrefixUpstreamConfig, context: StageContext) -> None:
        super().__init__(config, context)
        self.upstream = Upstream.from_url(str(config.url))

    async def __call__(self, request: web.Request, next: Next) -> web.StreamResponse:
        if not request.path.startswith(self.config.prefix):
            return await next(request)
        return await self.context.forwarder.forward(request, self.upstream, stage=self.name)
