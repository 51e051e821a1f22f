"""An in-memory store: the same interfaces as the database-backed one, nothing persisted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from proxy_core import Readiness

from .keys import KeyRecord
from .ledger import UsageRow
from .lifecycle import KeyListing


class MemoryStore:
    """Keys and usage in memory: for one-process embedding without a database, tests and benchmarks.
    Put it among the shared resources under :data:`plugins.vkey.stage.STORE` before the stage is built."""

    name = "vkey-memory"

    def __init__(self) -> None:
        self.keys: dict[str, tuple[str, KeyRecord]] = {}  # id → (email, record)
        self.rows: list[UsageRow] = []

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def readiness(self) -> Readiness:
        return Readiness(True)

    async def find(self, key_hash: str) -> KeyRecord | None:
        return next((r for _, r in self.keys.values() if r.key_hash == key_hash), None)

    async def spend_since(
        self, user_id: str, day_start: datetime, month_start: datetime
    ) -> tuple[int, float]:
        mine = [r for r in self.rows if r.user_id == user_id]
        tokens = sum(r.input_tokens + r.output_tokens for r in mine if r.at >= day_start)
        return tokens, sum(r.cost_usd or 0.0 for r in mine if r.at >= month_start)

    def record(self, row: UsageRow) -> None:
        self.rows.append(row)

    async def keys_of(self, email: str) -> Sequence[KeyRecord]:
        return sorted((r for e, r in self.keys.values() if e == email), key=lambda r: r.created_at)

    async def insert_key(self, email: str, record: KeyRecord) -> None:
        self.keys[record.id] = (email, record)

    async def expire_keys(self, ids: Sequence[str], at: datetime) -> None:
        for key_id in ids:
            email, record = self.keys[key_id]
            self.keys[key_id] = (email, replace(record, expires_at=at))

    async def revoke_keys(self, ids: Sequence[str], at: datetime) -> None:
        for key_id in ids:
            email, record = self.keys[key_id]
            self.keys[key_id] = (email, replace(record, revoked_at=at))

    async def set_user_disabled(self, email: str, disabled: bool) -> int:
        mine = [k for k, (e, _) in self.keys.items() if e == email]
        for key_id in mine:
            self.keys[key_id] = (email, replace(self.keys[key_id][1], user_disabled=disabled))
        return len(mine)

    async def all_keys(self) -> Sequence[KeyListing]:
        return [KeyListing(e, r) for e, r in self.keys.values()]
