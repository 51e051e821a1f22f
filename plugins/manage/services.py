"""What Manage's pages and API work with: the store, the owning plugins' APIs (auth's user
directory, vkey's keys and usage) and the actions built on them, for one app."""

from __future__ import annotations

import uuid

from aiohttp import web

from plugins.auth import UserDirectory
from plugins.vkey import KeyService, VKeyStage
from proxy_core import STAGES
from proxy_core.db import Database

from .actions import Actions
from .audit import AuditLog
from .config import ManageConfig
from .people import People
from .tokens import AdminTokens
from .usage import Grouping, Period, UsageView, usage_view


class Manage:
    """One per stage; the pages and the API get it instead of the stage (no import cycle)."""

    def __init__(self, config: ManageConfig, db: Database, keys: KeyService, users: UserDirectory) -> None:
        self.config = config
        self.db = db
        self.keys = keys
        self.users = users
        self.audit = AuditLog(db)
        self.tokens = AdminTokens(db)

    def people(self, app: web.Application) -> People:
        return People(self.users, self.keys, app)

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
