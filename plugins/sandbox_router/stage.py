"""The ``sandbox_router`` stage: every signed-in request goes to its user's own sandbox.

The target is chosen from the session's identity alone (never from the path, ``Host`` or any
forwarded header). The sandbox's app token is added on the way in and the browser's cookies are not
passed on. While the sandbox starts, browsers get the progress page and API/WebSocket callers 503
with ``Retry-After``. Its own pages and APIs (``/api/sandbox/*``) are declared routes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from functools import partial

from aiohttp import web
from yarl import URL

from plugins.auth import IDENTITY, Identity, UserChanged, session_is_live, user_directory
from plugins.vkey import gateway_activity, key_service
from proxy_core import (
    Next,
    Readiness,
    ResponseTap,
    Stage,
    StageContext,
    Timeouts,
    Upstream,
    UpstreamError,
    UpstreamRequest,
    error_response,
    wants_html,
)
from proxy_core.cache import SingleFlight
from proxy_core.db import ActivityWriter, StoreError, database
from proxy_core.inject import offer_script, page_tap

from . import api
from .api import CLOUD_SCRIPT_PATH
from .config import SandboxRouterConfig
from .lifecycle import TOUCH_EVERY, CloudUrls, Lifecycle, TooManyStarts
from .pages import progress_page
from .providers import build_provider
from .store import Sandbox
from .streams import InFlight
from .studio import ChainedTaps, StudioTap
from .sweeper import Sweeper

log = logging.getLogger(__name__)

ACTIVITY_WRITER = "sandbox_router.activity"
_DROPPED_HEADERS = ("Cookie", "X-CSRF-Token", "Authorization", "x-mastra-auth-token")


@dataclass(frozen=True, slots=True)
class Route:
    upstream: Upstream
    headers: tuple[tuple[str, str], ...]
    replaced: frozenset[str]  # what the client sent that must not reach the sandbox (lower case)
    row: Sandbox
    expires: float


class _Unreachable(Exception):
    """The sandbox the row calls running did not accept the connection."""


class SandboxRouterStage(Stage[SandboxRouterConfig]):
    name = "sandbox_router"
    config_class = SandboxRouterConfig

    def __init__(self, config: SandboxRouterConfig, context: StageContext) -> None:
        super().__init__(config, context)
        self.db = database(context)
        self.activity = context.resource(
            ACTIVITY_WRITER, lambda: ActivityWriter(self.db, "sandboxes", "user_id", "last_activity_at")
        )
        self.provider = build_provider(config)
        self.users = user_directory(context)
        server = context.config.server
        local = f"http://127.0.0.1:{server.port}"
        public = str(server.public_url).rstrip("/") if server.public_url else local
        internal = str(config.cloud_url).rstrip("/") if config.cloud_url else public
        self.public_url = URL(public) if server.public_url else None
        self.lifecycle = Lifecycle(
            self.db, self.provider, config, key_service(context), CloudUrls(public, internal)
        )
        self.lifecycle.on_stopped = self.forget_route
        self.forwarder = context.forwarder
        self.timeouts = Timeouts(config.connect_timeout, config.read_timeout, config.idle_stream_timeout)
        self.in_flight = InFlight(config.max_requests_per_user)
        self._routes: dict[uuid.UUID, Route] = {}
        self._routing: SingleFlight[uuid.UUID, Route | Sandbox | None] = SingleFlight()
        self._extended: dict[uuid.UUID, float] = {}
        self._touched: dict[uuid.UUID, float] = {}
        self._dropped = _DROPPED_HEADERS[1:] if config.forward_cookies else _DROPPED_HEADERS
        self._studio_prefix = config.studio_path + "/"
        metrics = context.metrics
        self.m_starts = metrics.counter(
            "sandbox_router_starts_total",
            "Sandbox starts run by this process, by outcome (running, failed).",
            ("outcome",),
        )
        self.lifecycle.on_finished = lambda outcome: self.m_starts.inc((outcome,))
        self.m_refused = metrics.counter(
            "sandbox_router_refused_total", "Requests refused by the router's limits.", ("reason",)
        )
        states = metrics.gauge(
            "sandbox_router_sandboxes",
            "Sandboxes in the store by state, as of the leader's last sweep (sweep_interval).",
            ("state",),
        )
        self.sweeper = Sweeper(self.lifecycle, self.activity, states)

    def routes(self) -> Sequence[web.AbstractRouteDef]:
        return api.routes(self)

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        self.app = app
        self.users.subscribe(self.on_user_changed)
        try:
            gateway_activity(app).listen(self.on_gateway_activity)
        except LookupError:
            log.info("sandbox_router: no vkey stage; gateway calls will not count as activity")
        tasks = [
            asyncio.create_task(self.sweeper.run(), name="sandbox-router-sweeper"),
            asyncio.create_task(self._watch_streams(), name="sandbox-router-streams"),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.sweeper.close()
            await self.lifecycle.close()
            await self.provider.close()

    async def readiness(self) -> Readiness:
        return Readiness(True, f"provider {self.provider.name}")

    # the hot path ----------------------------------------------------------------------------------

    async def __call__(self, request: web.Request, next: Next) -> web.StreamResponse:
        try:
            identity = request[IDENTITY]  # not ``request.get``: the generic ``Mapping.get`` costs twice
        except KeyError:
            return error_response(request, 401, "Sign in first.")
        if request.path == "/" and request.method in ("GET", "HEAD"):
            raise web.HTTPFound(self._studio_prefix)
        user_id = identity.user_id
        route = self._routes.get(user_id)
        if route is None or route.expires < time.monotonic():
            try:
                # every request of the user in flight now finds the route expired: one store read
                found = await self._routing.run(user_id, partial(self._route, user_id))
            except StoreError as exc:
                log.warning("sandbox_router: cannot read the store: %s", exc.message)
                return error_response(request, 503, "The cloud cannot reach its database. Try again shortly.")
            if isinstance(found, Sandbox) or found is None:
                return self.not_ready(request, identity, found)
            route = found
        flight = self.in_flight.enter(user_id, identity.session_id, request)
        if flight is None:
            self.m_refused.inc(("per_user",))
            return error_response(
                request, 429, "Too many requests in flight to your sandbox.", headers={"Retry-After": "1"}
            )
        try:  # forwarded from here, not from a coroutine of its own: one await less on every resume
            self.touch(user_id, route.row)
            outgoing, tap = self._outgoing(request, route)
            return await self.forwarder.send(
                request, outgoing, stage=self.name, timeouts=self.timeouts, tap=tap, on_error=_on_error
            )
        except _Unreachable:
            self._routes.pop(user_id, None)
            return self.not_ready(request, identity, route.row, check=True)
        finally:
            self.in_flight.leave(flight)

    async def _route(self, user_id: uuid.UUID) -> Route | Sandbox | None:
        read_at = time.monotonic()  # the route expires counting from before the read (see route_grace)
        row = await self.lifecycle.store.of_user(user_id)
        if row is None or row.state != "running" or row.handle is None or not row.app_token:
            return row
        endpoint = self.provider.endpoint(row.handle)
        token = row.app_token
        headers = (
            *endpoint.headers.items(),
            ("x-mastra-auth-token", token),
            ("Authorization", f"Bearer {token}"),
        )
        route = Route(
            Upstream.from_url(endpoint.base_url),
            headers,
            frozenset(name.lower() for name in (*self._dropped, *endpoint.headers)),
            row,
            read_at + self.config.route_cache_seconds,
        )
        self._routes[user_id] = route
        self.touch(user_id, row)  # cached: activity, forwarded through or not (see Lifecycle._outwait_routes)
        return route

    def _outgoing(self, request: web.Request, route: Route) -> tuple[UpstreamRequest, ResponseTap | None]:
        """The request for the sandbox (its credentials in place of the client's) and the tap its
        answer goes through, if any (Studio's pages, and the cloud's script in every page)."""
        outgoing = self.forwarder.build(request, route.upstream, drop=route.replaced)
        headers = outgoing.headers
        headers.extend(route.headers)
        tap: ResponseTap | None = None
        if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):  # a page
            if self._is_studio_page(request):
                headers["Accept-Encoding"] = "identity"
                tap = StudioTap(self._public(request), self.config.api_prefix, self.config.studio_path)
            if self.config.inject_html:
                offer_script(request, CLOUD_SCRIPT_PATH)
                page = page_tap(request, outgoing)
                if page is not None:
                    tap = page if tap is None else ChainedTaps(tap, page)
        return outgoing, tap

    def not_ready(
        self, request: web.Request, identity: Identity, row: Sandbox | None, *, check: bool = False
    ) -> web.StreamResponse:
        """The progress page (browsers) or 503 + Retry-After (API and WebSocket callers); a start is
        begun or joined unless the sandbox failed (then the page offers "Try again")."""
        failed = row is not None and row.state in ("error", "broken") and not check
        message = "Starting your sandbox"
        if not failed:
            try:
                watch = self.lifecycle.start(identity.user_id, check=check)
                message = watch.message
            except TooManyStarts as queued:
                self.m_refused.inc(("starts",))
                waiting = f"Many sandboxes are starting right now; you are number {queued.position} in line."
                if wants_html(request) and request.method == "GET" and not _is_websocket(request):
                    return progress_page(waiting, identity.csrf_token)  # its event stream keeps the place
                return error_response(request, 429, waiting, headers={"Retry-After": "5"})
        elif row is not None:
            message = row.error_message or "Your sandbox stopped."
        if wants_html(request) and request.method == "GET" and not _is_websocket(request):
            return progress_page(message, identity.csrf_token)
        if failed:
            return error_response(request, 503, message, headers={"Retry-After": "30"})
        return error_response(
            request, 503, "Your sandbox is starting; retry shortly.", headers={"Retry-After": "2"}
        )

    # activity --------------------------------------------------------------------------------------

    def touch(self, user_id: uuid.UUID, row: Sandbox | None = None) -> None:
        """Count activity for ``user_id`` (at most once a :data:`TOUCH_EVERY`: the idle timeout is
        minutes) and keep the provider's timer going (at most once an ``extend_every`` per sandbox)."""
        clock = time.monotonic()
        if clock - self._touched.get(user_id, -1e9) < TOUCH_EVERY:
            return
        self._touched[user_id] = clock
        self.activity.touch(user_id)
        if (
            row is not None
            and row.handle is not None
            and clock - self._extended.get(user_id, -1e9) > self.config.extend_every
        ):
            self._extended[user_id] = clock
            self.lifecycle.spawn(
                self.provider.extend(row.handle, self.config.idle_timeout + self.config.extend_every)
            )

    async def on_gateway_activity(self, batch: dict[uuid.UUID, float] | object) -> None:
        if isinstance(batch, dict):
            for user_id in batch:
                self.touch(user_id, self.cached_row(user_id))

    def on_user_changed(self, event: UserChanged) -> None:
        """A user disabled or signed out everywhere (through this process's directory): their open
        streams end now; other processes notice within ``stream_check_interval``."""
        if event.change in ("disabled", "signed_out"):
            cut = self.in_flight.cut(user_id=event.user.id)
            if cut:
                log.info("sandbox_router: cut %d open stream(s) of %s (%s)", cut, event.user.id, event.change)

    def cached_row(self, user_id: uuid.UUID) -> Sandbox | None:
        """The running sandbox this worker last routed ``user_id`` to, if any."""
        route = self._routes.get(user_id)
        return None if route is None else route.row

    def forget_route(self, user_id: uuid.UUID) -> None:
        self._routes.pop(user_id, None)

    async def _watch_streams(self) -> None:
        """Keep users with open streams active, and cut the streams of ended sessions and disabled users."""
        while True:
            await asyncio.sleep(self.config.stream_check_interval)
            for user_id in self.in_flight.users():
                self.activity.touch(user_id)
            for session_id, user_id in self.in_flight.sessions().items():
                try:
                    live = await session_is_live(self.app, session_id)
                except LookupError:
                    break  # no auth stage: no sessions to end
                except StoreError:
                    continue
                if not live:
                    cut = self.in_flight.cut(session_id=session_id)
                    log.info(
                        "sandbox_router: cut %d open stream(s) of user %s (signed out or disabled)",
                        cut,
                        user_id,
                    )

    # helpers ---------------------------------------------------------------------------------------

    def _is_studio_page(self, request: web.Request) -> bool:
        path = request.path
        return path == self.config.studio_path or path.startswith(self._studio_prefix)

    def _public(self, request: web.Request) -> URL:
        if self.public_url is not None:
            return self.public_url
        client = self.forwarder.client(request)
        return URL(f"{client.proto}://{client.host}")


def _on_error(request: web.Request, error: UpstreamError) -> web.StreamResponse:
    if error.kind == "connect":
        raise _Unreachable()
    return error_response(request, error.status, error.message)


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"
