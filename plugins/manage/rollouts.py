"""The ``rollouts``, ``rollout_items`` and ``manage_settings`` tables (this plugin's own): a rollout
of a template version to every outdated sandbox, each sandbox's step and outcome, and the target
version."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from proxy_core.db import Connection, Database, Row

RolloutState = Literal["running", "paused", "cancelled", "done"]
ItemState = Literal["pending", "deferred", "updating", "updated", "rolled_back", "failed", "skipped"]
FINISHED_ITEMS = ("updated", "rolled_back", "failed", "skipped")
_ROLLOUT = (
    "id, target_version, concurrency, wake_paused, state, created_by, created_at, updated_at, finished_at"
)
_ITEM = (
    "rollout_id, user_id, state, step, percent, previous_version, message, started_at, finished_at, woken_at"
)


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Rollout:
    id: uuid.UUID
    target_version: str
    concurrency: int
    wake_paused: bool
    state: RolloutState
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class Item:
    rollout_id: uuid.UUID
    user_id: uuid.UUID
    state: ItemState
    step: str | None
    percent: int
    previous_version: str | None
    message: str | None
    started_at: datetime | None
    finished_at: datetime | None
    woken_at: datetime | None
    """When this rollout woke the paused sandbox (it is paused again after its update)."""


class Rollouts:
    """Queries on the rollout tables; ``db`` is the database or a transaction's connection."""

    def __init__(self, db: Connection) -> None:
        self.db = db

    async def target(self) -> str | None:
        return await self.db.fetchval("SELECT value FROM manage_settings WHERE key = 'target_version'")  # type: ignore[no-any-return]

    async def set_target(self, version: str) -> None:
        await self.db.execute(
            "INSERT INTO manage_settings (key, value, updated_at) VALUES ('target_version', $1, $2) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            version,
            now(),
        )

    async def create(
        self, target: str, concurrency: int, wake_paused: bool, by: uuid.UUID, users: list[uuid.UUID]
    ) -> Rollout:
        """A running rollout of ``target`` over ``users`` (one transaction)."""
        rollout_id, at = uuid.uuid4(), now()
        assert isinstance(self.db, Database)
        async with self.db.transaction() as tx:
            await tx.execute(
                f"INSERT INTO rollouts ({_ROLLOUT}) VALUES ($1, $2, $3, $4, 'running', $5, $6, $6, NULL)",
                rollout_id,
                target,
                concurrency,
                wake_paused,
                by,
                at,
            )
            await tx.executemany(
                "INSERT INTO rollout_items (rollout_id, user_id, state, percent) "
                "VALUES ($1, $2, 'pending', 0)",
                [(rollout_id, user_id) for user_id in users],
            )
        found = await self.get(rollout_id)
        assert found is not None
        return found

    async def get(self, rollout_id: uuid.UUID) -> Rollout | None:
        row = await self.db.fetchrow(f"SELECT {_ROLLOUT} FROM rollouts WHERE id = $1", rollout_id)
        return None if row is None else _rollout(row)

    async def recent(self, limit: int = 20) -> list[Rollout]:
        rows = await self.db.fetch(
            f"SELECT {_ROLLOUT} FROM rollouts ORDER BY created_at DESC LIMIT $1", limit
        )
        return [_rollout(r) for r in rows]

    async def active(self) -> list[Rollout]:
        rows = await self.db.fetch(
            f"SELECT {_ROLLOUT} FROM rollouts WHERE state IN ('running', 'paused') ORDER BY created_at"
        )
        return [_rollout(r) for r in rows]

    async def set_state(
        self, rollout_id: uuid.UUID, state: RolloutState, *, only_from: tuple[str, ...]
    ) -> bool:
        """Move the rollout to ``state`` if it is in one of ``only_from``; whether it moved."""
        marks = ", ".join(f"${i + 4}" for i in range(len(only_from)))
        finished = now() if state in ("cancelled", "done") else None
        count = await self.db.execute(
            "UPDATE rollouts SET state = $2, updated_at = $3, "
            f"finished_at = COALESCE(finished_at, ${len(only_from) + 4}) "
            f"WHERE id = $1 AND state IN ({marks})",
            rollout_id,
            state,
            now(),
            *only_from,
            finished,
        )
        return count > 0

    async def items(self, rollout_id: uuid.UUID) -> list[Item]:
        rows = await self.db.fetch(f"SELECT {_ITEM} FROM rollout_items WHERE rollout_id = $1", rollout_id)
        return [_item(r) for r in rows]

    async def item(self, rollout_id: uuid.UUID, user_id: uuid.UUID) -> Item | None:
        row = await self.db.fetchrow(
            f"SELECT {_ITEM} FROM rollout_items WHERE rollout_id = $1 AND user_id = $2", rollout_id, user_id
        )
        return None if row is None else _item(row)

    async def woken(self, rollout_id: uuid.UUID, user_id: uuid.UUID) -> None:
        """Remember that the rollout woke this paused sandbox (the first time only)."""
        await self.db.execute(
            "UPDATE rollout_items SET woken_at = COALESCE(woken_at, $3), step = 'waking', percent = 5, "
            "message = 'Paused: waking it to update it.' WHERE rollout_id = $1 AND user_id = $2",
            rollout_id,
            user_id,
            now(),
        )

    async def claim(self, rollout_id: uuid.UUID, user_id: uuid.UUID, from_states: tuple[str, ...]) -> bool:
        """Mark the item ``updating`` if it is still in ``from_states`` (exactly one claimer wins)."""
        marks = ", ".join(f"${i + 4}" for i in range(len(from_states)))
        count = await self.db.execute(
            "UPDATE rollout_items SET state = 'updating', started_at = $3, message = NULL "
            f"WHERE rollout_id = $1 AND user_id = $2 AND state IN ({marks})",
            rollout_id,
            user_id,
            now(),
            *from_states,
        )
        return count > 0

    async def progress(
        self,
        rollout_id: uuid.UUID,
        user_id: uuid.UUID,
        step: str,
        percent: int,
        *,
        state: ItemState | None = None,
        message: str | None = None,
        previous_version: str | None = None,
    ) -> None:
        finished = now() if state in FINISHED_ITEMS else None
        await self.db.execute(
            "UPDATE rollout_items SET step = $3, percent = $4, state = COALESCE($5, state), "
            "message = COALESCE($6, message), previous_version = COALESCE($7, previous_version), "
            "finished_at = COALESCE($8, finished_at) WHERE rollout_id = $1 AND user_id = $2",
            rollout_id,
            user_id,
            step,
            percent,
            state,
            message,
            previous_version,
            finished,
        )

    async def set_items(
        self, rollout_id: uuid.UUID, state: ItemState, *, where_state: tuple[str, ...]
    ) -> int:
        marks = ", ".join(f"${i + 4}" for i in range(len(where_state)))
        return await self.db.execute(
            "UPDATE rollout_items SET state = $2, finished_at = $3 "
            f"WHERE rollout_id = $1 AND state IN ({marks})",
            rollout_id,
            state,
            now() if state in FINISHED_ITEMS else None,
            *where_state,
        )


def _rollout(row: Row) -> Rollout:
    return Rollout(**row)


def _item(row: Row) -> Item:
    return Item(**row)
