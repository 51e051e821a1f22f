"""The ``manage`` stage: the admin pages under ``<prefix>`` and their JSON twins under
``<prefix>/api``. It resolves the caller itself (session through the auth stage, or an admin token),
so it works before or after ``auth`` in the pipeline."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import suppress
from pathlib import Path

from aiohttp import web

from plugins.auth import MenuEntry, add_menu_entry, user_directory
from plugins.vkey import key_service
from proxy_core import Next, Stage, StageContext, prefix_route
from proxy_core.db import database

from .api import Api, json_error
from .config import ManageConfig
from .driver import RolloutDriver
from .guard import Guard
from .pages import Pages, not_allowed
from .sandboxes import router_of
from .services import Manage
from .templates import TEMPLATES, Templates

STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)


class ManageStage(Stage[ManageConfig]):
    name = "manage"
    config_class = ManageConfig

    def __init__(self, config: ManageConfig, context: StageContext) -> None:
        super().__init__(config, context)
        self.manage = Manage(config, database(context), key_service(context), user_directory(context))
        context.resource(TEMPLATES, Templates)

    async def __call__(self, request: web.Request, next: Next) -> web.StreamResponse:
        return await next(request)

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        try:
            add_menu_entry(app, MenuEntry("Manage", self.config.path_prefix, admins_only=True))
        except LookupError:
            log.info("manage: no auth stage; no cloud menu entry")
        router = router_of(app)
        if router is None:
            yield
            return
        driver = self.manage.driver = RolloutDriver(self.manage.db, router, self.config)
        task = asyncio.create_task(driver.run(), name="manage-rollouts")
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    def routes(self) -> Sequence[web.AbstractRouteDef]:
        prefix = self.config.path_prefix
        guard = Guard(self.manage.tokens, self.manage.users.get)
        pages = Pages(self.manage, guard)
        api = Api(self.manage, guard)
        return [
            web.static(f"{prefix}/static", STATIC, append_version=False),
            *pages.routes(prefix),
            *api.routes(f"{prefix}/api"),
            # Everything else under the prefix is Manage's too: never handed on to a sandbox.
            prefix_route(f"{prefix}/api", guard.protect(_nothing, json_error)),
            prefix_route(prefix, guard.protect(_nothing, not_allowed)),
        ]


async def _nothing(request: web.Request) -> web.StreamResponse:
    raise web.HTTPNotFound(text="Nothing is served at this address.")
