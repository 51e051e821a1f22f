"""The ``usage`` table (this plugin's own): one row per gateway request, queued without waiting and
written in batches by a :class:`~proxy_core.db.BatchWriter`, and the sums the limits are checked
against."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import NamedTuple

from aiohttp import web

from proxy_core.db import BatchWriter, Database

USAGE_WRITER = web.AppKey("plugins.vkey.usage_writer", BatchWriter)
"""The shared writer of ``usage`` rows among the context's resources (flushed before the database
closes, since it is registered after it)."""


class UsageRow(NamedTuple):
    """One request's ``usage`` row, its fields the table's columns (:data:`COLUMNS`). A tuple, so the
    writer queues it as it is: one is made per gateway request."""

    user_id: uuid.UUID
    key_id: uuid.UUID
    provider: str
    model: str
    tokens_in: int  # includes cache reads and writes
    tokens_out: int  # includes reasoning
    cached_tokens: int
    cache_write_tokens: int
    reported: bool  # False: the provider reported no usage (an error, or a stream cut short)
    estimated: bool  # True: the counts (some or all) are the gateway's estimate, see .estimate
    cost_usd: float | None  # None: the model has no price in the table
    status: int  # the upstream's status; 499 when the client left before the answer ended
    latency_ms: int
    created_at: datetime
    operation: str = ""  # method and path: "POST /api/v3.1/tools/execute/GITHUB_STAR_A_REPOSITORY"
    tool: str | None = None  # the tool the call executed (Composio), else None


COLUMNS: tuple[str, ...] = UsageRow._fields
"""The ``usage`` table's columns, in the order a row holds them."""


class UsageLedger:
    """Queues usage rows on the shared writer and sums a user's recorded usage."""

    def __init__(self, db: Database, writer: BatchWriter) -> None:
        self.db = db
        self.writer = writer

    def record(self, row: UsageRow) -> None:
        """Queue ``row``; never blocks."""
        self.writer.add(row)

    async def spend_since(
        self, user_id: uuid.UUID, day_start: datetime, month_start: datetime
    ) -> tuple[int, float]:
        """(tokens since ``day_start``, USD since ``month_start``) of ``user_id``, including the rows
        this process has queued but not yet written (they are flushed first)."""
        await self.writer.flush()
        row = await self.db.fetchrow(
            "SELECT COALESCE(SUM(CASE WHEN created_at >= $2 THEN tokens_in + tokens_out ELSE 0 END), 0)"
            " AS tokens, COALESCE(SUM(cost_usd), 0) AS usd"
            " FROM usage WHERE user_id = $1 AND created_at >= $3",
            user_id,
            day_start,
            month_start,
        )
        assert row is not None  # an aggregate always yields one row
        return int(row["tokens"]), float(row["usd"])
