"""``<prefix>/*``: the server-rendered pages. Every form posts to a page route that runs the same
action as the API, then redirects back with the result (or, for a new key or token, shows it once)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from yarl import URL

from plugins.auth import ROLES, auth_stage

from .actions import Outcome
from .audit import entries_csv
from .chart import bar_chart
from .filters import audit_filter
from .guard import ADMIN, Guard
from .services import Manage
from .templates import TEMPLATES
from .usage import GROUPINGS, PRESETS, grouping, period_from, usage_csv

NO_STORE = {"Cache-Control": "no-store"}


def not_allowed(request: web.Request, status: int, message: str) -> web.Response:
    response = aiohttp_jinja2.render_template(
        "not_allowed.html", request, {"message": message, "status": status}, app_key=TEMPLATES, status=status
    )
    response.headers.update(NO_STORE)
    return response


class Pages:
    def __init__(self, manage: Manage, guard: Guard) -> None:
        self.manage = manage
        self.guard = guard
        self.prefix = manage.config.path_prefix

    def routes(self, prefix: str) -> Sequence[web.RouteDef]:
        user = f"{prefix}/users/{{user_id}}"
        table = [
            ("GET", prefix, self.home),
            ("GET", f"{prefix}/users", self.users),
            ("POST", f"{prefix}/users", self.invite),
            ("POST", f"{user}/role", self.set_role),
            ("POST", f"{user}/disable", self.disable),
            ("POST", f"{user}/enable", self.enable),
            ("POST", f"{user}/sign-out", self.sign_out),
            ("POST", f"{user}/key/rotate", self.rotate_key),
            ("POST", f"{user}/key/revoke", self.revoke_keys),
            ("GET", f"{prefix}/audit", self.audit),
            ("GET", f"{prefix}/audit.csv", self.audit_csv),
            ("GET", f"{prefix}/usage", self.usage),
            ("GET", f"{prefix}/usage.csv", self.usage_csv),
            ("GET", f"{prefix}/tokens", self.tokens),
            ("POST", f"{prefix}/tokens", self.create_token),
            ("POST", f"{prefix}/tokens/{{token_id}}/revoke", self.revoke_token),
        ]
        return [web.route(method, path, self.guard.protect(h, not_allowed)) for method, path, h in table]

    def render(
        self, request: web.Request, name: str, context: Mapping[str, Any], status: int = 200
    ) -> web.Response:
        admin = request[ADMIN]
        base = {
            "prefix": self.prefix,
            "me": admin.user,
            "csrf_token": admin.csrf_token,
            "section": name.removesuffix(".html"),
            "flash": request.query.get("msg"),
            "flash_ok": request.query.get("ok") == "1",
        }
        response = aiohttp_jinja2.render_template(
            name, request, {**base, **context}, app_key=TEMPLATES, status=status
        )
        response.headers.update(NO_STORE)
        return response

    def back(self, page: str, outcome: Outcome) -> web.Response:
        location = URL(f"{self.prefix}/{page}").with_query(msg=outcome.message, ok="1" if outcome.ok else "0")
        raise web.HTTPSeeOther(location)

    async def home(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{self.prefix}/users")

    async def users(self, request: web.Request, extra: Mapping[str, Any] | None = None) -> web.Response:
        people = await self.manage.people(request.app).list()
        provider = auth_stage(request.app).config.provider
        context = {"people": people, "roles": ROLES, "can_invite": provider == "email_code", "secret": None}
        return self.render(request, "users.html", {**context, **(extra or {})})

    async def _form(self, request: web.Request) -> Mapping[str, str]:
        form = await request.post()
        return {k: v for k, v in form.items() if isinstance(v, str)}

    async def invite(self, request: web.Request) -> web.Response:
        email = (await self._form(request)).get("email", "")
        provider = auth_stage(request.app).config.provider
        return self.back(
            "users", await self.manage.actions(request.app).invite(request[ADMIN], email, provider)
        )

    async def set_role(self, request: web.Request) -> web.Response:
        role = (await self._form(request)).get("role", "")
        outcome = await self.manage.actions(request.app).set_role(request[ADMIN], _user_id(request), role)
        return self.back("users", outcome)

    async def disable(self, request: web.Request) -> web.Response:
        actions = self.manage.actions(request.app)
        outcome = await actions.set_disabled(request[ADMIN], _user_id(request), True)
        return self.back("users", outcome)

    async def enable(self, request: web.Request) -> web.Response:
        outcome = await self.manage.actions(request.app).set_disabled(
            request[ADMIN], _user_id(request), False
        )
        return self.back("users", outcome)

    async def sign_out(self, request: web.Request) -> web.Response:
        return self.back(
            "users", await self.manage.actions(request.app).sign_out(request[ADMIN], _user_id(request))
        )

    async def rotate_key(self, request: web.Request) -> web.Response:
        outcome = await self.manage.actions(request.app).rotate_key(request[ADMIN], _user_id(request))
        if not outcome.ok:
            return self.back("users", outcome)
        return await self.users(
            request, {"secret": outcome.secret, "flash": outcome.message, "flash_ok": True}
        )

    async def revoke_keys(self, request: web.Request) -> web.Response:
        outcome = await self.manage.actions(request.app).revoke_keys(request[ADMIN], _user_id(request))
        return self.back("users", outcome)

    async def audit(self, request: web.Request) -> web.Response:
        entries = await self.manage.audit.entries(audit_filter(request.query), self.manage.config.audit_limit)
        return self.render(
            request,
            "audit.html",
            {
                "entries": entries,
                "emails": await self.manage.people(request.app).emails(),
                "actions": await self.manage.audit.actions(),
                "query": request.query,
                "csv_url": URL(f"{self.prefix}/audit.csv").with_query(request.query),
            },
        )

    async def audit_csv(self, request: web.Request) -> web.Response:
        entries = await self.manage.audit.entries(audit_filter(request.query), self.manage.config.audit_limit)
        emails = await self.manage.people(request.app).emails()
        return web.Response(
            text=entries_csv(entries, emails),
            content_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="audit.csv"', **NO_STORE},
        )

    async def usage(self, request: web.Request) -> web.Response:
        try:
            period = period_from(request.query)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        by = grouping(request.query)
        view = await self.manage.usage(request.app, period, by)
        emails = await self.manage.people(request.app).emails()
        top = view.users[:20]
        return self.render(
            request,
            "usage.html",
            {
                "view": view,
                "emails": emails,
                "query": request.query,
                "groupings": GROUPINGS,
                "presets": ["month", *PRESETS],
                "cost_chart": bar_chart(
                    [(day[5:], cost) for day, cost in view.daily_cost], title="Cost per day (USD)", unit="$"
                ),
                "tokens_chart": bar_chart(
                    [(u.email.split("@")[0], float(u.tokens_in + u.tokens_out)) for u in top],
                    title="Tokens per user in the period",
                ),
                "csv_url": URL(f"{self.prefix}/usage.csv").with_query(request.query),
            },
        )

    async def usage_csv(self, request: web.Request) -> web.Response:
        try:
            period = period_from(request.query)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        view = await self.manage.usage(request.app, period, grouping(request.query))
        emails = await self.manage.people(request.app).emails()
        return web.Response(
            text=usage_csv(view, emails),
            content_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="usage.csv"', **NO_STORE},
        )

    async def tokens(self, request: web.Request, extra: Mapping[str, Any] | None = None) -> web.Response:
        context = {
            "tokens": await self.manage.tokens.list(),
            "emails": await self.manage.people(request.app).emails(),
            "secret": None,
        }
        return self.render(request, "tokens.html", {**context, **(extra or {})})

    async def create_token(self, request: web.Request) -> web.Response:
        name = (await self._form(request)).get("name", "")
        outcome = await self.manage.actions(request.app).create_token(request[ADMIN], name)
        if not outcome.ok:
            return self.back("tokens", outcome)
        return await self.tokens(
            request, {"secret": outcome.secret, "flash": outcome.message, "flash_ok": True}
        )

    async def revoke_token(self, request: web.Request) -> web.Response:
        token_id = _uuid(request.match_info["token_id"])
        return self.back(
            "tokens", await self.manage.actions(request.app).revoke_token(request[ADMIN], token_id)
        )


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise web.HTTPNotFound(text="No such id.") from None


def _user_id(request: web.Request) -> uuid.UUID:
    return _uuid(request.match_info["user_id"])
