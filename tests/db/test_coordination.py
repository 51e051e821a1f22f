"""Single-flight locks across processes (Postgres, and SQLite's workers on one machine); leader election
across processes on Postgres, always this process on SQLite."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from asyncio.subprocess import PIPE
from pathlib import Path

from proxy_core.db import Database, DatabaseConfig, lock_id
from tests.db.backends import MakeDatabase

ROOT = Path(__file__).parents[2]


async def test_user_lock_is_single_flight_across_two_processes(db_url: str) -> None:
    """Two worker processes on one store (Postgres, or one SQLite file with ``workers > 1``)."""
    url = db_url
    db = Database(DatabaseConfig(url=url, migrate_on_start=False))
    await db.connect()
    try:
        await db.execute("CREATE TABLE held (worker text, started timestamptz, ended timestamptz)")
        start = time.time() + 1.5  # both processes are connected by then and contend from the first round
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.db.lock_worker", url, name, "5", str(start), cwd=ROOT
            )
            for name in ("a", "b")
        ]
        assert [await worker.wait() for worker in workers] == [0, 0]
        held = await db.fetch("SELECT worker, started, ended FROM held ORDER BY started")
    finally:
        await db.close()
    assert sorted(row["worker"] for row in held) == ["a"] * 5 + ["b"] * 5
    for earlier, later in itertools.pairwise(held):
        assert earlier["ended"] <= later["started"], f"{earlier} overlaps {later}"


async def test_user_lock_serializes_one_key_not_others(make_db: MakeDatabase) -> None:
    db = make_db(migrate_on_start=False)
    await db.open()
    events: list[str] = []

    async def work(key: str, name: str) -> None:
        async with db.user_lock(key):
            events.append(f"{name} in")
            await asyncio.sleep(0.05)
            events.append(f"{name} out")

    await asyncio.gather(work("k", "a"), work("k", "b"), work("other", "c"))
    assert events.index("a out") < events.index("b in") or events.index("b out") < events.index("a in")
    assert events.index("c in") < max(events.index("a out"), events.index("b out"))


async def test_one_leader_and_failover(db_url: str) -> None:
    db = Database(DatabaseConfig(url=db_url, migrate_on_start=False))
    await db.connect()
    first, second = db.leadership("pauser"), db.leadership("pauser")
    other_job = db.leadership("reaper")
    try:
        assert await first.is_leader() is True
        assert await second.is_leader() is False
        assert await first.is_leader() is True  # still leading on the next tick
        assert await other_job.is_leader() is True  # a different job has its own leader
        await first.close()
        assert await second.is_leader() is True
        assert await first.is_leader() is False
    finally:
        for contender in (first, second, other_job):
            await contender.close()
        await db.close()


async def test_a_leader_whose_session_dies_is_replaced(pg_url: str) -> None:
    db = Database(DatabaseConfig(url=pg_url, migrate_on_start=False))
    await db.connect()
    first, second = db.leadership("pauser"), db.leadership("pauser")
    try:
        assert await first.is_leader() is True
        key = lock_id("pauser")
        killed = await db.fetchval(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = $1 AND objid = $2 AND objsubid = 1",
            (key >> 32) & 0xFFFFFFFF,
            key & 0xFFFFFFFF,
        )
        assert killed is True
        assert await second.is_leader() is True
        assert await first.is_leader() is False
    finally:
        await first.close()
        await second.close()
        await db.close()


_LEAD_THEN_WAIT = """
import asyncio, sys
from proxy_core.db import Database, DatabaseConfig

async def main():
    db = Database(DatabaseConfig(url=sys.argv[1], migrate_on_start=False))
    await db.connect()
    print(await db.leadership("pauser").is_leader(), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until told to end

asyncio.run(main())
"""


async def test_one_sqlite_leader_among_worker_processes(sqlite_url: str) -> None:
    db = Database(DatabaseConfig(url=sqlite_url, migrate_on_start=False))
    await db.connect()
    here = db.leadership("pauser")
    try:
        other = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _LEAD_THEN_WAIT, sqlite_url, cwd=ROOT, stdin=PIPE, stdout=PIPE
        )
        assert other.stdout is not None and other.stdin is not None
        assert await other.stdout.readline() == b"True\n"  # the other worker leads...
        assert await here.is_leader() is False  # ...so this one does not
        assert await db.leadership("reaper").is_leader() is True  # another job has its own leader
        other.stdin.close()
        assert await other.wait() == 0
        assert await here.is_leader() is True  # the leader's process ended: this one takes over
    finally:
        await here.close()
        await db.close()
