"""Batched hot-path writes: flushed on the interval and on close, coalesced, retried after failure."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from proxy_core.db import ActivityWriter, BatchWriter, Database, QueryError, Transaction, UniqueViolation

USAGE_COLUMNS = (
    "user_id",
    "provider",
    "model",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "status",
    "latency_ms",
)


def usage_row(user_id: uuid.UUID, n: int) -> tuple[object, ...]:
    return (user_id, "openai", "gpt-4o", n, 2 * n, 0.5 * n, 200, 10 + n)


async def test_rows_are_written_on_the_interval(db: Database) -> None:
    writer = BatchWriter(db, "usage", USAGE_COLUMNS, interval=0.05)
    await writer.open()
    user_id = uuid.uuid4()
    for n in range(3):
        writer.add(usage_row(user_id, n))
    assert await db.fetchval("SELECT count(*) FROM usage") == 0  # nothing per request
    for _ in range(100):
        await asyncio.sleep(0.02)
        if await db.fetchval("SELECT count(*) FROM usage") == 3:
            break
    rows = await db.fetch("SELECT user_id, tokens_in, tokens_out, cost_usd, reported FROM usage ORDER BY id")
    assert rows == [
        {"user_id": user_id, "tokens_in": n, "tokens_out": 2 * n, "cost_usd": 0.5 * n, "reported": True}
        for n in range(3)
    ]
    await writer.close()


async def test_close_writes_what_is_left(db: Database) -> None:
    writer = BatchWriter(db, "usage", USAGE_COLUMNS, interval=3600)
    await writer.open()
    for n in range(1200):  # more rows than one statement's parameters allow on SQLite's old limit
        writer.add(usage_row(uuid.uuid4(), n))
    await writer.close()
    assert len(writer) == 0
    assert await db.fetchval("SELECT count(*) FROM usage") == 1200


async def test_a_failed_flush_keeps_its_rows_for_the_next(db: Database) -> None:
    writer = BatchWriter(db, "later", ("id", "note"), interval=3600)
    writer.add((1, "a"))
    with pytest.raises(QueryError):
        await writer.flush()  # the table does not exist yet
    writer.add((2, "b"))
    assert len(writer) == 2 and writer.failures == 1
    await db.execute("CREATE TABLE later (id integer PRIMARY KEY, note text)")
    assert await writer.flush() == 2
    assert await db.fetch("SELECT id, note FROM later ORDER BY id") == [
        {"id": 1, "note": "a"},
        {"id": 2, "note": "b"},
    ]


async def test_a_batch_is_written_whole_or_not_at_all(db: Database) -> None:
    """Large batches are written in slices (SQLite), yet in one transaction: a row refused in a late
    slice leaves none of the batch behind."""
    await db.execute("CREATE TABLE later (id integer PRIMARY KEY, note text)")
    writer = BatchWriter(db, "later", ("id", "note"), interval=3600)
    for n in range(1000):
        writer.add((n, "x"))
    writer.add((999, "the same id again"))
    with pytest.raises(UniqueViolation):
        await writer.flush()
    assert await db.fetchval("SELECT count(*) FROM later") == 0
    assert len(writer) == 1001
    await db.execute("DELETE FROM later")


class BuggyOnce(BatchWriter):
    """A writer whose first write fails with an error that is not the store's (a bug, say)."""

    failed = False

    async def _write(self, tx: Transaction, batch: list[tuple[Any, ...]]) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("a bug in the writer")
        await super()._write(tx, batch)


async def test_an_interval_flush_that_crashes_is_logged_and_the_flushes_go_on(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    writer = BuggyOnce(db, "usage", USAGE_COLUMNS, interval=0.02)
    await writer.open()
    writer.add(usage_row(uuid.uuid4(), 1))
    for _ in range(300):  # the flushes restart after a back-off of a second
        await asyncio.sleep(0.02)
        if await db.fetchval("SELECT count(*) FROM usage") == 1:
            break
    assert await db.fetchval("SELECT count(*) FROM usage") == 1  # the rows survived the crash
    assert "batch usage: background job 'flush' crashed; restarting" in caplog.text
    assert "RuntimeError: a bug in the writer" in caplog.text
    await writer.close()


async def test_a_full_buffer_drops_the_oldest_rows(db: Database) -> None:
    writer = BatchWriter(db, "later", ("id",), interval=3600, max_rows=3)
    for n in range(3):
        writer.add((n,))
    with pytest.raises(QueryError):
        await writer.flush()
    writer.add((3,))
    writer.add((4,))
    assert writer.dropped == 2
    await db.execute("CREATE TABLE later (id integer PRIMARY KEY)")
    await writer.flush()
    assert [row["id"] for row in await db.fetch("SELECT id FROM later ORDER BY id")] == [2, 3, 4]


async def test_activity_coalesces_per_key_latest_wins(db: Database) -> None:
    users = [uuid.uuid4() for _ in range(3)]
    for user_id in users:
        await db.execute("INSERT INTO users (id, email) VALUES ($1, $2)", user_id, f"{user_id}@x.io")
        await db.execute(
            "INSERT INTO sandboxes (id, user_id, provider) VALUES ($1, $2, 'e2b')", uuid.uuid4(), user_id
        )
    writer = ActivityWriter(db, "sandboxes", "user_id", "last_activity_at", interval=3600)
    base = datetime(2025, 1, 1, tzinfo=UTC)
    writer.touch(users[0], base + timedelta(seconds=5))
    writer.touch(users[0], base + timedelta(seconds=9))
    writer.touch(users[0], base + timedelta(seconds=7))  # older than what is queued: ignored
    writer.touch(users[1], base)
    writer.touch(uuid.uuid4(), base)  # no sandbox row: nothing to update
    assert len(writer) == 3
    assert await writer.flush() == 3
    rows = {
        row["user_id"]: row["last_activity_at"]
        for row in await db.fetch("SELECT user_id, last_activity_at FROM sandboxes")
    }
    assert rows == {users[0]: base + timedelta(seconds=9), users[1]: base, users[2]: None}


async def test_activity_retries_after_failure_and_keeps_newer_touches(db: Database) -> None:
    writer = ActivityWriter(db, "activity", "id", "seen_at", interval=0.05)
    base = datetime(2025, 1, 1, tzinfo=UTC)
    writer.touch(1, base)
    await writer.open()
    await asyncio.sleep(0.2)  # a few failed flushes: the table is missing
    assert writer.failures >= 1 and len(writer) == 1
    writer.touch(1, base + timedelta(seconds=1))
    async with db.transaction() as tx:  # table and row appear together: a flush in between finds no row
        await tx.execute("CREATE TABLE activity (id integer PRIMARY KEY, seen_at timestamptz)")
        await tx.execute("INSERT INTO activity (id) VALUES (1)")
    await writer.close()
    row = await db.fetchrow("SELECT seen_at FROM activity WHERE id = 1")
    assert row == {"seen_at": base + timedelta(seconds=1)}
