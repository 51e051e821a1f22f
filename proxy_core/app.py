"""Folds the configured stages into one aiohttp application: middlewares in pipeline order, the routes
stages contribute, their lifespans as cleanup contexts, and the ops endpoints in front of everything."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from ._websocket import WebSocketSettings
from .config import ConfigError, ProxyConfig, StageSpec
from .errors import error_response
from .exchange import Timeouts
from .forward import Forwarder
from .headers import TrustedProxies
from .logs import AccessLog, resolve_format
from .metrics import Metrics
from .ops import Ops
from .prefix import prefix_route
from .redact import redact_values
from .registry import UnknownStageError, load_stage_class
from .stage import Next, Resource, Stage, StageContext

CONFIG = web.AppKey("proxy_core.config", ProxyConfig)
FORWARDER = web.AppKey("proxy_core.forwarder", Forwarder)
METRICS = web.AppKey("proxy_core.metrics", Metrics)
STAGES: web.AppKey[tuple[Stage[Any], ...]] = web.AppKey("proxy_core.stages")

StageFactory = Callable[[StageContext], Stage[Any]]

S = TypeVar("S", bound=Stage[Any])


def find_stage(app: web.Application, cls: type[S]) -> S:
    """The app's stage of type ``cls`` (the first, if several); :class:`LookupError` when it has none.
    How a plugin reaches another's stage object without scanning the pipeline itself."""
    for stage in app[STAGES]:
        if isinstance(stage, cls):
            return stage
    raise LookupError(f"this app has no {cls.name or cls.__name__} stage")


def make_context(config: ProxyConfig, *, checking: bool = False) -> StageContext:
    metrics = Metrics()
    server = config.server
    forwarder = Forwarder(
        trusted_proxies=TrustedProxies(server.trusted_proxies),
        max_body_size=int(server.max_body_size),
        timeouts=Timeouts(),
        metrics=metrics,
        websocket=WebSocketSettings(
            max_message=int(server.websocket_max_message),
            compression=server.websocket_compression,
            buffer_limit=int(server.websocket_buffer_limit),
            close_timeout=server.websocket_close_timeout,
        ),
    )
    return StageContext(config, forwarder, metrics, checking=checking)


def build_stages(context: StageContext) -> list[Stage[Any]]:
    """Construct every ``[[pipeline]]`` stage with its validated config; errors name file, table, key."""
    config = context.config
    stages: list[Stage[Any]] = []
    for spec in config.pipeline:
        try:
            cls = load_stage_class(spec.name)
        except UnknownStageError as exc:
            raise ConfigError(config.file, spec.table, "stage", str(exc)) from None
        stages.append(build_stage(context, cls, spec))
    return stages


def build_stage(context: StageContext, cls: type[S], spec: StageSpec) -> S:
    """One stage from its raw table: the config validated, the stage constructed, and any error
    raised as a :class:`ConfigError` naming the file and the table (the path every stage takes,
    from ``proxy.toml`` or from :func:`proxy_core.testing.stage`)."""
    config = context.config
    stage_config = config.stage_config(spec, cls.config_class)
    try:
        return cls(stage_config, context)
    except ConfigError:
        raise
    except (ValueError, OSError) as exc:
        problem = redact_values(str(exc), (v for v in config.env_values if len(v) >= 3))
        raise ConfigError(config.file, spec.table, "", problem) from None


def create_app(
    config: ProxyConfig,
    *,
    stages: Sequence[StageFactory] | None = None,
    worker: int = 0,
    snapshot_dir: Path | None = None,
) -> web.Application:
    """The application for ``config``. ``stages`` replaces the ``[[pipeline]]`` list (library use, tests)."""
    context = make_context(config)
    pipeline = build_stages(context) if stages is None else [factory(context) for factory in stages]
    for stage in pipeline:
        context.forwarder.owned |= stage.owned_credentials()
    human = resolve_format(config.server.log_format) == "text"
    access_log = None
    if config.server.access_log:
        dropped = context.metrics.counter(
            "access_log_dropped_total",
            "Access log lines lost: the log's reader too slow, the disk full or the stream closed.",
        )
        access_log = AccessLog(human=human, dropped=dropped)
    ops = Ops(pipeline, context, access_log, worker=worker, snapshot_dir=snapshot_dir)
    middleware = Pipeline([ops, *pipeline])
    app = web.Application(middlewares=[middleware], client_max_size=int(config.server.max_body_size) or 2**62)
    app[CONFIG] = config
    app[FORWARDER] = context.forwarder
    app[METRICS] = context.metrics
    app[STAGES] = tuple(pipeline)
    for key, resource in context.resources.items():
        if isinstance(key, web.AppKey):  # resources registered under a typed key are reachable from the app
            app[key] = resource
    app.cleanup_ctx.append(_shared_services(context, access_log))
    app.on_shutdown.append(lambda _: context.forwarder.shut_down())
    for position, stage in enumerate(pipeline, start=1):
        app.cleanup_ctx.append(stage.lifespan)
        for route in app.router.add_routes(stage.routes()):
            middleware.route_owned_by(route.handler, position)
    # A real catch-all route (rather than aiohttp's "no match" system route) lets aiohttp cache the
    # middleware chain; it is reached only when every stage handed the request on. Tried last (aiohttp
    # walks a path's parents and tries ``/`` at the end), and matched without a regular expression.
    app.router.add_routes([prefix_route("/", _not_found)])
    return app


async def _not_found(request: web.Request) -> web.StreamResponse:
    return error_response(request, 404, "Nothing is served at this address.")


class Pipeline:
    """The one aiohttp middleware: runs the stages in order in front of the matched route's handler.

    A route declared by stage *k* runs behind stages ``1..k-1`` only: earlier stages (auth, say) still
    guard it, and neither stage *k* nor a later forwarding stage can take the request away from it.
    Requests matching no stage's route go through every stage to the catch-all.

    Each chain is composed once per route handler and cached, and stages are called positionally, so
    a stage's ``__call__(request, next)`` may name its parameters as it likes. A stage that keeps
    :meth:`Stage.__call__` as it is (it only declares routes, as ``vkey`` does) hands every request
    on unchanged, so chains leave it out: no frame per request for it.
    """

    __middleware_version__ = 1  # a (request, handler) middleware for aiohttp

    def __init__(
        self, stages: Sequence[Callable[[web.Request, Next], Awaitable[web.StreamResponse]]]
    ) -> None:
        self._stages = tuple(stages)
        self._chains: dict[Next, Next] = {}
        self._owners: dict[Next, int] = {}

    def route_owned_by(self, handler: Next, position: int) -> None:
        """Declare ``handler`` a route of the stage at ``position`` (0 is the first middleware)."""
        self._owners[handler] = position
        self._chains.pop(handler, None)

    def __call__(self, request: web.Request, handler: Next) -> Awaitable[web.StreamResponse]:
        # a plain function handing back the chain's awaitable: one coroutine frame fewer per request
        chain = self._chains.get(handler)
        if chain is None:
            chain = self._chains[handler] = self._compose(handler)
        return chain(request)

    def _compose(self, handler: Next) -> Next:
        chain = handler
        for stage in reversed(self._stages[: self._owners.get(handler, len(self._stages))]):
            if _passes_through(stage):
                continue
            chain = _link(stage, chain)
        return chain


def _passes_through(stage: object) -> bool:
    """A stage whose ``__call__`` is :class:`Stage`'s own: it hands every request on unchanged."""
    return isinstance(stage, Stage) and type(stage).__call__ is Stage.__call__


def _link(stage: Callable[[web.Request, Next], Awaitable[web.StreamResponse]], next: Next) -> Next:
    def call(request: web.Request) -> Awaitable[web.StreamResponse]:
        return stage(request, next)

    return call


def _shared_services(
    context: StageContext, access_log: AccessLog | None
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Opens shared resources before the stages' lifespans and closes them after (reverse order)."""

    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        opened: list[Resource] = []
        try:
            for resource in list(context.resources.values()):
                await resource.open()
                opened.append(resource)
            yield
        finally:
            for resource in reversed(opened):
                await resource.close()
            await context.forwarder.close()
            if access_log is not None:
                access_log.close()

    return lifespan
