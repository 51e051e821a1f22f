"""The ``virtual_keys`` table (this plugin's own): one row per key ever issued, the key as a hash."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from proxy_core.db import Connection, Row

from .keys import KeyLimits, KeyRecord

_COLUMNS = (
    "id, user_id, key_hash, prefix, created_at, expires_at, revoked_at, grace_until,"
    " rpm_limit, tokens_per_day, monthly_budget_usd"
)


class VirtualKeys:
    """Queries on ``virtual_keys``. ``db`` may be the :class:`~proxy_core.db.Database` or a
    transaction's connection."""

    def __init__(self, db: Connection) -> None:
        self.db = db

    async def find(self, key_hash: str) -> KeyRecord | None:
        row = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM virtual_keys WHERE key_hash = $1", key_hash)
        return None if row is None else _record(row)

    async def of_user(self, user_id: uuid.UUID) -> list[KeyRecord]:
        """Every key of ``user_id``, oldest first."""
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM virtual_keys WHERE user_id = $1 ORDER BY created_at, id", user_id
        )
        return [_record(row) for row in rows]

    async def all(self) -> list[KeyRecord]:
        rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM virtual_keys ORDER BY user_id, created_at, id")
        return [_record(row) for row in rows]

    async def insert(self, record: KeyRecord) -> None:
        limits = record.limits
        await self.db.execute(
            f"INSERT INTO virtual_keys ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            record.id,
            record.user_id,
            record.key_hash,
            record.prefix,
            record.created_at,
            record.expires_at,
            record.revoked_at,
            record.grace_until,
            limits.requests_per_minute,
            limits.tokens_per_day,
            limits.monthly_budget_usd,
        )

    async def end_grace_at(self, ids: Sequence[uuid.UUID], until: datetime) -> None:
        """The keys ``ids`` keep working until ``until`` (a rotation's grace period)."""
        await self._set("grace_until", ids, until)

    async def revoke(self, ids: Sequence[uuid.UUID], at: datetime) -> None:
        await self._set("revoked_at", ids, at)

    async def _set(self, column: str, ids: Sequence[uuid.UUID], value: datetime) -> None:
        if ids:
            places = ", ".join(f"${i + 2}" for i in range(len(ids)))
            await self.db.execute(
                f"UPDATE virtual_keys SET {column} = $1 WHERE id IN ({places})", value, *ids
            )


def _record(row: Row) -> KeyRecord:
    return KeyRecord(
        id=row["id"],
        user_id=row["user_id"],
        prefix=row["prefix"],
        key_hash=row["key_hash"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        grace_until=row["grace_until"],
        limits=KeyLimits(row["rpm_limit"], row["tokens_per_day"], row["monthly_budget_usd"]),
    )
