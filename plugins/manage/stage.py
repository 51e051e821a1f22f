"""The ``manage`` stage: the admin pages under ``<prefix>`` and their JSON twins under
``<prefix>/api``. It resolves the caller itself (session through the auth stage, or an admin token),
so it works before or after ``auth`` in the pipeline."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from aiohttp import web

from plugins.auth import MenuEntry, auth_stage, user_directory
from plugins.vkey import VKeyStage, key_service
from proxy_core import STAGES, Next, Stage, StageContext
from proxy_core.db import database

from .actions import Actions
from .api import Api, json_error
from .audit import AuditLog
from .config import ManageConfig
from .guard import Guard
from .pages import Pages, not_allowed
from .people import People
from .templates import TEMPLATES, Templates
from .tokens import AdminTokens
from .usage import Grouping, Period, UsageView, usage_view

STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)


class ManageStage(Stage[ManageConfig]):
    name = "manage"
    config_class = ManageConfig

    def __init__(self, config: ManageConfig, context: StageContext) -> None:
        super().__init__(config, context)
        self.db = database(context)
        self.keys = key_service(context)
        self.users = user_directory(context)
        self.audit = AuditLog(self.db)
        self.tokens = AdminTokens(self.db)
        context.resource(TEMPLATES, Templates)

    async def __call__(self, request: web.Request, next: Next) -> web.StreamResponse:
        return await next(request)

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        try:
            auth_stage(app).menu.add(MenuEntry("Manage", self.config.path_prefix, admins_only=True))
        except LookupError:
            log.info("manage: no auth stage; no cloud menu entry")
        yield

    def people(self, app: web.Application) -> People:
        return People(self.users, self.keys, app)

    def routes(self) -> Sequence[web.AbstractRouteDef]:
        prefix = self.config.path_prefix
        guard = Guard(self.tokens, self.users.get)
        pages = Pages(self, guard)
        api = Api(self, guard)
        return [
            web.static(f"{prefix}/static", STATIC, append_version=False),
            *pages.routes(prefix),
            *api.routes(f"{prefix}/api"),
            # Everything else under the prefix is Manage's too: never handed on to a sandbox.
            web.route("*", f"{prefix}/api/{{tail:.*}}", guard.protect(_nothing, json_error)),
            web.route("*", f"{prefix}/{{tail:.*}}", guard.protect(_nothing, not_allowed)),
        ]

    def default_budget(self, app: web.Application) -> float:
        """The gateway's monthly budget per user (0: none), when this cloud has a ``vkey`` stage."""
        for stage in app[STAGES]:
            if isinstance(stage, VKeyStage):
                return stage.config.limits.monthly_budget_usd
        return 0.0

    async def running_hours(self, app: web.Application, period: Period) -> dict[uuid.UUID, float] | None:
        """Sandbox running hours per user in ``period`` (``None``: this cloud has no sandboxes)."""
        return None

    async def usage(self, app: web.Application, period: Period, by: Grouping) -> UsageView:
        return await usage_view(
            self.db,
            await self.people(app).emails(),
            await self.keys.list(),
            self.default_budget(app),
            period,
            by,
            await self.running_hours(app, period),
        )

    def actions(self, app: web.Application) -> Actions:
        return Actions(self.audit, self.people(app), self.tokens)


async def _nothing(request: web.Request) -> web.StreamResponse:
    raise web.HTTPNotFound(text="Nothing is served at this address.")
