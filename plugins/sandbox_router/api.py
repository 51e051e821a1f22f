"""``/api/sandbox/*``: the progress page's status and event stream, "try again", the Studio tab's
keep-alive ping, the healer's reports and the project export. Declared as stage routes, so ``auth``
guards them (``/api/sandbox/heal`` must be in auth's ``public_paths``: the healer holds the sandbox's
virtual key, not a session)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

import orjson
from aiohttp import web

from plugins.auth import IDENTITY, Identity, UserDirectory, require_csrf
from plugins.vkey import KeyRejected, check_key
from proxy_core import error_response, open_event_stream
from proxy_core.db import StoreError

from .config import SandboxRouterConfig
from .export import ExportRefused, export_project, find_user
from .lifecycle import Lifecycle, TooManyStarts
from .providers.base import ProviderError
from .store import HEALER_STATUSES, Sandbox
from .studio import CLOUD_SCRIPT


class Router(Protocol):
    """What these routes need of the stage (a protocol: the stage imports this module)."""

    lifecycle: Lifecycle
    users: UserDirectory
    config: SandboxRouterConfig

    def touch(self, user_id: uuid.UUID, row: Sandbox | None = None) -> None: ...

    def cached_row(self, user_id: uuid.UUID) -> Sandbox | None: ...

    def forget_route(self, user_id: uuid.UUID) -> None: ...


_POLL = 0.25
CLOUD_SCRIPT_PATH = "/api/sandbox/cloud.js"
_MAX_MESSAGE = 2000


def routes(stage: Router) -> Sequence[web.AbstractRouteDef]:
    async def status(request: web.Request) -> web.StreamResponse:
        identity = _identity(request)
        row = await stage.lifecycle.store.of_user(identity.user_id)
        state = {**describe(stage, identity.user_id, row), "csrf_token": identity.csrf_token}
        return web.json_response(state, headers={"Cache-Control": "no-store"})

    async def events(request: web.Request) -> web.StreamResponse:
        identity = _identity(request)
        response = await open_event_stream(request)
        last: Any = None
        while True:
            row = await stage.lifecycle.store.of_user(identity.user_id)
            state = describe(stage, identity.user_id, row)
            if state["phase"] == "idle":
                try:
                    stage.lifecycle.start(identity.user_id)
                except TooManyStarts as queued:
                    state["position"] = queued.position
                    state["message"] = (
                        f"Many sandboxes are starting right now; you are number {queued.position} in line."
                    )
            event = {"ready": "ready", "failed": "failed"}.get(state["phase"], "progress")
            if state != last:
                await response.write(f"event: {event}\ndata: {orjson.dumps(state).decode()}\n\n".encode())
                last = state
            if event != "progress":
                return response
            watch = stage.lifecycle.watches.get(identity.user_id)
            if watch is not None and not watch.done.is_set():  # ours: told the moment it ends
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(watch.done.wait(), _POLL)
            else:  # another worker's or replica's start: the store tells
                await asyncio.sleep(_POLL)

    async def retry(request: web.Request) -> web.StreamResponse:
        identity = _identity(request)
        try:
            await require_csrf(request)
        except web.HTTPForbidden as refused:
            return error_response(request, 403, refused.reason)
        try:
            stage.lifecycle.start(identity.user_id)
        except TooManyStarts:
            return error_response(
                request, 429, "Many sandboxes are starting right now.", headers={"Retry-After": "5"}
            )
        return web.json_response({"started": True}, status=202)

    async def ping(request: web.Request) -> web.StreamResponse:
        identity = _identity(request)
        stage.touch(identity.user_id, stage.cached_row(identity.user_id))
        return web.Response(status=204)

    async def heal(request: web.Request) -> web.StreamResponse:
        user_id = await _sandbox_key_owner(request)
        if user_id is None:
            return error_response(request, 401, "A sandbox's virtual key is required.")
        try:
            report = await request.json(loads=orjson.loads)
        except ValueError:
            return error_response(request, 400, "The body must be JSON.")
        if not isinstance(report, dict) or report.get("status") not in HEALER_STATUSES:
            return error_response(request, 400, f"status must be one of {', '.join(HEALER_STATUSES)}.")
        message = report.get("message", "")
        if not isinstance(message, str):
            return error_response(request, 400, "message must be a string.")
        message = message[:_MAX_MESSAGE]
        store = stage.lifecycle.store
        row = await store.of_user(user_id)
        if row is None:
            return error_response(request, 404, "This key's owner has no sandbox.")
        await store.set_healer(user_id, report["status"], message)
        if report["status"] == "broken" and row.state == "running":
            await store.set_state(user_id, "broken", message or "The healer gave up.")
            stage.forget_route(user_id)
        elif report["status"] == "ready" and row.state == "broken":
            await store.set_state(user_id, "running")
        return web.Response(status=204)

    async def export(request: web.Request) -> web.StreamResponse:
        identity = _identity(request)
        user_id = identity.user_id
        wanted = request.query.get("user")
        if wanted:
            if not identity.is_admin:
                return error_response(request, 403, "Only administrators export other users' projects.")
            found = await find_user(stage.users, wanted)
            if found is None:
                return error_response(request, 404, "No such user with a sandbox.")
            user_id = found
        response = web.StreamResponse(
            headers={
                "Content-Disposition": 'attachment; filename="shmastra-project.tar.gz"',
                "Cache-Control": "no-store",
            }
        )
        response.content_type = "application/gzip"
        try:
            async with export_project(stage.lifecycle, user_id, stage.config.export_limit) as chunks:
                await response.prepare(request)
                async for chunk in chunks:
                    await response.write(chunk)  # waits while the client is slower than the sandbox
        except ExportRefused as exc:
            return error_response(request, 404, str(exc))
        except ProviderError as exc:
            if response.prepared:
                raise  # too late for an error page: the download is cut short and fails
            return error_response(request, 503, exc.message, headers={"Retry-After": "10"})
        await response.write_eof()
        return response

    async def _sandbox_key_owner(request: web.Request) -> uuid.UUID | None:
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        try:
            record = await check_key(request.app, key.strip())
        except LookupError:
            return None  # no gateway, no virtual keys to check
        except KeyRejected:
            return None
        return record.user_id

    def guarded(handler: Any) -> Any:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                response: web.StreamResponse = await handler(request)
                return response
            except StoreError as exc:
                return error_response(request, 503, f"The cloud cannot reach its database: {exc.message}")

        return run

    async def cloud_script(request: web.Request) -> web.StreamResponse:
        return web.Response(
            text=CLOUD_SCRIPT,
            content_type="text/javascript",
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    return [
        web.get(CLOUD_SCRIPT_PATH, cloud_script),
        web.get("/api/sandbox/status", guarded(status)),
        web.get("/api/sandbox/events", guarded(events)),
        web.post("/api/sandbox/retry", guarded(retry)),
        web.post("/api/sandbox/ping", guarded(ping)),
        web.post("/api/sandbox/heal", guarded(heal)),
        web.get("/api/sandbox/export", guarded(export)),
    ]


def describe(stage: Router, user_id: uuid.UUID, row: Sandbox | None) -> dict[str, Any]:
    """What the progress page shows: ``phase`` is ``starting``, ``ready``, ``failed`` or ``idle``."""
    watch = stage.lifecycle.watches.get(user_id)
    healer = {
        "healer_status": row.healer_status if row else None,
        "healer_message": row.healer_message if row else None,
    }
    if watch is not None and not watch.done.is_set():
        return {
            "phase": "starting",
            "state": row.state if row else "provisioning",
            "step": watch.step,
            "percent": watch.percent,
            "message": watch.message,
            "position": watch.position,
            **healer,
        }
    if row is None or row.state == "paused":
        return {
            "phase": "idle",
            "state": row.state if row else None,
            "percent": 0,
            "message": "Starting your sandbox",
            **healer,
        }
    if row.state == "running":
        return {"phase": "ready", "state": "running", "percent": 100, "message": "Ready", **healer}
    if row.state in ("error", "broken"):
        return {
            "phase": "failed",
            "state": row.state,
            "percent": 0,
            "message": "Stopped",
            "error": row.error_message or "The sandbox stopped.",
            **healer,
        }
    return {
        "phase": "starting",
        "state": row.state,
        "step": row.progress_step,
        "percent": row.progress_percent or 0,
        "message": row.progress_step or "Starting your sandbox",
        "position": None,
        **healer,
    }


def _identity(request: web.Request) -> Identity:
    identity: Identity | None = request.get(IDENTITY)
    if identity is None:
        raise web.HTTPUnauthorized(text='{"error": "Sign in first."}', content_type="application/json")
    return identity
