"""The database-backed store of the gateway: ``virtual_keys`` and ``usage`` (this plugin's tables).

Written against the ``proxy_core.db`` interface (issue 3): a ``Database`` with
``execute/fetch/fetchrow/fetchval`` and ``$1`` placeholders on Postgres and SQLite, and a
``BatchWriter`` for the usage rows of the hot path. The two are described here as protocols so this
module depends only on what it uses.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from proxy_core import Readiness, StageContext

from .keys import KeyRecord
from .ledger import UsageRow
from .lifecycle import KeyListing

_COLUMNS = "id, user_id, email, prefix, key_hash, created_at, expires_at, revoked_at, disabled"
_INSERT_USAGE = (
    "INSERT INTO usage (at, user_id, key_id, provider, model, status, input_tokens, output_tokens,"
    " cached_tokens, cache_write_tokens, cost_usd, duration_ms, reported)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
)


class Database(Protocol):
    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def readiness(self) -> Readiness: ...

    async def execute(self, sql: str, *args: Any) -> Any: ...

    async def fetch(self, sql: str, *args: Any) -> Sequence[Mapping[str, Any]]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Mapping[str, Any] | None: ...


class BatchWriter(Protocol):
    def add(self, sql: str, args: Sequence[Any]) -> None: ...


class GatewayStore:
    """Implements :class:`~plugins.vkey.keys.KeyStore`, :class:`~plugins.vkey.limits.SpendSource`,
    :class:`~plugins.vkey.ledger.UsageSink` and :class:`~plugins.vkey.lifecycle.KeyAdminStore`."""

    name = "vkey-store"

    def __init__(self, db: Database, writer: BatchWriter) -> None:
        self.db = db
        self.writer = writer

    @classmethod
    def for_context(cls, context: StageContext) -> GatewayStore:
        """The store on the app's shared database resource (created on first use)."""
        dbmod = importlib.import_module("proxy_core.db")
        db: Database = dbmod.database(context)
        return cls(db, dbmod.BatchWriter(db))

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def readiness(self) -> Readiness:
        return Readiness(True)

    # the hot path ------------------------------------------------------------------------------------

    async def find(self, key_hash: str) -> KeyRecord | None:
        row = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM virtual_keys WHERE key_hash = $1", key_hash)
        return None if row is None else _record(row)

    def record(self, row: UsageRow) -> None:
        self.writer.add(
            _INSERT_USAGE,
            (
                row.at,
                row.user_id,
                row.key_id,
                row.provider,
                row.model,
                row.status,
                row.input_tokens,
                row.output_tokens,
                row.cached_tokens,
                row.cache_write_tokens,
                row.cost_usd,
                row.duration_ms,
                row.reported,
            ),
        )

    async def spend_since(
        self, user_id: str, day_start: datetime, month_start: datetime
    ) -> tuple[int, float]:
        row = await self.db.fetchrow(
            "SELECT COALESCE(SUM(CASE WHEN at >= $2 THEN input_tokens + output_tokens ELSE 0 END), 0)"
            " AS tokens, COALESCE(SUM(cost_usd), 0) AS usd FROM usage WHERE user_id = $1 AND at >= $3",
            user_id,
            day_start,
            month_start,
        )
        return (int(row["tokens"]), float(row["usd"])) if row is not None else (0, 0.0)

    # key management ----------------------------------------------------------------------------------

    async def keys_of(self, email: str) -> Sequence[KeyRecord]:
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM virtual_keys WHERE email = $1 ORDER BY created_at", email
        )
        return [_record(row) for row in rows]

    async def insert_key(self, email: str, record: KeyRecord) -> None:
        await self.db.execute(
            f"INSERT INTO virtual_keys ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            record.id,
            record.user_id,
            email,
            record.prefix,
            record.key_hash,
            record.created_at,
            record.expires_at,
            record.revoked_at,
            record.user_disabled,
        )

    async def expire_keys(self, ids: Sequence[str], at: datetime) -> None:
        for key_id in ids:
            await self.db.execute("UPDATE virtual_keys SET expires_at = $2 WHERE id = $1", key_id, at)

    async def revoke_keys(self, ids: Sequence[str], at: datetime) -> None:
        for key_id in ids:
            await self.db.execute("UPDATE virtual_keys SET revoked_at = $2 WHERE id = $1", key_id, at)

    async def set_user_disabled(self, email: str, disabled: bool) -> int:
        rows = await self.db.fetch(
            "UPDATE virtual_keys SET disabled = $2 WHERE email = $1 RETURNING id", email, disabled
        )
        return len(rows)

    async def all_keys(self) -> Sequence[KeyListing]:
        rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM virtual_keys ORDER BY email, created_at")
        return [KeyListing(str(row["email"]), _record(row)) for row in rows]


def _record(row: Mapping[str, Any]) -> KeyRecord:
    return KeyRecord(
        id=str(row["id"]),
        user_id=str(row["user_id"]),
        prefix=str(row["prefix"]),
        key_hash=str(row["key_hash"]),
        created_at=_utc(row["created_at"]),
        expires_at=None if row["expires_at"] is None else _utc(row["expires_at"]),
        revoked_at=None if row["revoked_at"] is None else _utc(row["revoked_at"]),
        user_disabled=bool(row["disabled"]),
    )


def _utc(value: Any) -> datetime:
    """Postgres returns aware datetimes, SQLite may return naive ones or ISO text: all become UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a timestamp, got {type(value).__name__}")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
