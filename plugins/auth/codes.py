"""Pending email sign-in codes in the store's ``login_codes`` table, shared by every worker and replica.

A code belongs to an address *and* to the sign-in flow that asked for it (the random id in that
browser's encrypted flow cookie): codes asked for the same address from another browser are rows of
their own, so they neither replace nor use up this one's. Each row holds the keyed digest of its code
(never the code), when it expires and how many wrong guesses it still allows. Every change is a single
conditional statement, so concurrent verifications in different processes cannot both consume a code
nor overspend its attempts.
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
    flow: str
    digest: str
    expires_at: datetime
    attempts_left: int


class LoginCodes:
    """Queries on ``login_codes``; ``clock`` gives the current time (tests move it on)."""

    def __init__(self, db: Connection, clock: Callable[[], datetime] = now) -> None:
        self.db = db
        self.clock = clock

    async def put(self, email: str, flow: str, digest: str, *, ttl: float, attempts: int) -> None:
        """Store the pending code of ``flow`` for ``email`` (replacing that flow's earlier one) and
        drop expired codes."""
        at = self.clock()
        await self.db.execute(
            "INSERT INTO login_codes (email, flow, digest, expires_at, attempts_left, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6) "
            "ON CONFLICT (email, flow) DO UPDATE SET digest = excluded.digest, "
            "expires_at = excluded.expires_at, attempts_left = excluded.attempts_left, "
            "created_at = excluded.created_at",
            email,
            flow,
            digest,
            at + timedelta(seconds=ttl),
            attempts,
            at,
        )
        await self.purge()

    async def get(self, email: str, flow: str) -> PendingCode | None:
        """The live code of ``flow`` for ``email``: not expired, attempts left."""
        row = await self.db.fetchrow(
            "SELECT email, flow, digest, expires_at, attempts_left FROM login_codes "
            "WHERE email = $1 AND flow = $2 AND expires_at > $3 AND attempts_left > 0",
            email,
            flow,
            self.clock(),
        )
        return None if row is None else PendingCode(**row)

    async def consume(self, email: str, flow: str, digest: str) -> bool:
        """Use up the code: ``True`` for exactly one caller, however many try at once."""
        deleted = await self.db.execute(
            "DELETE FROM login_codes "
            "WHERE email = $1 AND flow = $2 AND digest = $3 AND expires_at > $4 AND attempts_left > 0",
            email,
            flow,
            digest,
            self.clock(),
        )
        return deleted == 1

    async def miss(self, email: str, flow: str) -> int | None:
        """Count one wrong guess: the attempts left afterwards (the code is void, and deleted, at 0), or
        ``None`` when there was no live code to guess at any more."""
        left = await self.db.fetchval(
            "UPDATE login_codes SET attempts_left = attempts_left - 1 "
            "WHERE email = $1 AND flow = $2 AND attempts_left > 0 AND expires_at > $3 "
            "RETURNING attempts_left",
            email,
            flow,
            self.clock(),
        )
        if left is None:
            return None
        if left <= 0:
            await self.db.execute(
                "DELETE FROM login_codes WHERE email = $1 AND flow = $2 AND attempts_left <= 0", email, flow
            )
        return int(left)

    async def purge(self) -> int:
        """Delete expired codes."""
        return await self.db.execute("DELETE FROM login_codes WHERE expires_at <= $1", self.clock())
