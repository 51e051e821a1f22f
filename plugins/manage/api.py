"""``<prefix>/api/*``: the JSON twin of every page action, for admin tokens and for pages' scripts.
Errors come back as ``{"error": {"status", "title", "message"}}``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from http import HTTPStatus
from typing import Any

from aiohttp import web

from plugins.auth import auth_stage

from .actions import Outcome
from .audit import entries_csv
from .filters import audit_filter
from .guard import ADMIN, Guard
from .services import Manage
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
        user = f"{base}/users/{{user_id}}"
        table = [
            ("GET", f"{base}/me", self.me),
            ("GET", f"{base}/users", self.users),
            ("POST", f"{base}/users", self.invite),
            ("POST", f"{user}/role", self.set_role),
            ("POST", f"{user}/disable", self.disable),
            ("POST", f"{user}/enable", self.enable),
            ("POST", f"{user}/sign-out", self.sign_out),
            ("POST", f"{user}/key/rotate", self.rotate_key),
            ("POST", f"{user}/key/revoke", self.revoke_keys),
            ("GET", f"{base}/audit", self.audit),
            ("GET", f"{base}/usage", self.usage),
            ("GET", f"{base}/tokens", self.tokens),
            ("POST", f"{base}/tokens", self.create_token),
            ("POST", f"{base}/tokens/{{token_id}}/revoke", self.revoke_token),
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
        people = await self.manage.people(request.app).list()
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
        provider = auth_stage(request.app).config.provider
        return self.answer(await self.manage.actions(request.app).invite(request[ADMIN], email, provider))

    async def set_role(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        role = body.get("role")
        if not isinstance(role, str):
            return json_error(request, 400, 'Give the role: {"role": "member" or "admin"}.')
        target = _user_id(request)
        return self.answer(await self.manage.actions(request.app).set_role(request[ADMIN], target, role))

    async def disable(self, request: web.Request) -> web.Response:
        actions = self.manage.actions(request.app)
        return self.answer(await actions.set_disabled(request[ADMIN], _user_id(request), True))

    async def enable(self, request: web.Request) -> web.Response:
        actions = self.manage.actions(request.app)
        return self.answer(await actions.set_disabled(request[ADMIN], _user_id(request), False))

    async def sign_out(self, request: web.Request) -> web.Response:
        return self.answer(await self.manage.actions(request.app).sign_out(request[ADMIN], _user_id(request)))

    async def rotate_key(self, request: web.Request) -> web.Response:
        return self.answer(
            await self.manage.actions(request.app).rotate_key(request[ADMIN], _user_id(request))
        )

    async def revoke_keys(self, request: web.Request) -> web.Response:
        actions = self.manage.actions(request.app)
        return self.answer(await actions.revoke_keys(request[ADMIN], _user_id(request)))

    async def audit(self, request: web.Request) -> web.StreamResponse:
        entries = await self.manage.audit.entries(audit_filter(request.query), self.manage.config.audit_limit)
        emails = await self.manage.people(request.app).emails()
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
        emails = await self.manage.people(request.app).emails()
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
                        "sandbox_hours": None if u.hours is None else round(u.hours, 3),
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

    async def tokens(self, request: web.Request) -> web.Response:
        emails = await self.manage.people(request.app).emails()
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
        token_id = _uuid(request.match_info["token_id"])
        return self.answer(await self.manage.actions(request.app).revoke_token(request[ADMIN], token_id))


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise web.HTTPNotFound(text="No such id.") from None


def _user_id(request: web.Request) -> uuid.UUID:
    return _uuid(request.match_info["user_id"])
