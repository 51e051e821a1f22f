"""The ``audit_log`` table (this plugin's own): who did what to whom, when, and how it ended."""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from proxy_core.db import Connection, Row

_COLUMNS = "id, at, actor_user_id, action, target_user_id, detail"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor_user_id: uuid.UUID | None
    action: str
    target_user_id: uuid.UUID | None
    detail: dict[str, Any]

    @property
    def result(self) -> str:
        """``ok`` or ``failed: <reason>`` (kept in ``detail``)."""
        return str(self.detail.get("result", "ok"))


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What to show; every field narrows the list, ``None`` leaves it open."""

    action: str | None = None
    actor_user_id: uuid.UUID | None = None
    target_user_id: uuid.UUID | None = None
    since: datetime | None = None
    until: datetime | None = None
    failed_only: bool = False


class AuditLog:
    """Queries on ``audit_log``. ``db`` may be the database or a transaction's connection."""

    def __init__(self, db: Connection) -> None:
        self.db = db

    async def record(
        self,
        actor: uuid.UUID | None,
        action: str,
        *,
        target: uuid.UUID | None = None,
        result: str = "ok",
        **detail: Any,
    ) -> None:
        """One entry; ``result`` is ``ok`` or a short reason it failed (no secrets in ``detail``)."""
        await self.db.execute(
            "INSERT INTO audit_log (actor_user_id, action, target_user_id, detail) VALUES ($1, $2, $3, $4)",
            actor,
            action,
            target,
            {**detail, "result": result},
        )

    async def entries(self, where: AuditFilter = AuditFilter(), limit: int = 500) -> list[AuditEntry]:
        """Newest first."""
        clauses: list[str] = []
        values: list[object] = []

        def add(clause: str, value: object) -> None:
            values.append(value)
            clauses.append(clause.format(f"${len(values)}"))

        if where.action:
            add("action = {}", where.action)
        if where.actor_user_id:
            add("actor_user_id = {}", where.actor_user_id)
        if where.target_user_id:
            add("target_user_id = {}", where.target_user_id)
        if where.since:
            add("at >= {}", where.since)
        if where.until:
            add("at < {}", where.until)
        condition = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        values.append(limit)
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM audit_log {condition} ORDER BY at DESC, id DESC LIMIT ${len(values)}",
            *values,
        )
        found = [_entry(row) for row in rows]
        return [e for e in found if e.result != "ok"] if where.failed_only else found

    async def actions(self) -> list[str]:
        """Every action name recorded so far (for the filter's choices)."""
        rows = await self.db.fetch("SELECT DISTINCT action FROM audit_log ORDER BY action")
        return [str(row["action"]) for row in rows]


def _entry(row: Row) -> AuditEntry:
    return AuditEntry(**row)


def entries_csv(entries: list[AuditEntry], emails: dict[uuid.UUID, str]) -> str:
    """The entries as CSV (``at, actor, action, target, result, detail``), users shown by email."""

    def who(user_id: uuid.UUID | None) -> str:
        return "" if user_id is None else emails.get(user_id, str(user_id))

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["at", "actor", "action", "target", "result", "detail"])
    for entry in entries:
        detail = {k: v for k, v in entry.detail.items() if k != "result"}
        writer.writerow(
            [
                entry.at.isoformat(timespec="seconds"),
                who(entry.actor_user_id),
                entry.action,
                who(entry.target_user_id),
                entry.result,
                " ".join(f"{k}={v}" for k, v in sorted(detail.items())),
            ]
        )
    return out.getvalue()
