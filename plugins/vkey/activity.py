"""Per-user gateway activity, for the sandbox router: a user whose agent is calling an LLM is working,
so their sandbox should stay awake.

Recording is one dict assignment per request. Listeners get the batch of users seen since the last
flush (user id → wall-clock time of their latest call) every ``flush_seconds``::

    activity = app[plugins.vkey.ACTIVITY]
    activity.listen(lambda seen: router.keep_awake(seen))
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

log = logging.getLogger(__name__)

Listener = Callable[[Mapping[str, float]], Awaitable[None] | None]


class Activity:
    def __init__(self, flush_seconds: float = 1.0) -> None:
        self.flush_seconds = flush_seconds
        self._seen: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._listeners: list[Listener] = []

    def record(self, user_id: str) -> None:
        self._seen[user_id] = time.time()

    def last_seen(self, user_id: str) -> float | None:
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


ACTIVITY = web.AppKey("plugins.vkey.activity", Activity)
"""The app's :class:`Activity`, set by the ``vkey`` stage."""
