"""Server-side sessions in the store's ``sessions`` table. The browser's cookie carries a random
token; the table holds only its SHA-256, so a read of the table yields no usable session."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from proxy_core.db import Connection, Row, Store

from .tokens import random_token
from .users import Role, Users

_COLUMNS = (
    "s.id, s.user_id, s.created_at, s.last_seen_at, s.expires_at, s.idle_expires_at, s.data, "
    "u.email, u.name, u.role, u.disabled"
)

_INSERT = (
    "INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at, idle_expires_at, data) "
    "VALUES ($1, $2, $3, $3, $4, $5, $6)"
)


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    user_id: uuid.UUID
    email: str
    name: str | None
    role: Role
    disabled: bool
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    idle_expires_at: datetime
    data: dict[str, Any] = field(repr=False)
    """What the provider keeps: tokens, the IdP's session id."""


def session_id(token: str) -> str:
    """The table's id for the cookie's ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


def now() -> datetime:
    return datetime.now(UTC)


class Sessions:
    """Queries on ``sessions``; ``lifetime`` and ``idle`` are seconds."""

    def __init__(self, db: Store, *, lifetime: float, idle: float) -> None:
        self.db = db
        self.lifetime = timedelta(seconds=lifetime)
        self.idle = timedelta(seconds=idle)

    async def create(self, user_id: uuid.UUID, data: dict[str, Any]) -> str:
        """A new session, and the user's last sign-in set to its start, in one transaction; returns
        the token for the cookie (never stored)."""
        token = random_token(32)
        at = now()
        async with self.db.transaction() as tx:
            await tx.execute(
                _INSERT,
                session_id(token),
                user_id,
                at,
                at + self.lifetime,
                min(at + self.idle, at + self.lifetime),
                data,
            )
            await Users(tx).signed_in(user_id, at)
        return token

    async def get(self, sid: str) -> Session | None:
        """The live session ``sid``: not revoked, not past its lifetime or idle timeout."""
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id "
            "WHERE s.id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 AND s.idle_expires_at > $2",
            sid,
            now(),
        )
        return None if row is None else _session(row)

    async def touch(self, sid: str) -> datetime:
        """Record a visit: moves the idle deadline (never past the absolute end)."""
        at = now()
        await self.db.execute(
            "UPDATE sessions SET last_seen_at = $2, "
            "idle_expires_at = CASE WHEN expires_at < $3 THEN expires_at ELSE $3 END "
            "WHERE id = $1 AND revoked_at IS NULL",
            sid,
            at,
            at + self.idle,
        )
        return at

    async def set_data(self, sid: str, data: dict[str, Any]) -> None:
        await self.db.execute("UPDATE sessions SET data = $2 WHERE id = $1", sid, data)

    async def revoke(self, sid: str) -> bool:
        changed = await self.db.execute(
            "UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL", sid, now()
        )
        return changed > 0

    async def active(self, user_id: uuid.UUID) -> list[Session]:
        """The user's live sessions, newest first."""
        return await active_sessions(self.db, user_id)

    async def purge(self, before: datetime) -> int:
        """Delete sessions that ended (expired or revoked) before ``before``."""
        return await self.db.execute(
            "DELETE FROM sessions WHERE expires_at < $1 OR idle_expires_at < $1 OR revoked_at < $1", before
        )


async def active_sessions(db: Connection, user_id: uuid.UUID) -> list[Session]:
    """The user's live sessions, newest first."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id "
        "WHERE s.user_id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 AND s.idle_expires_at > $2 "
        "ORDER BY s.created_at DESC",
        user_id,
        now(),
    )
    return [_session(row) for row in rows]


async def last_seen(db: Connection) -> dict[uuid.UUID, datetime]:
    """When each user with a live session last made a request on one (users without one are absent)."""
    rows = await db.fetch(
        "SELECT user_id, last_seen_at FROM sessions "
        "WHERE revoked_at IS NULL AND expires_at > $1 AND idle_expires_at > $1",
        now(),
    )
    seen: dict[uuid.UUID, datetime] = {}
    for row in rows:
        user_id, at = row["user_id"], row["last_seen_at"]
        seen[user_id] = max(at, seen.get(user_id, at))
    return seen


async def revoke_user_sessions(db: Connection, user_id: uuid.UUID) -> list[Session]:
    """Revoke every session of a user that has not ended yet; returns the live ones it ended. Only
    :class:`~plugins.auth.directory.UserDirectory` calls this (it tells the caches)."""
    live = await active_sessions(db, user_id)
    await db.execute(
        "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL", user_id, now()
    )
    return live


def _session(row: Row) -> Session:
    return Session(**row)
