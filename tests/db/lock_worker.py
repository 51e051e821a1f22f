"""A separate process for the single-flight test: ``python -m tests.db.lock_worker URL NAME ROUNDS START``.

Waits until the wall-clock time START, then ROUNDS times takes the lock on "user-1", holds it a
little, and records when it held it in ``held(worker, started, ended)``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime

from proxy_core.db import Database, DatabaseConfig


async def main(url: str, name: str, rounds: int, start: float) -> None:
    db = Database(DatabaseConfig(url=url, migrate_on_start=False))
    await db.connect()
    try:
        await asyncio.sleep(max(0.0, start - time.time()))
        for _ in range(rounds):
            async with db.user_lock("user-1"):
                started = datetime.now(UTC)
                await asyncio.sleep(0.05)
                ended = datetime.now(UTC)
            await db.execute(
                "INSERT INTO held (worker, started, ended) VALUES ($1, $2, $3)", name, started, ended
            )
    finally:
        await db.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
