"""``python -m bench.ratelimit [--rounds R] [--hits N] [--postgres URL]``: what one rate-limit hit costs
a request, in this process (:class:`~proxy_core.ratelimit.LocalRateLimiter`) and in the store
(:class:`~proxy_core.db.StoreRateLimiter` on Postgres and on SQLite), as vkey's per-minute limit uses
them (a per-user key, the limit given with each hit, every hit allowed).

The variants run interleaved: each round times a block of ``N`` sequential hits of each, in an order
that rotates from round to round, so drift of a shared machine falls on all of them alike. Reported:
the median microseconds per hit over the rounds and the ratio to the in-process limiter.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import uvloop

from proxy_core.db import Database, DatabaseConfig, StoreRateLimiter
from proxy_core.ratelimit import LocalRateLimiter, Policy, RateLimiter
from proxy_core.testing import postgres_schema

from .report import table

USERS = [str(uuid.uuid4()) for _ in range(50)]
POLICY = Policy(limit=1_000_000_000, window=60.0)


async def opened(url: str) -> Database:
    db = Database(DatabaseConfig(url=url))
    await db.open()
    if not (await db.readiness()).ready:
        raise SystemExit(f"the database at {db.where} is not ready")
    return db


async def block(limiter: RateLimiter, hits: int) -> float:
    """Seconds per hit over ``hits`` sequential hits."""
    started = time.perf_counter()
    for n in range(hits):
        decision = await limiter.hit(USERS[n % len(USERS)], 1_000_000)
        assert decision.allowed
    return (time.perf_counter() - started) / hits


async def measure(rounds: int, hits: int, postgres: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        async with postgres_schema(postgres) as pg_url:
            pg, lite = await opened(pg_url), await opened(f"sqlite:///{Path(folder) / 'bench.db'}")
            limiters: dict[str, RateLimiter] = {
                "process": LocalRateLimiter(POLICY),
                "store (Postgres)": StoreRateLimiter(pg, "bench", POLICY),
                "store (SQLite)": StoreRateLimiter(lite, "bench", POLICY),
            }
            names = list(limiters)
            for name in names:  # warm up: connections, prepared statements, the rows
                await block(limiters[name], len(USERS))
            timings: dict[str, list[float]] = {name: [] for name in names}
            for round_ in range(rounds):
                for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                    timings[name].append(await block(limiters[name], hits))
            await pg.close()
            await lite.close()
    local = statistics.median(timings["process"])
    rows = []
    for name in names:
        median = statistics.median(timings[name])
        rows.append([name, f"{median * 1e6:.1f}", f"{median / local:.0f}x", f"{(median - local) * 1e6:.0f}"])
    title = f"one rate-limit hit: {rounds} interleaved rounds of {hits} sequential hits (median per hit)"
    table(title, ["limiter", "µs per hit", "vs process", "µs added per request"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.ratelimit", description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--hits", type=int, default=200)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    uvloop.run(measure(args.rounds, args.hits, args.postgres))


if __name__ == "__main__":
    main()
