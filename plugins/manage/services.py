"""What Manage's pages and API work with: the store, the owning plugins' APIs (auth's user
directory, vkey's keys and usage) and the actions built on them, for one app."""

from __future__ import annotations

import time
import uuid
from typing import Any

from aiohttp import web

from plugins.auth import UserDirectory
from plugins.vkey import KeyService, monthly_budget
from proxy_core.db import Database

from .actions import Actions
from .audit import AuditLog
from .config import ManageConfig
from .driver import RolloutDriver
from .people import People
from .rollouts import Rollouts
from .sandboxes import SandboxDesk, SandboxView, router_of
from .tokens import AdminTokens
from .usage import Grouping, Period, UsageView, usage_view


class Manage:
    """One per stage; the pages and the API get it instead of the stage (no import cycle)."""

    def __init__(self, config: ManageConfig, db: Database, keys: KeyService, users: UserDirectory) -> None:
        self.config = config
        self.db = db
        self.keys = keys
        self.users = users
        self.people = People(users, keys)
        self.audit = AuditLog(db)
        self.tokens = AdminTokens(db)
        self.driver: RolloutDriver | None = None
        """Drives rollouts; set by the stage when this cloud has sandboxes."""
        self._listed: tuple[float, dict[str, str]] | None = None

    def default_budget(self, app: web.Application) -> float:
        """The gateway's monthly budget per user (0: none), when this cloud has a ``vkey`` stage."""
        return monthly_budget(app)

    async def running_hours(self, app: web.Application, period: Period) -> dict[uuid.UUID, float] | None:
        """Sandbox running hours per user in ``period`` (``None``: this cloud has no sandboxes),
        from the router's recorded state changes."""
        desk = self.desk(app)
        if desk is None:
            return None
        hours = {}
        for row in await desk.store.all():
            hours[row.user_id] = await desk.hours(row.user_id, period.since, period.until)
        return hours

    async def usage(self, app: web.Application, period: Period, by: Grouping) -> UsageView:
        return await usage_view(
            self.db,
            await self.people.emails(),
            await self.keys.list(),
            self.default_budget(app),
            period,
            by,
            await self.running_hours(app, period),
        )

    def desk(self, app: web.Application) -> SandboxDesk | None:
        """The sandboxes, when this cloud has a ``sandbox_router`` stage."""
        router = router_of(app)
        return None if router is None else SandboxDesk(router, self.config)

    async def sandbox_views(self, app: web.Application) -> list[SandboxView]:
        """Every sandbox joined with the provider's list (re-read at most every
        ``provider_list_seconds``: E2B's list is rate-limited)."""
        desk = self.desk(app)
        if desk is None:
            return []
        now = time.monotonic()
        if self._listed is None or now - self._listed[0] >= self.config.provider_list_seconds:
            self._listed = (now, await desk.listed())
        emails = await self.people.emails()
        return await desk.views(emails, await self.target(app), self._listed[1])

    async def target(self, app: web.Application) -> str | None:
        """The template version sandboxes should run: the one an admin set, else the template's."""
        desk = self.desk(app)
        if desk is None:
            return None
        return await Rollouts(self.db).target() or desk.default_target()

    async def updates(self, app: web.Application) -> tuple[str | None, str | None, list[uuid.UUID]]:
        """(the template version on this cloud, the target, the users whose sandbox is behind it)."""
        desk = self.desk(app)
        if desk is None:
            return None, None, []
        target = await self.target(app)
        rows = await desk.store.all()
        behind = [r.user_id for r in rows if r.sandbox_id is not None and r.template_version != target]
        return desk.default_target(), target, behind

    async def rollout_rows(self, app: web.Application, rollout_id: uuid.UUID) -> list[dict[str, Any]]:
        emails = await self.people.emails()
        items = await Rollouts(self.db).items(rollout_id)
        order = {"updating": 0, "failed": 1, "rolled_back": 2, "deferred": 3, "pending": 4}
        return [
            {
                "user_id": str(i.user_id),
                "email": emails.get(i.user_id, str(i.user_id)),
                "state": i.state,
                "step": i.step,
                "percent": i.percent,
                "previous_version": i.previous_version,
                "message": i.message,
            }
            for i in sorted(items, key=lambda i: (order.get(i.state, 5), emails.get(i.user_id, "")))
        ]

    def actions(self, app: web.Application) -> Actions:
        return Actions(self.audit, self.people, self.tokens, self.desk(app), self.driver)
