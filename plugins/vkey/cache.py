"""What the gateway remembers between requests about keys and their owners, in this process.

The gateway's hot path must not query the database on every call, so a validated key and its
owner's ``disabled`` flag are kept for a few seconds (the stage's ``key_cache_seconds``). Changes made
in this process (through :class:`~plugins.vkey.lifecycle.KeyService`, or auth's user directory, which
the stage listens to) drop the entries at once; other replicas (and ``shmastra-cloud keys`` /
``users disable`` run elsewhere) are seen within that time.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from aiohttp import web

from proxy_core import Readiness
from proxy_core.cache import TTLCache

from .keys import KeyRecord

_MAX_ENTRIES = 100_000


class KeyCache:
    """Key records by hash and ``disabled`` flags by user id. A shared resource (:data:`KEY_CACHE`), so
    the stage and the key service see one cache; the checker sets each entry's lifetime."""

    name = "vkey-key-cache"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.keys: TTLCache[str, KeyRecord] = TTLCache(5.0, _MAX_ENTRIES, clock)
        self.disabled: TTLCache[uuid.UUID, bool] = TTLCache(5.0, _MAX_ENTRIES, clock)

    def forget_user(self, user_id: uuid.UUID) -> None:
        """Drop the user's status and every cached key of theirs."""
        self.disabled.pop(user_id)
        self.keys.discard_where(lambda record: record.user_id == user_id)

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        self.keys.clear()
        self.disabled.clear()

    async def readiness(self) -> Readiness:
        return Readiness(True, f"{len(self.keys)} keys cached")


KEY_CACHE = web.AppKey("plugins.vkey.key_cache", KeyCache)
