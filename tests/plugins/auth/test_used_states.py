"""SSO states are used once across every worker and replica: two :class:`UsedStates`, each on its own
:class:`Database` over one SQLite file or one Postgres schema, are two workers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from plugins.auth.used_states import UsedStates
from proxy_core.db import Database
from tests.db.backends import MakeDatabase


async def test_a_state_is_used_once_across_workers(db: Database, make_db: MakeDatabase) -> None:
    other = make_db()
    await other.open()
    first, second = UsedStates(db, 600), UsedStates(other, 600)
    results = await asyncio.gather(*(states.first_use("state-1") for states in [first, second] * 3))
    assert sorted(results) == [False] * 5 + [True]
    assert await second.first_use("state-2") is True
    assert await first.first_use("state-2") is False
    assert await db.fetchval("SELECT count(*) FROM sso_states WHERE digest = 'state-1'") == 0  # hashed


async def test_expired_states_are_purged(db: Database) -> None:
    clock = [datetime(2030, 1, 1, tzinfo=UTC)]
    states = UsedStates(db, 600, clock=lambda: clock[0])
    assert await states.first_use("old")
    clock[0] += timedelta(seconds=601)
    assert await states.first_use("new")
    assert await db.fetchval("SELECT count(*) FROM sso_states") == 1
