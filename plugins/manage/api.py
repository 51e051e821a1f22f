"""``<prefix>/api/*``: the JSON twin of every page action, for admin tokens and for pages' scripts.
Errors come back as ``{"error": {"status", "title", "message"}}``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from http import HTTPStatus
from typing import Any

import aiohttp_jinja2
import orjson
from aiohttp import web

from proxy_core import open_event_stream

from .actions import Outcome
from .audit import entries_csv
from .filters import audit_filter
from .guard import ADMIN, Guard
from .listing import select
from .paths import SANDBOX_ACTIONS, path_id, twin_routes
from .rollouts import Rollout, Rollouts
from .sandboxes import SandboxView
from .services import Manage
from .templates import TEMPLATES
from .usage import grouping, period_from, usage_csv


def json_error(request: web.Request, status: int, message: str) -> web.Response:
    return web.json_response(
        {"error": {"status": status, "title": HTTPStatus(status).phrase, "message": message}},
        status=status,
        headers={"Cache-Control": "no-store"},
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class Api:
    def __init__(self, manage: Manage, guard: Guard) -> None:
        self.manage = manage
        self.guard = guard

    def routes(self, base: str) -> Sequence[web.RouteDef]:
        protect = self.guard.protect
        table = [
            *twin_routes(base, self),
            ("GET", f"{base}/me", self.me),
            ("GET", f"{base}/sandboxes/stream", self.stream),
            ("POST", f"{base}/sandboxes/restart-failed", self.restart_failed),
            ("GET", f"{base}/sandboxes/{{user_id}}/logs", self.logs),
            ("GET", f"{base}/rollouts/{{rollout_id}}/stream", self.rollout_stream),
        ]
        return [web.route(method, path, protect(handler, json_error)) for method, path, handler in table]

    @staticmethod
    def answer(outcome: Outcome) -> web.Response:
        if not outcome.ok:
            return web.json_response(
                {
                    "error": {
                        "status": outcome.status,
                        "title": HTTPStatus(outcome.status).phrase,
                        "message": outcome.message,
                    }
                },
                status=outcome.status,
            )
        return web.json_response(
            {"message": outcome.message, **outcome.data},
            status=outcome.status,
            headers={"Cache-Control": "no-store"},
        )

    async def me(self, request: web.Request) -> web.Response:
        admin = request[ADMIN]
        return web.json_response(
            {"id": str(admin.id), "email": admin.user.email, "via": "token" if admin.token else "session"}
        )

    async def users(self, request: web.Request) -> web.Response:
        people = await self.manage.people.list()
        return web.json_response(
            {
                "users": [
                    {
                        "id": str(p.user.id),
                        "email": p.user.email,
                        "name": p.user.name,
                        "role": p.user.role,
                        "disabled": p.user.disabled,
                        "key_prefix": p.key_prefix,
                        "key_state": p.key_state,
                        "last_sign_in": _iso(p.user.last_sign_in_at),
                        "last_seen": _iso(p.last_seen),
                    }
                    for p in people
                ]
            }
        )

    async def _body(self, request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="The body is not JSON.") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="The body must be a JSON object.")
        return body

    async def invite(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        email = body.get("email")
        if not isinstance(email, str) or not email.strip():
            return json_error(request, 400, 'Give the email to invite: {"email": "..."}.')
        return self.answer(await self.manage.actions(request.app).invite(request[ADMIN], request, email))

    async def set_role(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        role = body.get("role")
        if not isinstance(role, str):
            return json_error(request, 400, 'Give the role: {"role": "member" or "admin"}.')
        target = path_id(request, "user_id")
        return self.answer(await self.manage.actions(request.app).set_role(request[ADMIN], target, role))

    async def disable(self, request: web.Request) -> web.Response:
        actions = self.manage.actions(request.app)
        return self.answer(await actions.set_disabled(request[ADMIN], path_id(request, "user_id"), True))

    async def enable(self, request: web.Request) -> web.Response:
        actions = self.manage.actions(request.app)
        return self.answer(await actions.set_disabled(request[ADMIN], path_id(request, "user_id"), False))

    async def sign_out(self, request: web.Request) -> web.Response:
        return self.answer(
            await self.manage.actions(request.app).sign_out(request[ADMIN], path_id(request, "user_id"))
        )

    async def rotate_key(self, request: web.Request) -> web.Response:
        return self.answer(
            await self.manage.actions(request.app).rotate_key(request[ADMIN], path_id(request, "user_id"))
        )

    async def revoke_keys(self, request: web.Request) -> web.Response:
        actions = self.manage.actions(request.app)
        return self.answer(await actions.revoke_keys(request[ADMIN], path_id(request, "user_id")))

    async def audit(self, request: web.Request) -> web.StreamResponse:
        entries = await self.manage.audit.entries(audit_filter(request.query), self.manage.config.audit_limit)
        emails = await self.manage.people.emails()
        if request.query.get("format") == "csv":
            return web.Response(
                text=entries_csv(entries, emails),
                content_type="text/csv",
                headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
            )
        return web.json_response(
            {
                "entries": [
                    {
                        "at": e.at.isoformat(),
                        "actor": emails.get(e.actor_user_id) if e.actor_user_id else None,
                        "action": e.action,
                        "target": emails.get(e.target_user_id) if e.target_user_id else None,
                        "result": e.result,
                        "detail": {k: v for k, v in e.detail.items() if k != "result"},
                    }
                    for e in entries
                ]
            }
        )

    async def usage(self, request: web.Request) -> web.StreamResponse:
        try:
            period = period_from(request.query)
        except ValueError as exc:
            return json_error(request, 400, str(exc))
        view = await self.manage.usage(request.app, period, grouping(request.query))
        emails = await self.manage.people.emails()
        if request.query.get("format") == "csv":
            return web.Response(
                text=usage_csv(view, emails),
                content_type="text/csv",
                headers={"Content-Disposition": 'attachment; filename="usage.csv"'},
            )
        return web.json_response(
            {
                "since": view.period.since.isoformat(),
                "until": view.period.until.isoformat(),
                "by": view.by,
                "users": [
                    {
                        "email": u.email,
                        "requests": u.requests,
                        "tokens_in": u.tokens_in,
                        "tokens_out": u.tokens_out,
                        "cost_usd": round(u.cost_usd, 6),
                        "unpriced_requests": u.unpriced,
                        "budget_usd": u.budget.limit_usd,
                        "spent_this_month_usd": round(u.budget.spent_usd, 6),
                        "budget_status": u.budget.status,
                        "sandbox_hours": None if u.hours is None else round(u.hours, 6),
                    }
                    for u in view.users
                ],
                "lines": [
                    {
                        "email": emails.get(line.user_id, str(line.user_id)),
                        view.by: line.group,
                        "requests": line.requests,
                        "tokens_in": line.tokens_in,
                        "tokens_out": line.tokens_out,
                        "cost_usd": round(line.cost_usd, 6),
                    }
                    for line in view.lines
                ],
                "daily_cost_usd": dict(view.daily_cost),
            }
        )

    async def sandboxes(self, request: web.Request) -> web.Response:
        views = select(await self.manage.sandbox_views(request.app), request.query)
        target = await self.manage.target(request.app)
        return web.json_response({"target_version": target, "sandboxes": [v.as_json() for v in views]})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """The sandbox list (filtered like ``GET sandboxes``) as server-sent events: an
        ``event: sandboxes`` with the whole list whenever it changes. The admin's role is checked
        again every round: a demoted admin's stream ends."""
        admin = request[ADMIN]
        response = await open_event_stream(request)
        last = b""
        quiet = 0.0
        html = request.query.get("rows") == "html"
        interval = self.manage.config.live_interval
        while await self.guard.still_admin(admin):
            views = select(await self.manage.sandbox_views(request.app), request.query)
            body = orjson.dumps(self._rows(request, views) if html else [v.as_json() for v in views])
            if body != last:
                await response.write(b"event: sandboxes\ndata: " + body + b"\n\n")
                last, quiet = body, 0.0
            elif quiet >= 15:
                await response.write(b": keep-alive\n\n")
                quiet = 0.0
            await asyncio.sleep(interval)
            quiet += interval
        return response

    def _rows(self, request: web.Request, views: list[SandboxView]) -> dict[str, Any]:
        """The rows as the page renders them (for the page's own live table)."""
        back = request.query.get("back", "sandboxes")
        desk = self.manage.desk(request.app)
        context = {
            "views": views,
            "prefix": self.manage.config.path_prefix,
            "csrf_token": request[ADMIN].csrf_token,
            "back": back if back in ("sandboxes", "recovery") else "sandboxes",
            "empty": "Nothing needs attention." if back == "recovery" else "No sandbox matches.",
            "keeps_files": bool(desk and desk.keeps_files),
        }
        html = aiohttp_jinja2.render_string("sandbox_rows.html", request, context, app_key=TEMPLATES)
        return {"count": len(views), "html": html}

    async def sandbox_action(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action not in SANDBOX_ACTIONS:
            return json_error(request, 404, f"No sandbox action {action!r}.")
        actions = self.manage.actions(request.app)
        if action == "reprovision":
            keep = (await self._body(request)).get("keep_files", True)
            if not isinstance(keep, bool):
                return json_error(request, 400, "keep_files is true or false.")
            return self.answer(
                await actions.reprovision(request[ADMIN], path_id(request, "user_id"), keep_files=keep)
            )
        return self.answer(await actions.sandbox(request[ADMIN], path_id(request, "user_id"), action))

    async def logs(self, request: web.Request) -> web.Response:
        actions = self.manage.actions(request.app)
        return self.answer(await actions.sandbox(request[ADMIN], path_id(request, "user_id"), "logs"))

    async def run_command(self, request: web.Request) -> web.Response:
        command = (await self._body(request)).get("command")
        if not isinstance(command, str):
            return json_error(request, 400, 'Give the command: {"command": "ls"}.')
        actions = self.manage.actions(request.app)
        return self.answer(await actions.run_command(request[ADMIN], path_id(request, "user_id"), command))

    async def restart_failed(self, request: web.Request) -> web.Response:
        views = await self.manage.sandbox_views(request.app)
        targets = [(v.user_id, v.state) for v in views if v.needs_attention]
        return self.answer(await self.manage.actions(request.app).restart_failed(request[ADMIN], targets))

    async def roll_back(self, request: web.Request) -> web.Response:
        return self.answer(
            await self.manage.actions(request.app).roll_back(request[ADMIN], path_id(request, "user_id"))
        )

    async def updates(self, request: web.Request) -> web.Response:
        available, target, behind = await self.manage.updates(request.app)
        return web.json_response(
            {
                "available_version": available,
                "target_version": target,
                "outdated": len(behind),
                "default_concurrency": self.manage.config.rollout_concurrency,
                "rollouts": [_rollout_json(r) for r in await Rollouts(self.manage.db).recent()],
            }
        )

    async def set_target(self, request: web.Request) -> web.Response:
        version = (await self._body(request)).get("version")
        if not isinstance(version, str):
            return json_error(request, 400, 'Give the version: {"version": "0.3.1"}.')
        return self.answer(await self.manage.actions(request.app).set_target(request[ADMIN], version))

    async def start_rollout(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        concurrency = body.get("concurrency", self.manage.config.rollout_concurrency)
        wake = body.get("wake_paused", False)
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or not isinstance(wake, bool):
            return json_error(request, 400, "concurrency is a number and wake_paused true or false.")
        available, target, behind = await self.manage.updates(request.app)
        actions = self.manage.actions(request.app)
        return self.answer(
            await actions.start_rollout(request[ADMIN], target, available, behind, concurrency, wake)
        )

    async def rollout(self, request: web.Request) -> web.Response:
        rollout_id = path_id(request, "rollout_id")
        found = await Rollouts(self.manage.db).get(rollout_id)
        if found is None:
            return json_error(request, 404, "No such rollout.")
        items = await self.manage.rollout_rows(request.app, rollout_id)
        return web.json_response({**_rollout_json(found), "sandboxes": items})

    async def rollout_stream(self, request: web.Request) -> web.StreamResponse:
        """The rollout and each sandbox's step, as server-sent events whenever they change."""
        admin = request[ADMIN]
        rollout_id = path_id(request, "rollout_id")
        store = Rollouts(self.manage.db)
        if await store.get(rollout_id) is None:
            return json_error(request, 404, "No such rollout.")
        response = await open_event_stream(request)
        last = b""
        html = request.query.get("rows") == "html"
        while await self.guard.still_admin(admin):
            found = await store.get(rollout_id)
            if found is None:
                break
            items = await self.manage.rollout_rows(request.app, rollout_id)
            payload: dict[str, Any] = {**_rollout_json(found), "sandboxes": items}
            if html:
                payload["html"] = aiohttp_jinja2.render_string(
                    "rollout_rows.html", request, {"items": items}, app_key=TEMPLATES
                )
            body = orjson.dumps(payload)
            if body != last:
                await response.write(b"event: rollout\ndata: " + body + b"\n\n")
                last = body
            await asyncio.sleep(self.manage.config.live_interval)
        return response

    async def control_rollout(self, request: web.Request) -> web.Response:
        rollout_id = path_id(request, "rollout_id")
        command = request.match_info["command"]
        actions = self.manage.actions(request.app)
        return self.answer(await actions.control_rollout(request[ADMIN], rollout_id, command))

    async def tokens(self, request: web.Request) -> web.Response:
        emails = await self.manage.people.emails()
        return web.json_response(
            {
                "tokens": [
                    {
                        "id": str(t.id),
                        "name": t.name,
                        "prefix": t.prefix,
                        "owner": emails.get(t.user_id, str(t.user_id)),
                        "created_at": _iso(t.created_at),
                        "last_used_at": _iso(t.last_used_at),
                        "revoked_at": _iso(t.revoked_at),
                    }
                    for t in await self.manage.tokens.list()
                ]
            }
        )

    async def create_token(self, request: web.Request) -> web.Response:
        name = (await self._body(request)).get("name")
        if not isinstance(name, str) or not name.strip():
            return json_error(request, 400, 'Name the token: {"name": "deploy script"}.')
        return self.answer(await self.manage.actions(request.app).create_token(request[ADMIN], name))

    async def revoke_token(self, request: web.Request) -> web.Response:
        token_id = path_id(request, "token_id")
        return self.answer(await self.manage.actions(request.app).revoke_token(request[ADMIN], token_id))


def _rollout_json(rollout: Rollout) -> dict[str, Any]:
    return {
        "id": str(rollout.id),
        "target_version": rollout.target_version,
        "concurrency": rollout.concurrency,
        "wake_paused": rollout.wake_paused,
        "state": rollout.state,
        "created_at": rollout.created_at.isoformat(),
        "finished_at": _iso(rollout.finished_at),
    }
