"""Pending email sign-in codes in the store's ``login_codes`` table, shared by every worker and replica.

One row per (lower-cased) address holds the keyed digest of its code (never the code), when it expires
and how many wrong guesses it still allows. Every change is a single conditional statement, so
concurrent verifications in different processes cannot both consume a code nor overspend its attempts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from proxy_core.db import Connection

from .sessions import now


@dataclass(frozen=True, slots=True)
class PendingCode:
    email: str
    digest: str
    expires_at: datetime
    attempts_left: int


class LoginCodes:
    """Queries on ``login_codes``; ``clock`` gives the current time (tests move it on)."""

    def __init__(self, db: Connection, clock: Callable[[], datetime] = now) -> None:
        self.db = db
        self.clock = clock

    async def put(self, email: str, digest: str, *, ttl: float, attempts: int) -> None:
        """Store the pending code for ``email`` (replacing any earlier one) and drop expired codes."""
        at = self.clock()
        await self.db.execute(
            "INSERT INTO login_codes (email, digest, expires_at, attempts_left, created_at) "
            "VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (email) DO UPDATE SET digest = excluded.digest, expires_at = excluded.expires_at, "
            "attempts_left = excluded.attempts_left, created_at = excluded.created_at",
            email,
            digest,
            at + timedelta(seconds=ttl),
            attempts,
            at,
        )
        await self.purge()

    async def get(self, email: str) -> PendingCode | None:
        """The live code for ``email``: not expired, attempts left."""
        row = await self.db.fetchrow(
            "SELECT email, digest, expires_at, attempts_left FROM login_codes "
            "WHERE email = $1 AND expires_at > $2 AND attempts_left > 0",
            email,
            self.clock(),
        )
        return None if row is None else PendingCode(**row)

    async def consume(self, email: str, digest: str) -> bool:
        """Use up the code: ``True`` for exactly one caller, however many try at once."""
        deleted = await self.db.execute(
            "DELETE FROM login_codes "
            "WHERE email = $1 AND digest = $2 AND expires_at > $3 AND attempts_left > 0",
            email,
            digest,
            self.clock(),
        )
        return deleted == 1

    async def miss(self, email: str) -> int | None:
        """Count one wrong guess: the attempts left afterwards (the code is void, and deleted, at 0), or
        ``None`` when there was no live code to guess at any more."""
        left = await self.db.fetchval(
            "UPDATE login_codes SET attempts_left = attempts_left - 1 "
            "WHERE email = $1 AND attempts_left > 0 AND expires_at > $2 RETURNING attempts_left",
            email,
            self.clock(),
        )
        if left is None:
            return None
        if left <= 0:
            await self.db.execute("DELETE FROM login_codes WHERE email = $1 AND attempts_left <= 0", email)
        return int(left)

    async def purge(self) -> int:
        """Delete expired codes."""
        return await self.db.execute("DELETE FROM login_codes WHERE expires_at <= $1", self.clock())
