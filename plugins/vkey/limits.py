"""Per-user limits, checked before a request is forwarded.

* Requests per minute: a token bucket per user, in memory, per process (cheap; a user is typically
  served by one sandbox whose requests spread over the workers, so the effective limit is per worker).
* Tokens per day and the monthly budget: sums of the user's usage rows (UTC day and month), read from
  the store at most every ``refresh_seconds`` per user and kept current in between by this process's
  own usage as it is recorded. One request can overshoot (its cost is known only after it ran).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from .config import LimitsConfig


class RateLimiter:
    """``per_minute`` requests per user with bursts up to ``per_minute``; 0 disables it."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # user → (tokens left, when)

    def wait_time(self, user_id: str) -> float:
        """0 when the request may go now (and it is counted); otherwise seconds until it could."""
        if not self.per_minute:
            return 0.0
        now = self._clock()
        tokens, then = self._buckets.get(user_id, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - then) * self._rate)
        if tokens < 1.0:
            self._buckets[user_id] = (tokens, now)
            return (1.0 - tokens) / self._rate
        if len(self._buckets) > 100_000:
            self._buckets.clear()  # forgetting full buckets is harmless; a flood of users must not grow it
        self._buckets[user_id] = (tokens - 1.0, now)
        return 0.0


class SpendSource(Protocol):
    """Where recorded usage is summed (the usage table)."""

    async def spend_since(
        self, user_id: str, day_start: datetime, month_start: datetime
    ) -> tuple[int, float]:
        """(tokens since ``day_start``, USD since ``month_start``) for ``user_id``."""
        ...


@dataclass(slots=True)
class _Totals:
    day: str
    month: str
    tokens: int
    usd: float
    fetched: float


class SpendTracker:
    def __init__(
        self,
        source: SpendSource,
        refresh_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.source = source
        self.refresh_seconds = refresh_seconds
        self._clock, self._now = clock, now
        self._totals: dict[str, _Totals] = {}
        self._loading: dict[str, asyncio.Future[_Totals]] = {}

    async def totals(self, user_id: str) -> tuple[int, float]:
        """(tokens today, USD this month) for ``user_id``."""
        now = self._now()
        day, month = now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")
        known = self._totals.get(user_id)
        fresh = (
            known is not None and known.day == day and self._clock() - known.fetched < self.refresh_seconds
        )
        if known is None or not fresh:
            known = await self._load(user_id, now, day, month)
        return known.tokens, known.usd

    def add(self, user_id: str, tokens: int, usd: float) -> None:
        known = self._totals.get(user_id)
        if known is not None:
            known.tokens += tokens
            known.usd += usd

    async def _load(self, user_id: str, now: datetime, day: str, month: str) -> _Totals:
        loading = self._loading.get(user_id)
        if loading is not None:  # one query per user at a time; concurrent requests share it
            return await asyncio.shield(loading)
        future: asyncio.Future[_Totals] = asyncio.get_running_loop().create_future()
        self._loading[user_id] = future
        try:
            day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
            tokens, usd = await self.source.spend_since(user_id, day_start, day_start.replace(day=1))
            totals = self._totals[user_id] = _Totals(day, month, tokens, usd, self._clock())
            future.set_result(totals)
            return totals
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so a future nobody else awaited does not warn
            raise
        finally:
            del self._loading[user_id]


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    message: str
    retry_after: int | None
    retryable: bool
    reason: str


class Limits:
    """All three limits together; :meth:`check` says why a request may not go, or ``None``."""

    def __init__(self, config: LimitsConfig, spend: SpendTracker) -> None:
        self.config = config
        self.rate = RateLimiter(config.requests_per_minute)
        self.spend = spend
        self._needs_spend = bool(config.tokens_per_day or config.monthly_budget_usd)

    async def check(self, user_id: str) -> Refusal | None:
        if self._needs_spend:
            tokens, usd = await self.spend.totals(user_id)
            budget = self.config.monthly_budget_usd
            if budget and usd >= budget:
                message = f"Monthly budget of ${budget:.2f} reached (spent ${usd:.2f})."
                return Refusal(402, message, None, False, "budget")
            per_day = self.config.tokens_per_day
            if per_day and tokens >= per_day:
                message = f"Daily token limit of {per_day} reached."
                return Refusal(429, message, _seconds_to_midnight(), False, "tokens_per_day")
        wait = self.rate.wait_time(user_id)
        if wait:
            message = f"Rate limit of {self.config.requests_per_minute} requests per minute reached."
            return Refusal(429, message, max(1, round(wait + 0.5)), True, "requests_per_minute")
        return None


def _seconds_to_midnight() -> int:
    now = datetime.now(UTC)
    return 86_400 - (now.hour * 3600 + now.minute * 60 + now.second)
