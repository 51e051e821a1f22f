"""What the gateway remembers between requests about keys and their owners, in this process.

The gateway's hot path must not query the database on every call, so a validated key and its
owner's ``disabled`` flag are kept for a few seconds (the stage's ``key_cache_seconds``). Changes made
through :class:`~plugins.vkey.lifecycle.KeyService` in this process drop the entries at once; other
replicas (and ``shmastra-cloud keys`` / ``users disable`` run elsewhere) are seen within that time.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from proxy_core import Readiness

from .keys import KeyRecord

_MAX_ENTRIES = 100_000


class KeyCache:
    """Key records by hash and ``disabled`` flags by user id, each with the monotonic time it was
    read. A shared resource (:data:`KEY_CACHE`), so the stage and the key service see one cache."""

    name = "vkey-key-cache"

    def __init__(self) -> None:
        self.keys: dict[str, tuple[KeyRecord, float]] = {}
        self.disabled: dict[uuid.UUID, tuple[bool, float]] = {}

    def put_key(self, key_hash: str, record: KeyRecord, at: float) -> None:
        if len(self.keys) >= _MAX_ENTRIES:
            self.keys.pop(next(iter(self.keys)))
        self.keys[key_hash] = (record, at)

    def put_user(self, user_id: uuid.UUID, disabled: bool, at: float) -> None:
        if len(self.disabled) >= _MAX_ENTRIES:
            self.disabled.pop(next(iter(self.disabled)))
        self.disabled[user_id] = (disabled, at)

    def forget_user(self, user_id: uuid.UUID) -> None:
        """Drop the user's status and every cached key of theirs."""
        self.disabled.pop(user_id, None)
        for key_hash in [h for h, (record, _) in self.keys.items() if record.user_id == user_id]:
            del self.keys[key_hash]

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        self.keys.clear()
        self.disabled.clear()

    async def readiness(self) -> Readiness:
        return Readiness(True, f"{len(self.keys)} keys cached")


KEY_CACHE = web.AppKey("plugins.vkey.key_cache", KeyCache)
