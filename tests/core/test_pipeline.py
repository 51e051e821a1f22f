"""The stage pipeline: order, short-circuit, typed keys between stages, routes, lifespans, readiness,
and finding stages by entry point or module path."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

import pytest
from aiohttp import web

from proxy_core import STAGES, Next, Readiness, Stage, StageConfig, StageContext, prefix_route
from proxy_core.registry import UnknownStageError, installed_stages, load_stage_class
from proxy_core.stages.upstream import UpstreamStage
from proxy_core.testing import echo_app, make_app, stage

TRAIL: web.RequestKey[list[str]] = web.RequestKey("tests.trail")
USER = web.RequestKey("tests.user", str)
EVENTS: list[str] = []


class MarkConfig(StageConfig):
    label: str


class Mark(Stage[MarkConfig]):
    """Appends its label to the trail on the way in and to a response header on the way out."""

    name = "mark"

    async def __call__(self, request: web.Request, next: Next) -> web.StreamResponse:
        request.setdefault(TRAIL, []).append(self.config.label)
        response = await next(request)
        response.headers.add("X-Trail", self.config.label)
        return response


class GateConfig(StageConfig):
    token: str


class Gate(Stage[GateConfig]):
    """Answers 401 itself unless the token matches; exports the caller through a typed key."""

    name = "gate"

    async def __call__(self, request: web.Request, next: Next) -> web.StreamResponse:
        if request.headers.get("X-Token") != self.config.token:
            return web.json_response({"error": "no"}, status=401)
        request[USER] = "alice"
        return await next(request)


class Hello(Stage[StageConfig]):
    """Contributes a route that reads what earlier stages left on the request."""

    name = "hello"
    ready: ClassVar[bool] = True

    def routes(self) -> Sequence[web.AbstractRouteDef]:
        return [web.get("/hello", self.hello)]

    async def hello(self, request: web.Request) -> web.Response:
        return web.json_response({"user": request.get(USER), "trail": request.get(TRAIL)})

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        EVENTS.append("hello:start")
        yield
        EVENTS.append("hello:stop")

    async def readiness(self) -> Readiness:
        return Readiness(Hello.ready, "" if Hello.ready else "warming up")


async def test_stages_run_in_order_and_unwind_in_reverse(aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app([stage(Mark, label="a"), stage(Mark, label="b"), stage(Hello)]))
    resp = await client.get("/hello")
    assert (await resp.json())["trail"] == ["a", "b"]
    assert resp.headers.getall("X-Trail") == ["b", "a"]


async def test_a_stage_short_circuits_and_later_stages_never_run(aiohttp_client: Any) -> None:
    client = await aiohttp_client(
        make_app([stage(Mark, label="a"), stage(Gate, token="t"), stage(Mark, label="c")])
    )
    resp = await client.get("/hello")
    assert resp.status == 401
    assert resp.headers.getall("X-Trail") == ["a"]


async def test_typed_keys_carry_data_to_later_stages(aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app([stage(Gate, token="t"), stage(Hello)]))
    resp = await client.get("/hello", headers={"X-Token": "t"})
    assert (await resp.json())["user"] == "alice"


async def test_unmatched_requests_fall_through_to_a_404(aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app([stage(Hello)]))
    resp = await client.get("/nothing-here")
    assert resp.status == 404
    assert (await resp.json())["error"]["status"] == 404


async def test_stage_routes_sit_behind_earlier_stages(aiohttp_server: Any, aiohttp_client: Any) -> None:
    upstream = await aiohttp_server(echo_app())
    app = make_app(
        [stage(Gate, token="t"), stage(Hello), stage(UpstreamStage, url=str(upstream.make_url("/")))]
    )
    client = await aiohttp_client(app)
    assert (await client.get("/hello")).status == 401
    answered = await client.get("/hello", headers={"X-Token": "t"})
    assert await answered.json() == {"user": "alice", "trail": None}  # the route, not the upstream
    proxied = await client.get("/other", headers={"X-Token": "t"})
    assert (await proxied.json())["path"] == "/other"


async def test_a_stage_route_skips_its_own_stage_and_later_ones(aiohttp_client: Any) -> None:
    class MarkedHello(Hello):
        async def __call__(self, request: web.Request, next: Next) -> web.StreamResponse:
            request.setdefault(TRAIL, []).append("own")
            return await next(request)

    app = make_app(
        [stage(Mark, label="a"), stage(MarkedHello), stage(Mark, label="c"), stage(Gate, token="t")]
    )
    client = await aiohttp_client(app)
    resp = await client.get("/hello")
    assert resp.status == 200
    assert (await resp.json())["trail"] == ["a"]
    assert resp.headers.getall("X-Trail") == ["a"]
    assert (await client.get("/elsewhere")).status == 401  # unmatched paths still pass every stage


class Subtree(Stage[StageConfig]):
    """Answers a whole subtree through one prefix route, beside an exact route inside it."""

    name = "subtree"

    def routes(self) -> Sequence[web.AbstractRouteDef]:
        return [prefix_route("/svc", self.rest), web.get("/svc/exact", self.exact)]

    async def rest(self, request: web.Request) -> web.Response:
        return web.json_response({"route": "prefix", "raw_path": request.raw_path})

    async def exact(self, request: web.Request) -> web.Response:
        return web.json_response({"route": "exact"})


async def test_a_prefix_route_answers_its_subtree_and_nothing_beside_it(aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app([stage(Mark, label="a"), stage(Subtree)]))
    for path in ("/svc/", "/svc/a/b%2Fc?q=1", "/svc/exact/deeper"):
        resp = await client.post(path)
        assert await resp.json() == {"route": "prefix", "raw_path": path}
        assert resp.headers.getall("X-Trail") == ["a"]  # behind the earlier stages
    assert await (await client.get("/svc/exact")).json() == {"route": "exact"}  # the longer path wins
    for beside in ("/svc", "/svcx/a", "/other/svc/a"):
        assert (await client.get(beside)).status == 404, beside


async def test_a_prefix_route_moves_with_the_sub_application_it_is_mounted_in(aiohttp_client: Any) -> None:
    async def rest(request: web.Request) -> web.Response:
        return web.Response(text=request.raw_path)

    sub = web.Application()
    sub.router.add_routes([prefix_route("/svc", rest)])
    app = web.Application()
    app.add_subapp("/sub", sub)
    client = await aiohttp_client(app)
    assert await (await client.get("/sub/svc/a")).text() == "/sub/svc/a"
    for elsewhere in ("/svc/a", "/sub/svc", "/sub/svcx/a"):
        assert (await client.get(elsewhere)).status == 404, elsewhere


async def test_lifespans_start_and_stop_with_the_app(aiohttp_client: Any) -> None:
    EVENTS.clear()
    client = await aiohttp_client(make_app([stage(Hello)]))
    assert EVENTS == ["hello:start"]
    await client.close()
    assert EVENTS == ["hello:start", "hello:stop"]


async def test_readiness_comes_from_every_stage(aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app([stage(Hello), stage(Mark, label="x")]))
    Hello.ready = False
    try:
        resp = await client.get("/readyz")
        assert resp.status == 503
        body = await resp.json()
        assert body == {
            "ready": False,
            "checks": {
                "hello": {"ready": False, "detail": "warming up"},
                "mark": {"ready": True, "detail": ""},
            },
        }
    finally:
        Hello.ready = True
    assert (await client.get("/readyz")).status == 200


async def test_ops_paths_bypass_the_stages(aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app([stage(Gate, token="t")]))
    assert (await client.get("/healthz")).status == 200


def test_stages_load_by_entry_point_name() -> None:
    assert "upstream" in installed_stages()
    assert load_stage_class("upstream") is UpstreamStage


def test_stages_load_by_module_path() -> None:
    assert load_stage_class("tests.core.test_pipeline:Mark") is Mark


def test_loading_something_that_is_not_a_stage_fails_clearly() -> None:
    with pytest.raises(UnknownStageError, match="is not a proxy_core Stage subclass"):
        load_stage_class("proxy_core.config:load_config")
    with pytest.raises(UnknownStageError, match=r"cannot load stage 'no\.such\.module:X'"):
        load_stage_class("no.such.module:X")


async def test_stage_context_shares_resources(aiohttp_client: Any) -> None:
    opened: list[str] = []

    class Pool:
        name = "pool"

        async def open(self) -> None:
            opened.append("open")

        async def close(self) -> None:
            opened.append("close")

        async def readiness(self) -> Readiness:
            return Readiness(False, "no connection yet")

    class UsesPool(Stage[StageConfig]):
        name = "uses_pool"

        def __init__(self, config: StageConfig, context: StageContext) -> None:
            super().__init__(config, context)
            self.pool = context.resource("pool", Pool)

    app = make_app([stage(UsesPool), stage(UsesPool)])
    first, second = app[STAGES]
    assert getattr(first, "pool") is getattr(second, "pool")  # noqa: B009
    client = await aiohttp_client(app)
    assert opened == ["open"]
    body = await (await client.get("/readyz")).json()
    assert body["checks"]["pool"] == {"ready": False, "detail": "no connection yet"}
    await client.close()
    assert opened == ["open", "close"]


class Cloner(Stage[StageConfig]):
    """Rewrites a header the only way aiohttp allows: by cloning the request."""

    name = "cloner"

    async def __call__(self, request: web.Request, next: Next) -> web.StreamResponse:
        return await next(request.clone(headers={"X-Rewritten": "1"}))


async def test_what_the_forwarder_learns_on_a_clone_reaches_the_metrics(aiohttp_client: Any) -> None:
    from proxy_core import METRICS, OUTCOME

    async def client_left(request: web.Request) -> web.Response:
        assert request.headers["X-Rewritten"] == "1"
        request[OUTCOME].client_gone = True  # what the forwarder records when a write finds the client gone
        return web.Response(text="partial")

    app = make_app([stage(Cloner)])
    app.router.add_get("/left", client_left)
    client = await aiohttp_client(app)
    await client.get("/left")
    assert app[METRICS].requests.get(("GET", "499")) == 1
