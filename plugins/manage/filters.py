"""Reading the audit view's filter from a query string (shared by the page and the API)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from .audit import AuditFilter


def _date(text: str | None, *, end: bool = False) -> datetime | None:
    """``YYYY-MM-DD`` (UTC); an end date includes its whole day. Anything else is ignored."""
    if not text:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return day + timedelta(days=1) if end else day


def _id(text: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(text) if text else None
    except ValueError:
        return None


def audit_filter(query: Mapping[str, str]) -> AuditFilter:
    return AuditFilter(
        action=query.get("action") or None,
        actor_user_id=_id(query.get("actor")),
        target_user_id=_id(query.get("target")),
        since=_date(query.get("since")),
        until=_date(query.get("until"), end=True),
        failed_only=query.get("failed") in ("1", "on", "true"),
    )
