"""``<prefix>/*``: the server-rendered pages. Every form posts to a page route that runs the same
action as the API, then redirects back with the result (or, for a new key or token, shows it once)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from yarl import URL

from plugins.auth import ROLES, sign_in_method
from plugins.sandbox_router import STATES

from .actions import Outcome
from .audit import entries_csv
from .chart import bar_chart
from .filters import audit_filter
from .guard import ADMIN, Guard
from .listing import SORTS, select
from .paths import SANDBOX_ACTIONS, path_id, twin_routes
from .rollouts import Rollouts
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
        table = [
            *twin_routes(prefix, self),
            ("GET", prefix, self.home),
            ("GET", f"{prefix}/audit.csv", self.audit_csv),
            ("GET", f"{prefix}/usage.csv", self.usage_csv),
            ("GET", f"{prefix}/recovery", self.recovery),
            ("POST", f"{prefix}/recovery/restart-failed", self.restart_failed),
            ("GET", f"{prefix}/sandboxes/{{user_id}}", self.sandbox),
        ]
        return [web.route(method, path, self.guard.protect(h, not_allowed)) for method, path, h in table]

    def render(
        self, request: web.Request, name: str, context: Mapping[str, Any], status: int = 200
    ) -> web.Response:
        admin = request[ADMIN]
        desk = self.manage.desk(request.app)  # what a reprovision's confirmation says
        base = {
            "prefix": self.prefix,
            "me": admin.user,
            "csrf_token": admin.csrf_token,
            "section": context.get("section_key", name.removesuffix(".html")),
            "flash": request.query.get("msg"),
            "flash_ok": request.query.get("ok") == "1",
            "keeps_files": bool(desk and desk.keeps_files),
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
        people = await self.manage.people.list()
        provider = sign_in_method(request.app)
        context = {"people": people, "roles": ROLES, "can_invite": provider == "email_code", "secret": None}
        return self.render(request, "users.html", {**context, **(extra or {})})

    async def _form(self, request: web.Request) -> Mapping[str, str]:
        form = await request.post()
        return {k: v for k, v in form.items() if isinstance(v, str)}

    async def invite(self, request: web.Request) -> web.Response:
        email = (await self._form(request)).get("email", "")
        return self.back(
            "users", await self.manage.actions(request.app).invite(request[ADMIN], request, email)
        )

    async def set_role(self, request: web.Request) -> web.Response:
        role = (await self._form(request)).get("role", "")
        outcome = await self.manage.actions(request.app).set_role(
            request[ADMIN], path_id(request, "user_id"), role
        )
        return self.back("users", outcome)

    async def disable(self, request: web.Request) -> web.Response:
        actions = self.manage.actions(request.app)
        outcome = await actions.set_disabled(request[ADMIN], path_id(request, "user_id"), True)
        return self.back("users", outcome)

    async def enable(self, request: web.Request) -> web.Response:
        outcome = await self.manage.actions(request.app).set_disabled(
            request[ADMIN], path_id(request, "user_id"), False
        )
        return self.back("users", outcome)

    async def sign_out(self, request: web.Request) -> web.Response:
        return self.back(
            "users",
            await self.manage.actions(request.app).sign_out(request[ADMIN], path_id(request, "user_id")),
        )

    async def rotate_key(self, request: web.Request) -> web.Response:
        outcome = await self.manage.actions(request.app).rotate_key(
            request[ADMIN], path_id(request, "user_id")
        )
        if not outcome.ok:
            return self.back("users", outcome)
        return await self.users(
            request, {"secret": outcome.secret, "flash": outcome.message, "flash_ok": True}
        )

    async def revoke_keys(self, request: web.Request) -> web.Response:
        outcome = await self.manage.actions(request.app).revoke_keys(
            request[ADMIN], path_id(request, "user_id")
        )
        return self.back("users", outcome)

    async def audit(self, request: web.Request) -> web.Response:
        entries = await self.manage.audit.entries(audit_filter(request.query), self.manage.config.audit_limit)
        return self.render(
            request,
            "audit.html",
            {
                "entries": entries,
                "emails": await self.manage.people.emails(),
                "actions": await self.manage.audit.actions(),
                "query": request.query,
                "csv_url": URL(f"{self.prefix}/audit.csv").with_query(request.query),
            },
        )

    async def audit_csv(self, request: web.Request) -> web.Response:
        entries = await self.manage.audit.entries(audit_filter(request.query), self.manage.config.audit_limit)
        emails = await self.manage.people.emails()
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
        emails = await self.manage.people.emails()
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
        emails = await self.manage.people.emails()
        return web.Response(
            text=usage_csv(view, emails),
            content_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="usage.csv"', **NO_STORE},
        )

    async def sandboxes(self, request: web.Request) -> web.Response:
        views = select(await self.manage.sandbox_views(request.app), request.query)
        return self.render(
            request,
            "sandboxes.html",
            {
                "views": views,
                "query": request.query,
                "states": STATES,
                "sorts": SORTS,
                "target": await self.manage.target(request.app),
                "has_router": self.manage.desk(request.app) is not None,
                "stream_url": URL(f"{self.prefix}/api/sandboxes/stream").with_query(request.query),
            },
        )

    async def recovery(self, request: web.Request) -> web.Response:
        views = select(
            await self.manage.sandbox_views(request.app), {"state": "attention", "sort": "activity"}
        )
        return self.render(
            request,
            "recovery.html",
            {
                "views": views,
                "has_router": self.manage.desk(request.app) is not None,
                "stream_url": URL(f"{self.prefix}/api/sandboxes/stream").with_query(state="attention"),
            },
        )

    async def restart_failed(self, request: web.Request) -> web.Response:
        views = await self.manage.sandbox_views(request.app)
        targets = [(v.user_id, v.state) for v in views if v.needs_attention]
        return self.back(
            "recovery", await self.manage.actions(request.app).restart_failed(request[ADMIN], targets)
        )

    async def sandbox(self, request: web.Request, output: Mapping[str, Any] | None = None) -> web.Response:
        user_id = path_id(request, "user_id")
        views = [v for v in await self.manage.sandbox_views(request.app) if v.user_id == user_id]
        if not views:
            raise web.HTTPNotFound(text="This user has no sandbox.")
        logs = await self.manage.actions(request.app).sandbox(request[ADMIN], user_id, "logs")
        return self.render(
            request,
            "sandbox.html",
            {"view": views[0], "logs": logs, "output": output, "section_key": "sandboxes"},
        )

    async def run_command(self, request: web.Request) -> web.Response:
        command = (await self._form(request)).get("command", "")
        outcome = await self.manage.actions(request.app).run_command(
            request[ADMIN], path_id(request, "user_id"), command
        )
        return await self.sandbox(request, {"command": command, "outcome": outcome})

    async def sandbox_action(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action not in SANDBOX_ACTIONS:
            raise web.HTTPNotFound(text="No such action.")
        back = (await self._form(request)).get("back", "sandboxes")
        outcome = await self.manage.actions(request.app).sandbox(
            request[ADMIN], path_id(request, "user_id"), action
        )
        return self.back(back if back in BACK_PAGES else "sandboxes", outcome)

    async def roll_back(self, request: web.Request) -> web.Response:
        outcome = await self.manage.actions(request.app).roll_back(
            request[ADMIN], path_id(request, "user_id")
        )
        return self.back("recovery", outcome)

    async def updates(self, request: web.Request) -> web.Response:
        available, target, behind = await self.manage.updates(request.app)
        return self.render(
            request,
            "updates.html",
            {
                "available": available,
                "target": target,
                "outdated": len(behind),
                "concurrency": self.manage.config.rollout_concurrency,
                "rollouts": await Rollouts(self.manage.db).recent(),
                "has_router": self.manage.desk(request.app) is not None,
            },
        )

    async def set_target(self, request: web.Request) -> web.Response:
        version = (await self._form(request)).get("version", "")
        return self.back(
            "updates", await self.manage.actions(request.app).set_target(request[ADMIN], version)
        )

    async def start_rollout(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        try:
            concurrency = int(form.get("concurrency", self.manage.config.rollout_concurrency))
        except ValueError:
            raise web.HTTPBadRequest(text="Concurrency is a number.") from None
        available, target, behind = await self.manage.updates(request.app)
        outcome = await self.manage.actions(request.app).start_rollout(
            request[ADMIN], target, available, behind, concurrency, form.get("wake_paused") == "1"
        )
        if outcome.ok:
            raise web.HTTPSeeOther(f"{self.prefix}/rollouts/{outcome.data['id']}")
        return self.back("updates", outcome)

    async def rollout(self, request: web.Request) -> web.Response:
        rollout_id = path_id(request, "rollout_id")
        found = await Rollouts(self.manage.db).get(rollout_id)
        if found is None:
            raise web.HTTPNotFound(text="No such rollout.")
        return self.render(
            request,
            "rollout.html",
            {
                "rollout": found,
                "items": await self.manage.rollout_rows(request.app, rollout_id),
                "stream_url": f"{self.prefix}/api/rollouts/{rollout_id}/stream",
                "section_key": "updates",
            },
        )

    async def control_rollout(self, request: web.Request) -> web.Response:
        rollout_id = path_id(request, "rollout_id")
        command = request.match_info["command"]
        outcome = await self.manage.actions(request.app).control_rollout(request[ADMIN], rollout_id, command)
        location = URL(f"{self.prefix}/rollouts/{rollout_id}").with_query(
            msg=outcome.message, ok="1" if outcome.ok else "0"
        )
        raise web.HTTPSeeOther(location)

    async def tokens(self, request: web.Request, extra: Mapping[str, Any] | None = None) -> web.Response:
        context = {
            "tokens": await self.manage.tokens.list(),
            "emails": await self.manage.people.emails(),
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
        token_id = path_id(request, "token_id")
        return self.back(
            "tokens", await self.manage.actions(request.app).revoke_token(request[ADMIN], token_id)
        )


BACK_PAGES = frozenset({"sandboxes", "recovery", "updates"})
