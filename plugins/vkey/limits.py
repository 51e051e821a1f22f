"""Per-user limits, checked before a request is forwarded.

A key's own limits (its ``virtual_keys`` columns) replace the stage's ``[pipeline.limits]`` for the
requests made with it; the amounts they are checked against are the user's, over all their keys, so
rotating a key does not reset a budget.

* Requests per minute: at most that many requests per user in each minute-long window, counted by
  the core's rate limiter (:mod:`proxy_core.ratelimit`) in this process, or in the store for every
  worker and replica (``[pipeline.limits] rate_limiter = "store"``, one short transaction per
  request). A refusal's ``Retry-After`` is the rest of the window.
* Tokens per day and the monthly budget: sums of the user's ``usage`` rows (UTC day and month), read
  at most every ``refresh_seconds`` per user and kept current in between by this process's own
  usage as it is recorded. Only a user's first request of the day waits for the read; later
  re-reads run in the background while requests go on with the kept sums. Requests still running
  count too, each at the cost of the user's latest finished request, so a burst of concurrent
  requests stops near the budget instead of far past it. A request that ended early counts at its
  estimate (see :mod:`.estimate`), so aborting a stream does not get around either limit.

Refusals that cannot succeed soon (the day's tokens, the month's budget) are 402 with
``x-should-retry: false``: a status that no supported client retries (the OpenAI, Anthropic and
google-genai SDKs and the AI SDK all retry 408, 409, 429 and 5xx, and the AI SDK ignores
``x-should-retry``), so the user reads the reason at once instead of after seconds of back-off. The
per-minute rate limit stays a retryable 429 with ``Retry-After``, like a provider's own.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Protocol

from proxy_core.db import Store, StoreRateLimiter
from proxy_core.ratelimit import LocalRateLimiter, Policy, RateLimiter

from .config import LimitsConfig
from .keys import KeyRecord

log = logging.getLogger(__name__)


class SpendSource(Protocol):
    """Where recorded usage is summed (:class:`~plugins.vkey.ledger.UsageLedger`)."""

    async def spend_since(
        self, user_id: uuid.UUID, day_start: datetime, month_start: datetime
    ) -> tuple[int, float]: ...


@dataclass(slots=True)
class _Spend:
    day: str
    tokens: int
    usd: float
    fetched: float
    running: int = 0  # requests admitted and not finished
    last_tokens: int = 0  # the latest finished request: the estimate for each running one
    last_usd: float = 0.0


class SpendTracker:
    def __init__(
        self,
        source: SpendSource,
        refresh_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._spend: dict[uuid.UUID, _Spend] = {}
        self._loading: dict[uuid.UUID, asyncio.Task[_Spend]] = {}

    async def totals(self, user_id: uuid.UUID) -> tuple[int, float]:
        """(tokens today, USD this month) of ``user_id``, counting running requests at their estimate."""
        spend = await self._current(user_id)
        return (
            spend.tokens + spend.running * spend.last_tokens,
            spend.usd + spend.running * spend.last_usd,
        )

    def started(self, user_id: uuid.UUID) -> None:
        """A request of ``user_id`` was admitted (call :meth:`finished` when it ends)."""
        spend = self._spend.get(user_id)
        if spend is not None:
            spend.running += 1

    def finished(self, user_id: uuid.UUID, tokens: int, usd: float) -> None:
        spend = self._spend.get(user_id)
        if spend is not None:
            spend.running = max(spend.running - 1, 0)
            spend.tokens += tokens
            spend.usd += usd
            spend.last_tokens, spend.last_usd = tokens, usd

    async def _current(self, user_id: uuid.UUID) -> _Spend:
        now = datetime.now(UTC)
        day = now.strftime("%Y-%m-%d")
        spend = self._spend.get(user_id)
        if spend is not None and spend.day == day:
            if self._clock() - spend.fetched >= self.refresh_seconds and user_id not in self._loading:
                # re-read in the background: this request goes on with the sums this process kept
                # current, instead of waiting for the usage flush and the sum (a stall on a busy disk)
                self._load(user_id, now, spend)
            return spend
        loading = self._loading.get(user_id)  # one query per user at a time; concurrent requests share it
        if loading is None:
            loading = self._load(user_id, now, spend)
        return await asyncio.shield(loading)

    def _load(self, user_id: uuid.UUID, now: datetime, previous: _Spend | None) -> asyncio.Task[_Spend]:
        task = asyncio.ensure_future(self._read(user_id, now, previous))
        self._loading[user_id] = task
        task.add_done_callback(partial(self._loaded, user_id))
        return task

    async def _read(self, user_id: uuid.UUID, now: datetime, previous: _Spend | None) -> _Spend:
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        day = now.strftime("%Y-%m-%d")
        kept = (previous.tokens, previous.usd) if previous is not None else (0, 0.0)
        tokens, usd = await self.source.spend_since(user_id, day_start, day_start.replace(day=1))
        if previous is not None and previous.day == day:
            # requests that finished while the sums were read: their rows may have missed the read.
            # Counted here (twice, at worst, until the next read): a budget errs towards refusing.
            tokens += previous.tokens - kept[0]
            usd += previous.usd - kept[1]
        fresh = _Spend(day, tokens, usd, self._clock())
        if previous is not None:  # what is running now is not in the sums yet
            fresh.running, fresh.last_tokens, fresh.last_usd = (
                previous.running,
                previous.last_tokens,
                previous.last_usd,
            )
        self._spend[user_id] = fresh
        return fresh

    def _loaded(self, user_id: uuid.UUID, task: asyncio.Task[_Spend]) -> None:
        if self._loading.get(user_id) is task:
            del self._loading[user_id]
        if not task.cancelled() and (exc := task.exception()) is not None and user_id in self._spend:
            # a background re-read: the kept sums stay in use, the next request tries again
            log.warning("vkey: cannot re-read the spend of %s: %s", user_id, exc)


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    message: str
    retry_after: int | None
    retryable: bool
    reason: str


def requests_per_minute(config: LimitsConfig, db: Store) -> RateLimiter:
    """The per-minute limiter ``config.rate_limiter`` chooses; its limit is given per request (a
    key's own or the stage's)."""
    policy = Policy(limit=config.requests_per_minute, window=60.0)
    if config.rate_limiter == "store":
        return StoreRateLimiter(db, "vkey.requests_per_minute", policy)
    return LocalRateLimiter(policy)


class Limits:
    """All three limits together; :meth:`check` says why a request may not go, or ``None``."""

    def __init__(self, config: LimitsConfig, spend: SpendTracker, rate: RateLimiter) -> None:
        self.config = config
        self.rate = rate
        self.spend = spend

    async def check(self, record: KeyRecord) -> Refusal | None:
        """Checks (and, when admitted, counts) one request made with ``record``'s key."""
        own, config = record.limits, self.config
        budget = config.monthly_budget_usd if own.monthly_budget_usd is None else own.monthly_budget_usd
        per_day = config.tokens_per_day if own.tokens_per_day is None else own.tokens_per_day
        per_minute = (
            config.requests_per_minute if own.requests_per_minute is None else own.requests_per_minute
        )
        if budget or per_day:
            tokens, usd = await self.spend.totals(record.user_id)
            if budget and usd >= budget:
                message = f"Monthly budget of {usd_text(budget)} reached (spent {usd_text(usd)})."
                return Refusal(402, message, None, False, "budget")
            if per_day and tokens >= per_day:
                message = f"Daily token limit of {per_day} reached; it resets at 00:00 UTC."
                return Refusal(402, message, _seconds_to_midnight(), False, "tokens_per_day")
        if per_minute:
            decision = await self.rate.hit(record.user_id.hex, per_minute)
            if not decision.allowed:
                message = f"Rate limit of {per_minute} requests per minute reached."
                retry_after = max(1, round(decision.retry_after + 0.5))
                return Refusal(429, message, retry_after, True, "requests_per_minute")
        self.spend.started(record.user_id)
        return None


def usd_text(amount: float) -> str:
    """Dollars with cents, and with as many more decimals (up to six) as a small amount needs:
    ``$50.00``, ``$0.001``, ``$0.000125``."""
    text = f"{amount:.6f}".rstrip("0")
    whole, _, decimals = text.partition(".")
    return f"${whole}.{decimals.ljust(2, '0')}"


def _seconds_to_midnight() -> int:
    now = datetime.now(UTC)
    return 86_400 - (now.hour * 3600 + now.minute * 60 + now.second)
