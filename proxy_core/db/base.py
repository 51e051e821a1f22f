"""The one query interface both backends offer, and small helpers they share.

SQL is written once with ``$1, $2`` placeholders. Rows are plain dicts whose values have the same
Python types on both backends: ``uuid.UUID`` for ``uuid`` columns, aware UTC ``datetime`` for
``timestamptz``, ``bool`` for ``boolean``, parsed JSON for ``jsonb``, ``int``/``float``/``str``/``None``
otherwise. On SQLite the type comes from the column's declared type, so a computed expression
(``max(created_at)``) comes back as stored (text); select the column itself when the type matters.
Portable SQL avoids ``::`` casts and interval arithmetic (pass computed datetimes as parameters);
``now()`` works on both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from .config import Dialect

Row = dict[str, Any]


class Connection(Protocol):
    """What :class:`~proxy_core.db.Database` and the connection a transaction yields both offer."""

    @property
    def dialect(self) -> Dialect: ...

    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; the number of rows it changed (0 for DDL)."""
        ...

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None: ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...


class Transaction(Connection, Protocol):
    """The connection inside ``Database.transaction()``: everything commits or rolls back together."""

    async def xact_lock(self, key: str) -> None:
        """Hold ``key`` exclusively until the transaction ends (Postgres ``pg_advisory_xact_lock``;
        SQLite transactions are already exclusive). Works through transaction-pooling poolers."""
        ...

    async def execute_script(self, sql: str) -> None:
        """Run several ``;``-separated statements without parameters (migration files)."""
        ...


class Store(Connection, Protocol):
    """A connection that can open transactions: what :class:`~proxy_core.db.Database` offers to code
    that must not depend on it (the migration runner)."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...


class Leadership(Protocol):
    """One contender in a leader election; see ``Database.leadership``."""

    async def is_leader(self) -> bool:
        """True while this process leads; tries to become leader when it does not."""
        ...

    async def close(self) -> None:
        """Step down (another contender takes over at its next ``is_leader``)."""
        ...


class Backend(Protocol):
    """What :class:`~proxy_core.db.Database` drives; one per dialect."""

    dialect: Dialect

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    async def execute(self, sql: str, *args: Any) -> int: ...

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None: ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...

    def lock(self, key: str) -> AbstractAsyncContextManager[None]: ...

    def leadership(self, name: str) -> Leadership: ...


def lock_id(key: str) -> int:
    """A stable signed 64-bit number for ``key`` (Postgres advisory locks take a bigint)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)
