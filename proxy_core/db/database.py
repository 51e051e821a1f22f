"""The shared store: one :class:`Database` per process, opened and closed with the app.

Start-up never fails on an unreachable database: ``open()`` tries once, logs which host it tried
and why it failed, and keeps retrying with exponential back-off in the background while
``readiness()`` says why the proxy is not ready. Stages that do not need the database keep serving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from aiohttp import web

from ..stage import Readiness, StageContext
from ..tasks import BackgroundJobs
from . import migrations
from .base import Backend, Leadership, Row, Transaction
from .config import DatabaseConfig, Dialect, target
from .errors import StoreError
from .postgres import PostgresBackend
from .sqlite import SqliteBackend

log = logging.getLogger(__name__)


class Database:
    """The store every stage shares; implements the core's ``Resource`` protocol.

    Query methods take SQL with ``$1, $2`` placeholders and return dict rows (see
    :mod:`proxy_core.db.base` for the types). Errors are :class:`~proxy_core.db.errors.StoreError`
    subclasses, never driver exceptions.
    """

    name = "database"

    def __init__(self, config: DatabaseConfig, *, sources: list[migrations.Source] | None = None) -> None:
        self.config = config
        self.sources = sources
        where = target(config.url)
        self.where = where.display
        self._backend: Backend
        if where.path is not None:
            self._backend = SqliteBackend(where.path, config.busy_timeout)
        else:
            self._backend = PostgresBackend(
                config.url,
                where.display,
                min_size=config.min_pool_size,
                max_size=config.max_pool_size,
                timeout=config.connect_timeout,
            )
        self._connected = False
        self._problem = f"connecting to the database at {self.where}"
        self._jobs = BackgroundJobs("database")  # the reconnect loop while the database is away

    @property
    def dialect(self) -> Dialect:
        return self._backend.dialect

    async def open(self) -> None:
        """Connect (and migrate when configured); on failure, retry in the background."""
        if self._connected or len(self._jobs):
            return
        if not await self._attempt():
            self._jobs.start("reconnect", self._keep_trying)

    async def connect(self) -> None:
        """Connect once, raising :class:`Unavailable` on failure (the CLI's way in)."""
        await self._backend.connect()
        self._connected = True

    async def close(self) -> None:
        await self._jobs.stop()
        self._connected = False
        await self._backend.close()

    async def readiness(self) -> Readiness:
        if not self._connected:
            return Readiness(False, self._problem)
        try:
            await self._backend.ping()
        except StoreError as exc:
            return Readiness(False, exc.message)
        return Readiness(True, f"{self.dialect} {self.where}")

    async def migrate(self) -> list[migrations.Migration]:
        """Apply pending migrations of every owner; returns what was applied."""
        return await migrations.upgrade(self, self.sources)

    async def migration_status(self) -> list[migrations.OwnerStatus]:
        return await migrations.status(self, self.sources)

    async def _attempt(self) -> bool:
        try:
            await self._backend.connect()
            if self.config.migrate_on_start:
                applied = await self.migrate()
                for migration in applied:
                    log.info("database: applied migration %s", migration)
        except StoreError as exc:
            self._connected = False
            self._problem = exc.message
            await self._backend.close()
            return False
        self._connected = True  # ready only once migrated: stages may rely on the tables
        log.info("database: connected to %s %s", self.dialect, self.where)
        return True

    async def _keep_trying(self) -> None:
        delay = self.config.retry_initial
        while True:
            log.warning("database: %s; retrying in %.1f s", self._problem, delay)
            await asyncio.sleep(delay)
            if await self._attempt():
                return
            delay = min(delay * 2, self.config.retry_max)

    async def execute(self, sql: str, *args: Any) -> int:
        return await self._backend.execute(sql, *args)

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        await self._backend.executemany(sql, args)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self._backend.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        return await self._backend.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._backend.fetchval(sql, *args)

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """``async with db.transaction() as tx:`` — statements on ``tx`` commit or roll back together.

        On SQLite the transaction holds the one writer slot; statements on ``db`` itself from the
        same task would wait for it forever, so they are refused with an error instead."""
        return self._backend.transaction()

    def user_lock(self, key: str) -> AbstractAsyncContextManager[None]:
        """Hold ``key`` (a user id, say) exclusively across replicas for single-flight work.

        Postgres: a session advisory lock on a connection held for the duration. SQLite: a
        byte-range lock on a file beside the database, so every worker process on the machine
        shares it."""
        return self._backend.lock(key)

    def leadership(self, name: str) -> Leadership:
        """A contender for leading the periodic job ``name``: ``if await leader.is_leader(): ...``.

        Postgres: a session advisory lock held on a dedicated connection; SQLite: a byte-range lock on
        a file beside the database (one leader among the workers of the machine).
        Close it on shutdown so another replica can take over at once."""
        return self._backend.leadership(name)


DATABASE = web.AppKey("proxy_core.database", Database)
"""The app's shared :class:`Database`; also its key among the context's resources."""


def database(context: StageContext) -> Database:
    """The one :class:`Database` of this app, configured by ``[database]``, created on first use.

    Resources are opened in the order they were first asked for and closed in reverse, so a
    batch writer created after this call is flushed before the database closes."""
    return context.resource(DATABASE, lambda: Database(context.config.section("database", DatabaseConfig)))
