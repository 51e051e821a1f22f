"""Who spent what: sums over the ``usage`` table for ``keys list``, ``shmastra-cloud usage`` and the
Manage UI. Sums are computed by the database, grouped by day, provider or model (and user)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from proxy_core.db import Database

Grouping = Literal["day", "provider", "model"]


@dataclass(frozen=True, slots=True)
class KeyUsage:
    """One key's last use (ever) and its tokens and cost since the start of the month."""

    last_used: datetime | None = None
    tokens: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class UsageLine:
    """One user's usage for one day, provider or model (``group``)."""

    user_id: uuid.UUID
    group: str
    requests: int
    tokens_in: int
    tokens_out: int
    cost_usd: float
    unpriced: int
    """Requests whose model had no known price (not in ``cost_usd``)."""
    tool_executions: int = 0
    """Tool calls (Composio executions, MCP ``tools/call``): priced by nobody, counted here."""
    estimated: int = 0
    """Requests counted at the gateway's estimate (their stream ended before the provider's count)."""


def month_start(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


class UsageReports:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def per_key(self, since: datetime) -> dict[uuid.UUID, KeyUsage]:
        """Every key that was ever used: its last use, and tokens and cost since ``since``."""
        rows = await self.db.fetch(
            "SELECT key_id, MAX(created_at) AS last_used,"
            " COALESCE(SUM(CASE WHEN created_at >= $1 THEN tokens_in + tokens_out ELSE 0 END), 0) AS tokens,"
            " COALESCE(SUM(CASE WHEN created_at >= $1 THEN cost_usd ELSE 0 END), 0) AS cost"
            " FROM usage WHERE key_id IS NOT NULL GROUP BY key_id",
            since,
        )
        return {
            row["key_id"]: KeyUsage(_as_datetime(row["last_used"]), int(row["tokens"]), float(row["cost"]))
            for row in rows
        }

    async def summary(
        self,
        *,
        by: Grouping,
        since: datetime,
        user_id: uuid.UUID | None = None,
        until: datetime | None = None,
    ) -> list[UsageLine]:
        """Usage since ``since`` (and before ``until``, when given) per user and ``by``, the biggest
        spender first within each group."""
        group = {
            "provider": "provider",
            "model": "model",
            "day": "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
            if self.db.dialect == "postgres"
            else "substr(created_at, 1, 10)",
        }[by]
        where = "created_at >= $1"
        args: list[object] = [since]
        if user_id is not None:
            args.append(user_id)
            where += f" AND user_id = ${len(args)}"
        if until is not None:
            args.append(until)
            where += f" AND created_at < ${len(args)}"
        rows = await self.db.fetch(
            f"SELECT user_id, {group} AS grp, COUNT(*) AS requests,"
            " COALESCE(SUM(tokens_in), 0) AS tokens_in, COALESCE(SUM(tokens_out), 0) AS tokens_out,"
            " COALESCE(SUM(cost_usd), 0) AS cost,"
            " SUM(CASE WHEN cost_usd IS NULL AND model <> '' THEN 1 ELSE 0 END) AS unpriced,"
            " COUNT(tool) AS tool_executions, SUM(CASE WHEN estimated THEN 1 ELSE 0 END) AS estimated"
            f" FROM usage WHERE {where} GROUP BY user_id, {group}",
            *args,
        )
        lines = [
            UsageLine(
                row["user_id"],
                str(row["grp"]),
                int(row["requests"]),
                int(row["tokens_in"]),
                int(row["tokens_out"]),
                float(row["cost"]),
                int(row["unpriced"]),
                int(row["tool_executions"]),
                int(row["estimated"]),
            )
            for row in rows
        ]
        return sorted(lines, key=lambda line: (line.group, -line.cost_usd, -line.tokens_in - line.tokens_out))


def _as_datetime(value: object) -> datetime | None:
    """``MAX()`` of a timestamp column: a datetime on Postgres, the stored ISO text on SQLite."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))
