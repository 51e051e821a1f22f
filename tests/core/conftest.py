from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy_core.stages.upstream import UpstreamStage
from proxy_core.testing import make_app, stage

ProxyFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
def proxy_to(aiohttp_client: Any) -> ProxyFactory:
    """A test client for a proxy whose only stage forwards to ``upstream`` (a running test server)."""

    async def make(
        upstream: TestServer, config: str = "", **options: Any
    ) -> TestClient[web.Request, web.Application]:
        options.setdefault("url", str(upstream.make_url("/")))
        app = make_app([stage(UpstreamStage, **options)], config)
        client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
        return client

    return make
