"""A kit for testing stages: build a proxy app from stage classes and TOML snippets, and a real echo
upstream to forward to. Works with pytest-aiohttp's ``aiohttp_server`` / ``aiohttp_client`` fixtures::

    async def test_my_stage(aiohttp_server, aiohttp_client):
        upstream = await aiohttp_server(echo_app())
        app = make_app([stage(MyStage, option=1), stage(UpstreamStage, url=str(upstream.make_url("/")))])
        client = await aiohttp_client(app)
        assert (await client.get("/hello")).status == 200
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from aiohttp import web
from yarl import URL

from .app import CONFIG, StageFactory, build_stage, create_app
from .config import ProxyConfig, StageSpec, parse_config
from .server import runner_for
from .stage import Stage, StageContext

__all__ = ["config_from_toml", "echo_app", "make_app", "postgres_schema", "run_proxy", "stage"]


def config_from_toml(
    text: str = "", env: Mapping[str, str] | None = None, file: str = "test.toml"
) -> ProxyConfig:
    """A :class:`ProxyConfig` from TOML text (``[server] access_log`` defaults to off in tests)."""
    if "access_log" not in text:
        text = "[server]\naccess_log = false\n" + text if "[server]" not in text else text
    return parse_config(text, file, env or {})


def stage(cls: type[Stage[Any]], **options: Any) -> StageFactory:
    """A factory building ``cls`` with ``options`` validated exactly as ``proxy.toml`` would be."""

    def build(context: StageContext) -> Stage[Any]:
        return build_stage(context, cls, StageSpec(cls.name or cls.__name__, 0, options))

    return build


def make_app(stages: Sequence[StageFactory], config: ProxyConfig | str | None = None) -> web.Application:
    """The proxy app for ``stages``; ``config`` (object or TOML text) holds the server and shared sections."""
    if not isinstance(config, ProxyConfig):
        config = config_from_toml(config or "")
    return create_app(config, stages=stages)


@asynccontextmanager
async def run_proxy(app: web.Application, config: ProxyConfig | None = None) -> AsyncIterator[URL]:
    """Serve ``app`` on a free loopback port with the production runner (the same error pages, limits
    and client-disconnect handling as the ``serve`` command) and yield its base URL."""
    config = config or app[CONFIG]
    runner = runner_for(app, config)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        yield URL(f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


def echo_app() -> web.Application:
    """An upstream that answers every request with JSON describing it: method, path, query, headers, body."""

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(
            body=orjson.dumps(
                {
                    "method": request.method,
                    "path": request.path,
                    "raw_path": request.raw_path,
                    "query": dict(request.query),
                    "headers": {str(k): ", ".join(request.headers.getall(k)) for k in request.headers},
                    "body": body.decode("utf-8", "replace"),
                    "body_length": len(body),
                }
            ),
            content_type="application/json",
        )

    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


@asynccontextmanager
async def postgres_schema(server: str) -> AsyncIterator[str]:
    """A throw-away schema on the Postgres at ``server`` (a ``postgresql://`` URL): yields a URL whose
    ``search_path`` points at it, for a :class:`~proxy_core.db.Database`; dropped, with everything
    in it, afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        yield f"{server}?search_path={schema}"
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()
