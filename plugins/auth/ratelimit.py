"""Fixed-window counters kept in the process: with N workers or replicas each counts on its own."""

from __future__ import annotations

import time

_PRUNE_AT = 10_000


class RateLimit:
    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._counts: dict[str, tuple[float, int]] = {}

    def hit(self, key: str) -> bool:
        """Count one event for ``key``; ``False`` when the window's limit is already used up."""
        now = time.monotonic()
        started, count = self._counts.get(key, (now, 0))
        if now - started >= self.window:
            started, count = now, 0
        if count >= self.limit:
            return False
        self._counts[key] = (started, count + 1)
        if len(self._counts) > _PRUNE_AT:
            self._counts = {k: v for k, v in self._counts.items() if now - v[0] < self.window}
        return True
