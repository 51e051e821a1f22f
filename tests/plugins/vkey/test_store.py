"""The gateway's store on SQLite and Postgres: keys through their lifecycle as the hot path judges
them (with its cache), and usage rows written in batches and summed for the limits."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from plugins.auth import User, UserDirectory
from plugins.auth.users import Users
from plugins.vkey.cache import KeyCache
from plugins.vkey.checker import KeyChecker
from plugins.vkey.keys import KeyRecord, KeyRejected, display_prefix, hash_key, new_key
from plugins.vkey.ledger import COLUMNS, UsageLedger, UsageRow
from plugins.vkey.lifecycle import KeyExists, KeyService
from plugins.vkey.limits import SpendTracker
from plugins.vkey.store import VirtualKeys
from proxy_core.db import BatchWriter, Database, NotFound


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def rejected(checker: KeyChecker, key: str) -> str:
    with pytest.raises(KeyRejected) as caught:
        await checker.check(key)
    return caught.value.reason


@pytest.fixture
async def ada(db: Database) -> User:
    return await Users(db).create("Ada@Example.com")


async def test_issue_stores_only_a_hash_and_the_checker_accepts_the_key(db: Database, ada: User) -> None:
    service = KeyService(db)
    issued = await service.issue("ada@example.com", expires_in=timedelta(days=1))
    assert issued.key.startswith(f"vk_{ada.id}_") and len(issued.key) == len(f"vk_{ada.id}_") + 64
    rows = await db.fetch("SELECT * FROM virtual_keys")
    assert len(rows) == 1 and issued.key not in repr(rows)
    assert rows[0]["key_hash"] == hash_key(issued.key) and rows[0]["prefix"] == display_prefix(issued.key)
    assert rows[0]["user_id"] == ada.id
    record = await KeyChecker(db, KeyCache()).check(issued.key)
    assert record == issued.record
    with pytest.raises(KeyExists):
        await service.issue(ada.id)  # by id this time
    with pytest.raises(NotFound):
        await service.issue("nobody@example.com")


async def test_rotation_grace_then_rotated(db: Database, ada: User) -> None:
    service = KeyService(db, grace=timedelta(hours=1))
    checker = KeyChecker(db, service.cache)
    old = await service.issue(ada.id)
    new = await service.rotate("ada@example.com")
    assert (await checker.check(old.key)).grace_until is not None
    assert (await checker.check(new.key)).grace_until is None
    newest = await service.rotate(ada.id, grace=timedelta(0))
    assert await rejected(checker, old.key) == "rotated"
    assert await rejected(checker, new.key) == "rotated"
    await checker.check(newest.key)
    assert [k.state for k in await service.list()] == ["rotated", "rotated", "active"]


async def test_revoke_and_expire(db: Database, ada: User) -> None:
    service = KeyService(db)
    checker = KeyChecker(db, service.cache, ttl=3600)
    issued = await service.issue(ada.id)
    await checker.check(issued.key)  # cached for an hour
    assert await service.revoke("ada@example.com") == 1
    assert await rejected(checker, issued.key) == "revoked"  # at once: the service shares the cache
    assert await service.revoke("ada@example.com") == 0
    expired = await service.issue(ada.id, expires_in=timedelta(seconds=-1))
    assert await rejected(checker, expired.key) == "expired"


async def test_another_replica_sees_a_revocation_within_the_ttl(db: Database, ada: User) -> None:
    clock = Clock()
    elsewhere = KeyChecker(db, KeyCache(clock), ttl=5.0)  # its own cache, like another replica
    issued = await KeyService(db).issue(ada.id)
    await elsewhere.check(issued.key)
    await KeyService(db).revoke(ada.id)
    clock.now = 4.9
    await elsewhere.check(issued.key)  # still cached
    clock.now = 5.0
    assert await rejected(elsewhere, issued.key) == "revoked"


async def test_a_disabled_or_deleted_user_is_refused(db: Database, ada: User) -> None:
    clock = Clock()
    service = KeyService(db, KeyCache(clock))
    checker = KeyChecker(db, service.cache, ttl=5.0)
    issued = await service.issue(ada.id)
    await checker.check(issued.key)
    assert (await service.set_disabled("ada@example.com", True)).disabled
    assert await rejected(checker, issued.key) == "disabled"
    await service.set_disabled(ada.id, False)
    await checker.check(issued.key)
    await UserDirectory(db).set_disabled(
        ada.id, True
    )  # another process's directory (`users disable`): seen within the TTL
    await checker.check(issued.key)
    clock.now = 5.0
    assert await rejected(checker, issued.key) == "disabled"
    await db.execute("DELETE FROM users WHERE id = $1", ada.id)  # keys go with their user
    clock.now = 10.0
    assert await rejected(checker, issued.key) == "invalid"


async def test_spliced_and_forged_keys_are_invalid(db: Database, ada: User) -> None:
    bo = await Users(db).create("bo@example.com")
    service = KeyService(db)
    checker = KeyChecker(db, service.cache)
    issued = await service.issue(ada.id)
    await service.issue(bo.id)
    await checker.check(issued.key)  # known good now: a key differing from it is judged afresh
    assert await rejected(checker, issued.key.replace(str(ada.id), str(bo.id))) == "invalid"
    forged = new_key(bo.id)  # stored as Ada's, but naming Bo
    await VirtualKeys(db).insert(
        KeyRecord(uuid.uuid4(), ada.id, display_prefix(forged), hash_key(forged), datetime.now(UTC))
    )
    assert await rejected(checker, forged) == "invalid"
    assert await rejected(checker, "vk_" + str(ada.id) + "_" + "0" * 64) == "invalid"


def _row(user: uuid.UUID, tokens: int, usd: float | None, at: datetime) -> UsageRow:
    return UsageRow(
        user_id=user,
        key_id=uuid.uuid4(),
        provider="openai",
        model="gpt-4o-mini",
        tokens_in=tokens,
        tokens_out=1,
        cached_tokens=0,
        cache_write_tokens=0,
        reported=True,
        estimated=usd == 0.5,
        cost_usd=usd,
        status=200,
        latency_ms=12,
        created_at=at,
    )


async def test_usage_rows_are_batched_and_summed_per_day_and_month(db: Database, ada: User) -> None:
    writer = BatchWriter(db, "usage", COLUMNS, interval=3600)
    ledger = UsageLedger(db, writer)
    now = datetime.now(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    other = uuid.uuid4()
    for row in (
        _row(ada.id, 10, 0.5, now),
        _row(ada.id, 20, None, now),  # no price known: counts tokens, not dollars
        _row(ada.id, 100, 1.0, month + timedelta(microseconds=1) if month < day else now),
        _row(ada.id, 1000, 7.0, month - timedelta(seconds=1)),  # last month
        _row(other, 5, 3.0, now),
    ):
        ledger.record(row)
    assert await db.fetchval("SELECT count(*) FROM usage") == 0  # queued, not written
    tokens, usd = await ledger.spend_since(ada.id, day, month)  # flushes first
    assert await db.fetchval("SELECT count(*) FROM usage") == 5
    assert usd == pytest.approx(1.5)
    assert tokens == (10 + 1) + (20 + 1) + ((100 + 1) if month == day else 0)
    stored = await db.fetchrow("SELECT * FROM usage WHERE tokens_in = 20")
    assert stored is not None
    assert (stored["cost_usd"], stored["reported"], stored["latency_ms"], stored["user_id"]) == (
        None,
        True,
        12,
        ada.id,
    )
    flags = await db.fetch("SELECT estimated FROM usage WHERE user_id = $1 ORDER BY tokens_in", ada.id)
    assert [row["estimated"] for row in flags] == [True, False, False, False]  # a boolean on both
    await writer.close()


async def test_running_requests_count_toward_the_budget(db: Database, ada: User) -> None:
    ledger = UsageLedger(db, BatchWriter(db, "usage", COLUMNS, interval=3600))
    spend = SpendTracker(ledger, refresh_seconds=3600)
    assert await spend.totals(ada.id) == (0, 0.0)
    spend.started(ada.id)
    spend.finished(ada.id, 11, 0.004)
    assert await spend.totals(ada.id) == (11, pytest.approx(0.004))
    spend.started(ada.id)
    spend.started(ada.id)  # two more running: each estimated at the latest one's cost
    tokens, usd = await spend.totals(ada.id)
    assert (tokens, usd) == (33, pytest.approx(0.012))
    await ledger.writer.close()


async def test_a_request_finishing_during_a_re_read_stays_counted(db: Database, ada: User) -> None:
    """A request that ends while the sums are being read again queues its row too late for that read:
    its cost must not vanish from the kept sums when the read lands (it did: a budget held one request
    late, and the refusal named a stale sum)."""
    ledger = UsageLedger(db, BatchWriter(db, "usage", COLUMNS, interval=3600))
    store_answers = asyncio.Event()
    store_answers.set()

    class SlowStore:
        async def spend_since(self, user_id: uuid.UUID, day: datetime, month: datetime) -> tuple[int, float]:
            sums = await ledger.spend_since(user_id, day, month)  # read now...
            await store_answers.wait()  # ...answered later
            return sums

    clock = [0.0]
    spend = SpendTracker(SlowStore(), refresh_seconds=5, clock=lambda: clock[0])
    assert await spend.totals(ada.id) == (0, 0.0)
    spend.started(ada.id)
    store_answers.clear()
    clock[0] = 6.0
    assert await spend.totals(ada.id) == (0, 0.0)  # starts the re-read, which reads before the row
    await asyncio.sleep(0.05)
    spend.finished(ada.id, 41, 0.25)  # the request ends; its row (40 in, 1 out) is queued after the read
    ledger.record(_row(ada.id, 40, 0.25, datetime.now(UTC)))
    store_answers.set()
    for _ in range(100):  # until the re-read lands
        await asyncio.sleep(0.01)
        if not spend._loading:
            break
    assert await spend.totals(ada.id) == (41, pytest.approx(0.25))
    clock[0] = 12.0  # the next re-read finds the row and nothing finished meanwhile: the same sums
    await spend.totals(ada.id)
    await asyncio.sleep(0.05)
    assert await spend.totals(ada.id) == (41, pytest.approx(0.25))
    await ledger.writer.close()


async def test_spend_is_re_read_in_the_background(db: Database, ada: User) -> None:
    """Past ``refresh_seconds`` a request goes on with the kept sums while the store is read again
    (here a slow one): only the first read of the day makes requests wait."""
    ledger = UsageLedger(db, BatchWriter(db, "usage", COLUMNS, interval=3600))
    store_answers = asyncio.Event()
    store_answers.set()
    reads = 0

    class SlowStore:
        async def spend_since(self, user_id: uuid.UUID, day: datetime, month: datetime) -> tuple[int, float]:
            nonlocal reads
            reads += 1
            await store_answers.wait()
            return await ledger.spend_since(user_id, day, month)

    clock = [0.0]
    spend = SpendTracker(SlowStore(), refresh_seconds=5, clock=lambda: clock[0])
    assert await spend.totals(ada.id) == (0, 0.0)
    ledger.record(_row(ada.id, 40, 0.25, datetime.now(UTC)))  # written by another worker, say
    store_answers.clear()
    clock[0] = 6.0
    asking = [asyncio.ensure_future(spend.totals(ada.id)) for _ in range(2)]
    await asyncio.sleep(0)  # the requests run...
    await asyncio.sleep(0)  # ...and the re-read they started, which waits for the store
    assert all(task.done() for task in asking)  # answered at once, with the kept sums
    assert [task.result() for task in asking] == [(0, 0.0)] * 2
    assert reads == 2  # one re-read however many requests came meanwhile
    store_answers.set()
    for _ in range(500):  # until the re-read lands
        await asyncio.sleep(0.01)
        if await spend.totals(ada.id) != (0, 0.0):
            break
    assert await spend.totals(ada.id) == (41, pytest.approx(0.25))
    await ledger.writer.close()


async def test_requests_waiting_for_a_key_share_one_store_read(db: Database, ada: User) -> None:
    """When a key's cache entry runs out under load, the requests that want it share one read of the
    key and one of its owner, instead of each queueing its own behind the others."""
    service = KeyService(db)
    issued = await service.issue(ada.id)
    checker = KeyChecker(db, KeyCache(), ttl=3600)
    reads: list[str] = []
    find, get = checker.keys.find, checker.users.get

    async def slow_find(digest: str) -> KeyRecord | None:  # a busy store: the others arrive meanwhile
        reads.append("key")
        await asyncio.sleep(0.1)
        return await find(digest)

    async def slow_get(user: uuid.UUID) -> User:
        reads.append("user")
        await asyncio.sleep(0.1)
        return await get(user)

    checker.keys.find = slow_find  # type: ignore[method-assign]
    checker.users.get = slow_get  # type: ignore[method-assign]
    records = await asyncio.gather(*(checker.check(issued.key) for _ in range(20)))
    assert records == [issued.record] * 20
    assert reads == ["key", "user"]
    assert await rejected(checker, issued.key.replace(issued.key[-4:], "0000")) == "invalid"
