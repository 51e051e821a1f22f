"""The Postgres backend: an asyncpg pool that also works behind Supabase's pooler / pgbouncer.

``statement_cache_size=0`` keeps asyncpg from reusing named prepared statements, which a
transaction-pooling pooler cannot route back to the connection that prepared them. TLS comes from
``sslmode`` in the URL. Advisory locks for migrations use the transaction-scoped variant, which
such poolers support; ``lock`` and leader election hold a session, so they need a direct or
session-pooled connection (Supabase's port 5432).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any

import asyncpg
import orjson

from .base import Leadership, Row, Transaction, lock_id
from .config import Dialect
from .errors import (
    CheckViolation,
    ConstraintViolation,
    ForeignKeyViolation,
    NotNullViolation,
    QueryError,
    StoreError,
    Unavailable,
    UniqueViolation,
    field_of,
)

_CONNECTION_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
    asyncpg.exceptions.InvalidCatalogNameError,
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    """Codecs that make rows look like the SQLite backend's: ``uuid.UUID`` and parsed JSON."""
    await conn.set_type_codec("uuid", encoder=str, decoder=uuid.UUID, schema="pg_catalog", format="text")
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog"
        )


def _status_count(status: str) -> int:
    """``"UPDATE 3"`` → 3, ``"INSERT 0 1"`` → 1, ``"CREATE TABLE"`` → 0."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


def translate_error(exc: BaseException, where: str) -> StoreError | None:
    """A driver error as a domain error, or ``None`` when it is not a database error at all."""
    if isinstance(exc, asyncpg.exceptions.IntegrityConstraintViolationError):
        return _constraint_error(exc)
    if isinstance(exc, _CONNECTION_ERRORS):
        reason = str(exc) or type(exc).__name__
        return Unavailable(f"the database at {where} is unreachable: {reason}")
    if isinstance(exc, asyncpg.exceptions.PostgresError):
        return QueryError(f"database error: {exc}")
    return None


def _constraint_error(exc: asyncpg.exceptions.IntegrityConstraintViolationError) -> ConstraintViolation:
    table = getattr(exc, "table_name", None)
    constraint = getattr(exc, "constraint_name", None)
    column = getattr(exc, "column_name", None)
    field = column or field_of(constraint, table)
    if isinstance(exc, asyncpg.exceptions.UniqueViolationError):
        return UniqueViolation(f"{field or 'value'} already exists", table=table, field=field)
    if isinstance(exc, asyncpg.exceptions.ForeignKeyViolationError):
        return ForeignKeyViolation(
            "a referenced row does not exist, or the row is still referenced", table=table, field=field
        )
    if isinstance(exc, asyncpg.exceptions.NotNullViolationError):
        return NotNullViolation(f"{field or 'a value'} is required", table=table, field=field)
    if isinstance(exc, asyncpg.exceptions.CheckViolationError):
        return CheckViolation(f"invalid {field or 'value'}", table=table, field=field)
    return ConstraintViolation(f"constraint violated: {exc}", table=table, field=field)


class _Queries:
    """The query methods over something with asyncpg's ``execute``/``fetch`` (pool or connection)."""

    dialect: Dialect = "postgres"

    def __init__(self, target: Any, where: str) -> None:
        self._target, self._where = target, where

    @property
    def _executor(self) -> Any:
        """The pool or connection statements run on."""
        return self._target

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            translated = translate_error(exc, self._where)
            if translated is None:
                raise
            raise translated from exc

    async def execute(self, sql: str, *args: Any) -> int:
        with self._errors():
            return _status_count(await self._executor.execute(sql, *args))

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        with self._errors():
            await self._executor.executemany(sql, args)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        with self._errors():
            return [dict(record) for record in await self._executor.fetch(sql, *args)]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        with self._errors():
            record = await self._executor.fetchrow(sql, *args)
        return None if record is None else dict(record)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        with self._errors():
            return await self._executor.fetchval(sql, *args)


class PostgresTransaction(_Queries):
    async def xact_lock(self, key: str) -> None:
        await self.execute("SELECT pg_advisory_xact_lock($1)", lock_id(key))

    async def execute_script(self, sql: str) -> None:
        with self._errors():
            await self._target.execute(sql)  # no arguments: the simple protocol, several statements


class PostgresBackend(_Queries):
    def __init__(self, url: str, where: str, *, min_size: int, max_size: int, timeout: float) -> None:
        super().__init__(None, where)
        self.url, self.min_size, self.max_size, self.timeout = url, min_size, max_size, timeout

    @property
    def _pool(self) -> asyncpg.Pool:
        if self._target is None:
            raise Unavailable(f"the database at {self._where} is not connected")
        return self._target

    @property
    def _executor(self) -> Any:
        return self._pool

    async def connect(self) -> None:
        with self._errors():
            pool = await asyncpg.create_pool(
                self.url,
                min_size=min(self.min_size, self.max_size),
                max_size=self.max_size,
                init=_init_connection,
                statement_cache_size=0,
                timeout=self.timeout,
            )
        self._target = pool
        await self.ping()

    async def close(self) -> None:
        pool, self._target = self._target, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self.timeout)
            except (TimeoutError, OSError, asyncpg.exceptions.InterfaceError):
                pool.terminate()

    async def ping(self) -> None:
        with self._errors():
            await asyncio.wait_for(self._pool.fetchval("SELECT 1"), self.timeout)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        with self._errors():
            conn = await self._pool.acquire()
        try:
            transaction = conn.transaction()
            with self._errors():
                await transaction.start()
            try:
                yield PostgresTransaction(conn, self._where)
            except BaseException:
                # The caller's error is the one that matters; a rollback on a dead connection is moot.
                with suppress(Exception):
                    await asyncio.shield(transaction.rollback())
                raise
            with self._errors():
                await transaction.commit()
        finally:
            await self._pool.release(conn)

    @asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        """``pg_advisory_lock`` on a connection held for the duration (asyncpg's reset on release
        unlocks everything, so a cancelled waiter never leaves the lock behind)."""
        with self._errors():
            conn = await self._pool.acquire()
        try:
            with self._errors():
                await conn.execute("SELECT pg_advisory_lock($1)", lock_id(key))
            yield
        finally:
            await asyncio.shield(self._pool.release(conn))

    def leadership(self, name: str) -> Leadership:
        return PostgresLeadership(self.url, self._where, lock_id(name), self.timeout)


class PostgresLeadership:
    """``pg_try_advisory_lock`` on a dedicated connection: the lock lives as long as the session, so
    a leader that exits or loses its connection frees the place for the next contender."""

    def __init__(self, url: str, where: str, key: int, timeout: float) -> None:
        self._url, self._where, self._key, self._timeout = url, where, key, timeout
        self._conn: asyncpg.Connection | None = None
        self._leading = False

    async def is_leader(self) -> bool:
        try:
            if self._conn is None or self._conn.is_closed():
                self._leading = False
                self._conn = await asyncpg.connect(self._url, statement_cache_size=0, timeout=self._timeout)
            if self._leading:
                await asyncio.wait_for(self._conn.fetchval("SELECT 1"), self._timeout)
            else:
                self._leading = bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", self._key))
        except Exception as exc:
            if translate_error(exc, self._where) is None:
                raise
            await self.close()
        return self._leading

    async def close(self) -> None:
        conn, self._conn, self._leading = self._conn, None, False
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), self._timeout)
            except (TimeoutError, OSError, asyncpg.exceptions.InterfaceError):
                conn.terminate()
