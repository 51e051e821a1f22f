"""Filtering and sorting the sandbox list (the page, the API and the live stream share it)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from .sandboxes import SandboxView

SORTS = ("email", "state", "activity", "version")
_NEVER = datetime.min.replace(tzinfo=UTC)


def select(views: list[SandboxView], query: Mapping[str, str]) -> list[SandboxView]:
    """``state`` (a state, ``outdated`` or ``attention``), ``q`` (part of an email) and ``sort``
    (``email``, ``state``, ``activity``: most recent first, ``version``)."""
    state = query.get("state", "")
    needle = query.get("q", "").strip().lower()
    chosen = [
        v
        for v in views
        if (
            not state
            or v.state == state
            or (state == "outdated" and v.outdated)
            or (state == "attention" and v.needs_attention)
        )
        and (not needle or needle in v.email.lower())
    ]
    sort = query.get("sort", "email")
    if sort == "state":
        chosen.sort(key=lambda v: (v.state, v.email))
    elif sort == "activity":
        chosen.sort(key=lambda v: v.last_activity_at or _NEVER, reverse=True)
    elif sort == "version":
        chosen.sort(key=lambda v: (v.template_version or "", v.email))
    else:
        chosen.sort(key=lambda v: v.email)
    return chosen
