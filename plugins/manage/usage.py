"""Usage for the Manage UI: tokens and cost per user, provider and model over a period (vkey's
:class:`UsageReports`), budget status this month, sandbox running hours, and the CSV export."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from aiohttp import web

from plugins.vkey import KeyListing, UsageLine, UsageReports
from proxy_core.db import Database

Grouping = Literal["provider", "model", "day"]
GROUPINGS: tuple[Grouping, ...] = ("provider", "model", "day")
PRESETS = {"7d": 7, "30d": 30, "90d": 90}


@dataclass(frozen=True, slots=True)
class Period:
    since: datetime
    until: datetime
    key: str
    """The preset (``month``, ``7d``, ...) or ``custom``."""

    @property
    def days(self) -> list[str]:
        day, out = self.since.date(), []
        while day < self.until.date() or (
            day == self.until.date() and self.until.time() > datetime.min.time()
        ):
            out.append(day.isoformat())
            day += timedelta(days=1)
        return out


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def period_from(query: Mapping[str, str], now: datetime | None = None) -> Period:
    """``period`` = ``month`` (default), ``7d``, ``30d``, ``90d``; or ``since``/``until`` dates
    (``YYYY-MM-DD``, UTC, the end day included). Raises ``ValueError`` for a bad date or order."""
    now = now or datetime.now(UTC)
    since_text, until_text = query.get("since", ""), query.get("until", "")
    if since_text or until_text:
        try:
            since = (
                datetime.strptime(since_text, "%Y-%m-%d").replace(tzinfo=UTC)
                if since_text
                else month_start(now)
            )
            until = (
                datetime.strptime(until_text, "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(days=1)
                if until_text
                else now
            )
        except ValueError:
            raise ValueError("Dates are YYYY-MM-DD.") from None
        if until <= since:
            raise ValueError("The period must end after it starts.")
        return Period(since, until, "custom")
    key = query.get("period", "month")
    if key in PRESETS:
        return Period(now - timedelta(days=PRESETS[key]), now, key)
    return Period(month_start(now), now, "month")


def grouping(query: Mapping[str, str]) -> Grouping:
    """``by`` from the query (default ``provider``); 400 for anything else."""
    by = query.get("by", "provider")
    for known in GROUPINGS:
        if by == known:
            return known
    raise web.HTTPBadRequest(text=f"by must be one of {', '.join(GROUPINGS)}.")


@dataclass(frozen=True, slots=True)
class Budget:
    limit_usd: float
    """0: no budget."""
    spent_usd: float

    @property
    def status(self) -> str:
        if not self.limit_usd:
            return "no budget"
        share = self.spent_usd / self.limit_usd
        return "over" if share >= 1 else ("near" if share >= 0.8 else "ok")


@dataclass
class UserUsage:
    user_id: uuid.UUID
    email: str
    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0
    budget: Budget = field(default_factory=lambda: Budget(0.0, 0.0))
    hours: float | None = None


@dataclass(frozen=True, slots=True)
class UsageView:
    period: Period
    users: list[UserUsage]
    lines: list[UsageLine]
    """Per user and ``by`` (provider, model or day)."""
    by: Grouping
    daily_cost: list[tuple[str, float]]


def _budget_limits(keys: list[KeyListing], default: float) -> dict[uuid.UUID, float]:
    """Each user's monthly budget: their newest key's own, else the stage's."""
    limits: dict[uuid.UUID, float] = {}
    for listing in sorted(keys, key=lambda k: k.record.created_at):
        own = listing.record.limits.monthly_budget_usd
        limits[listing.record.user_id] = default if own is None else own
    return limits


async def usage_view(
    db: Database,
    emails: dict[uuid.UUID, str],
    keys: list[KeyListing],
    default_budget: float,
    period: Period,
    by: Grouping,
    hours: dict[uuid.UUID, float] | None = None,
) -> UsageView:
    reports = UsageReports(db)
    lines = await reports.summary(by=by, since=period.since, until=period.until)
    days = await reports.summary(by="day", since=period.since, until=period.until)
    month = await reports.summary(by="provider", since=month_start(datetime.now(UTC)))
    spent: dict[uuid.UUID, float] = {}
    for line in month:
        spent[line.user_id] = spent.get(line.user_id, 0.0) + line.cost_usd
    limits = _budget_limits(keys, default_budget)
    users = {
        user_id: UserUsage(
            user_id,
            email,
            budget=Budget(limits.get(user_id, default_budget), spent.get(user_id, 0.0)),
            hours=None if hours is None else hours.get(user_id, 0.0),
        )
        for user_id, email in emails.items()
    }
    for line in lines:
        user = users.setdefault(line.user_id, UserUsage(line.user_id, str(line.user_id)))
        user.requests += line.requests
        user.tokens_in += line.tokens_in
        user.tokens_out += line.tokens_out
        user.cost_usd += line.cost_usd
        user.unpriced += line.unpriced
    per_day: dict[str, float] = dict.fromkeys(period.days, 0.0)
    for line in days:
        per_day[line.group] = per_day.get(line.group, 0.0) + line.cost_usd
    ordered = sorted(users.values(), key=lambda u: (-u.cost_usd, -(u.tokens_in + u.tokens_out), u.email))
    return UsageView(period, ordered, lines, by, sorted(per_day.items()))


def usage_csv(view: UsageView, emails: dict[uuid.UUID, str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["user", view.by, "requests", "tokens_in", "tokens_out", "cost_usd", "unpriced_requests"])
    for line in sorted(view.lines, key=lambda x: (emails.get(x.user_id, ""), x.group)):
        writer.writerow(
            [
                emails.get(line.user_id, str(line.user_id)),
                line.group,
                line.requests,
                line.tokens_in,
                line.tokens_out,
                f"{line.cost_usd:.6f}",
                line.unpriced,
            ]
        )
    return out.getvalue()
