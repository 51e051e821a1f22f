"""Single-use SSO states in the store's ``sso_states`` table, shared by every worker and replica.

The callback records the state it is about to honour; the ``INSERT`` decides: of every process that
sees the same state (a replayed or doubled callback), exactly one gets the row. Only a SHA-256 of the
state is kept, until the flow would have expired anyway.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta

from proxy_core.db import Connection

from .sessions import now


class UsedStates:
    """Queries on ``sso_states``; ``clock`` gives the current time (tests move it on)."""

    def __init__(self, db: Connection, ttl: float, clock: Callable[[], datetime] = now) -> None:
        self.db = db
        self.ttl = timedelta(seconds=ttl)
        self.clock = clock

    async def first_use(self, state: str) -> bool:
        """``True`` for exactly one caller per state, however many try at once, anywhere."""
        at = self.clock()
        await self.db.execute("DELETE FROM sso_states WHERE expires_at <= $1", at)
        inserted = await self.db.execute(
            "INSERT INTO sso_states (digest, expires_at) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
            hashlib.sha256(state.encode()).hexdigest(),
            at + self.ttl,
        )
        return inserted == 1
