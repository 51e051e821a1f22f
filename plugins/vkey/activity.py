"""Per-user gateway activity, for the sandbox router: a user whose agent is calling an LLM is working,
so their sandbox should stay awake.

Recording is one dict assignment per request. Listeners get the batch of users seen since the last
flush (user id → wall-clock time of their latest call) every ``flush_seconds``::

    plugins.vkey.gateway_activity(app).listen(router.keep_awake)
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping

log = logging.getLogger(__name__)

Listener = Callable[[Mapping[uuid.UUID, float]], Awaitable[None] | None]


class Activity:
    """Who called the gateway lately: recorded per request, handed to listeners in batches."""

    def __init__(self, flush_seconds: float = 1.0) -> None:
        self.flush_seconds = flush_seconds
        self._seen: dict[uuid.UUID, float] = {}
        self._last: dict[uuid.UUID, float] = {}
        self._listeners: list[Listener] = []

    def record(self, user_id: uuid.UUID) -> None:
        self._seen[user_id] = time.time()

    def last_seen(self, user_id: uuid.UUID) -> float | None:
        """Wall-clock time of the user's latest gateway call through this process, if any."""
        return self._seen.get(user_id) or self._last.get(user_id)

    def listen(self, listener: Listener) -> None:
        """Call ``listener`` (sync or async) with each non-empty batch."""
        self._listeners.append(listener)

    async def flush(self) -> None:
        if not self._seen:
            return
        batch, self._seen = self._seen, {}
        self._last.update(batch)
        for listener in self._listeners:
            try:
                result = listener(batch)
                if result is not None:
                    await result
            except Exception:
                log.exception("activity listener failed")

    async def run(self) -> None:
        """Flush every ``flush_seconds`` until cancelled, then once more."""
        try:
            while True:
                await asyncio.sleep(self.flush_seconds)
                await self.flush()
        finally:
            await asyncio.shield(self.flush())
