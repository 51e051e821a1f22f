"""The ``sandboxes`` table (one row per user) and its ``sandbox_events`` history. Other plugins read
them through :mod:`plugins.sandbox_router`'s exported API, never directly."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import orjson

from proxy_core.db import Connection, Database, Row

from .providers.base import Handle

State = Literal["provisioning", "running", "paused", "resuming", "upgrading", "error", "broken"]
STATES: tuple[State, ...] = get_args(State)
HealerStatus = Literal["healing", "ready", "broken"]
HEALER_STATUSES: tuple[HealerStatus, ...] = get_args(HealerStatus)

_COLUMNS = (
    "id, user_id, provider, provider_sandbox_id, handle_data, app_token, state, template_version, "
    "healer_status, healer_message, healer_at, error_message, progress_step, progress_percent, "
    "last_activity_at, state_changed_at, created_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class Sandbox:
    """One user's sandbox as the store knows it."""

    id: uuid.UUID
    user_id: uuid.UUID
    provider: str
    state: State
    sandbox_id: str | None = None
    handle_data: dict[str, str] = field(default_factory=dict)
    app_token: str | None = field(default=None, repr=False)
    template_version: str | None = None
    healer_status: HealerStatus | None = None
    healer_message: str | None = None
    healer_at: datetime | None = None
    error_message: str | None = None
    progress_step: str | None = None
    progress_percent: int | None = None
    last_activity_at: datetime | None = None
    state_changed_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def handle(self) -> Handle | None:
        return None if self.sandbox_id is None else Handle(self.sandbox_id, self.handle_data)

    @property
    def active_at(self) -> datetime | None:
        """When it was last in use: its last recorded activity or its last change of state, the later
        (a sandbox resumed a moment ago is in use, though the activity that woke it may not be
        written yet: workers write activity in batches)."""
        times = [t for t in (self.last_activity_at, self.state_changed_at) if t is not None]
        return max(times) if times else self.updated_at


def _sandbox(row: Row) -> Sandbox:
    data = row["handle_data"]
    return Sandbox(
        id=row["id"],
        user_id=row["user_id"],
        provider=row["provider"],
        state=row["state"],
        sandbox_id=row["provider_sandbox_id"],
        handle_data=orjson.loads(data) if data else {},
        app_token=row["app_token"],
        template_version=row["template_version"],
        healer_status=row["healer_status"],
        healer_message=row["healer_message"],
        healer_at=row["healer_at"],
        error_message=row["error_message"],
        progress_step=row["progress_step"],
        progress_percent=row["progress_percent"],
        last_activity_at=row["last_activity_at"],
        state_changed_at=row["state_changed_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _handle_columns(handle: Handle) -> dict[str, Any]:
    return {"provider_sandbox_id": handle.sandbox_id, "handle_data": orjson.dumps(dict(handle.data)).decode()}


def now() -> datetime:
    return datetime.now(UTC)


class Sandboxes:
    """Queries on ``sandboxes``; ``db`` is the :class:`~proxy_core.db.Database` or a transaction."""

    def __init__(self, db: Connection) -> None:
        self.db = db

    async def of_user(self, user_id: uuid.UUID) -> Sandbox | None:
        row = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM sandboxes WHERE user_id = $1", user_id)
        return None if row is None else _sandbox(row)

    async def all(self) -> list[Sandbox]:
        rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM sandboxes ORDER BY created_at")
        return [_sandbox(r) for r in rows]

    async def in_states(self, *states: State) -> list[Sandbox]:
        marks = ", ".join(f"${i + 1}" for i in range(len(states)))
        rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM sandboxes WHERE state IN ({marks})", *states)
        return [_sandbox(r) for r in rows]

    async def count_by_state(self) -> dict[State, int]:
        """How many sandboxes are in each state (every state present, zero or more)."""
        rows = await self.db.fetch("SELECT state, count(*) AS n FROM sandboxes GROUP BY state")
        found = {row["state"]: int(row["n"]) for row in rows}
        return {state: found.get(state, 0) for state in STATES}

    async def ensure(self, user_id: uuid.UUID, provider: str) -> Sandbox:
        """The user's row, made (state ``provisioning``, no sandbox yet) when they have none."""
        found = await self.of_user(user_id)
        if found is not None:
            return found
        at = now()
        await self.db.execute(
            "INSERT INTO sandboxes (id, user_id, provider, state, state_changed_at, created_at, updated_at) "
            "VALUES ($1, $2, $3, 'provisioning', $4, $4, $4) ON CONFLICT (user_id) DO NOTHING",
            uuid.uuid4(),
            user_id,
            provider,
            at,
        )
        made = await self.of_user(user_id)
        assert made is not None  # inserted now or by a concurrent caller
        return made

    async def set_state(
        self,
        user_id: uuid.UUID,
        state: State,
        reason: str | None = None,
        *,
        handle: Handle | None = None,
        **columns: Any,
    ) -> None:
        """Move to ``state`` with ``reason`` (the error message for ``error``/``broken``), setting the
        ``handle`` and other ``columns`` too, and append the change to ``sandbox_events`` (one
        transaction when ``db`` is the database)."""
        at = now()
        values: dict[str, Any] = {"state": state, "error_message": reason, "updated_at": at, **columns}
        values.setdefault("state_changed_at", at)
        if handle is not None:
            values.update(_handle_columns(handle))
        if state in ("running", "paused", "error", "broken"):
            values.setdefault("progress_step", None)
            values.setdefault("progress_percent", None)
        if isinstance(self.db, Database):
            async with self.db.transaction() as tx:
                await Sandboxes(tx)._set_state(user_id, values)
        else:
            await self._set_state(user_id, values)

    async def _set_state(self, user_id: uuid.UUID, values: dict[str, Any]) -> None:
        await self._update(user_id, values)
        await self.db.execute(
            "INSERT INTO sandbox_events (user_id, state, reason, at) VALUES ($1, $2, $3, $4)",
            user_id,
            values["state"],
            values["error_message"],
            values["updated_at"],
        )

    async def set_handle(self, user_id: uuid.UUID, handle: Handle | None, **columns: Any) -> None:
        values = (
            _handle_columns(handle)
            if handle is not None
            else {"provider_sandbox_id": None, "handle_data": None}
        )
        await self._update(user_id, {**values, **columns, "updated_at": now()})

    async def set_progress(self, user_id: uuid.UUID, step: str, percent: int) -> None:
        await self._update(user_id, {"progress_step": step, "progress_percent": percent, "updated_at": now()})

    async def set_healer(self, user_id: uuid.UUID, status: HealerStatus, message: str) -> None:
        await self._update(
            user_id,
            {"healer_status": status, "healer_message": message, "healer_at": now(), "updated_at": now()},
        )

    async def set_columns(self, user_id: uuid.UUID, **columns: Any) -> None:
        await self._update(user_id, {**columns, "updated_at": now()})

    async def delete(self, user_id: uuid.UUID) -> None:
        await self.db.execute("DELETE FROM sandboxes WHERE user_id = $1", user_id)

    async def events(self, user_id: uuid.UUID) -> list[Row]:
        return await self.db.fetch(
            "SELECT state, reason, at FROM sandbox_events WHERE user_id = $1 ORDER BY id", user_id
        )

    async def running_seconds(
        self, user_id: uuid.UUID, since: datetime, until: datetime | None = None
    ) -> float:
        """Seconds the user's sandbox was ``running`` between ``since`` and ``until`` (default now),
        from its state history (for usage reports and the Manage UI)."""
        until = until or now()
        before = await self.db.fetchrow(
            "SELECT state FROM sandbox_events WHERE user_id = $1 AND at <= $2 "
            "ORDER BY at DESC, id DESC LIMIT 1",
            user_id,
            since,
        )
        changes = await self.db.fetch(
            "SELECT state, at FROM sandbox_events WHERE user_id = $1 AND at > $2 AND at < $3 ORDER BY at, id",
            user_id,
            since,
            until,
        )
        total, running_from = 0.0, since if before is not None and before["state"] == "running" else None
        for change in changes:
            if change["state"] == "running" and running_from is None:
                running_from = change["at"]
            elif change["state"] != "running" and running_from is not None:
                total += (change["at"] - running_from).total_seconds()
                running_from = None
        if running_from is not None:
            total += (until - running_from).total_seconds()
        return total

    async def _update(self, user_id: uuid.UUID, values: dict[str, Any]) -> None:
        names = list(values)
        sets = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
        await self.db.execute(
            f"UPDATE sandboxes SET {sets} WHERE user_id = $1", user_id, *(values[n] for n in names)
        )
