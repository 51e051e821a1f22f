"""Provider create/resume calls under the provider's rate limit: when it answers "slow down", callers
wait in a first-come queue (their position shown on the progress page) until the retry time passes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .providers.base import ProviderRateLimited

T = TypeVar("T")

PositionCallback = Callable[[int, float], None]
"""Called while waiting: the 1-based place in the queue and the seconds until the next try."""

_MAX_ATTEMPTS = 20


class ProviderGate:
    def __init__(self) -> None:
        self._waiting: list[uuid.UUID] = []
        self._open_at = 0.0

    def position(self, user_id: uuid.UUID) -> int | None:
        return self._waiting.index(user_id) + 1 if user_id in self._waiting else None

    async def call(
        self, user_id: uuid.UUID, call: Callable[[], Awaitable[T]], on_wait: PositionCallback
    ) -> T:
        """``await call()``; on :class:`ProviderRateLimited` queue up and retry (a bounded number of
        times: the last refusal is raised)."""
        try:
            for attempt in range(_MAX_ATTEMPTS):
                if attempt or time.monotonic() < self._open_at:
                    await self._wait_turn(user_id, on_wait)
                try:
                    return await call()
                except ProviderRateLimited as refused:
                    self._open_at = max(self._open_at, time.monotonic() + refused.retry_after)
                    if attempt == _MAX_ATTEMPTS - 1:
                        raise
                    if user_id not in self._waiting:
                        self._waiting.insert(0, user_id)  # it was its turn: it keeps the head
            raise AssertionError("unreachable")
        finally:
            if user_id in self._waiting:
                self._waiting.remove(user_id)

    async def _wait_turn(self, user_id: uuid.UUID, on_wait: PositionCallback) -> None:
        if user_id not in self._waiting:
            self._waiting.append(user_id)
        while True:
            wait = self._open_at - time.monotonic()
            position = self._waiting.index(user_id) + 1
            if wait <= 0 and position == 1:
                return
            on_wait(position, max(wait, 0.0))
            await asyncio.sleep(min(max(wait, 0.05), 1.0))
