"""Judging a presented key on the gateway's hot path: cheap when cached, two indexed look-ups when not.

A key is refused when it is malformed or unknown, when the user id written in it is not its owner's
(constant-time comparisons), when it is revoked, expired or rotated out past its grace period, or
when its owner is disabled or gone. Expiry is checked on every request; everything read from the
database is trusted for ``ttl`` seconds (see :mod:`plugins.vkey.cache`).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime

from plugins.auth.users import Users
from proxy_core.db import Connection, NotFound

from .cache import KeyCache
from .keys import KeyRecord, KeyRejected, hash_key, owner_of
from .store import VirtualKeys


class KeyChecker:
    def __init__(
        self,
        db: Connection,
        cache: KeyCache,
        ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = VirtualKeys(db)
        self.users = Users(db)
        self.cache = cache
        self.ttl = ttl
        self._clock = clock

    async def check(self, key: str) -> KeyRecord:
        """The record of ``key`` if it may be used now; raises :class:`KeyRejected` otherwise, and
        :class:`~proxy_core.db.StoreError` when the database is needed and cannot answer."""
        owner = owner_of(key)
        if owner is None:
            raise KeyRejected("invalid", "Invalid API key")
        digest = hash_key(key)
        now = self._clock()
        cached = self.cache.keys.get(digest)
        if cached is not None and now - cached[1] < self.ttl:
            record = cached[0]
        else:
            found = await self.keys.find(digest)
            if found is None:
                self.cache.keys.pop(digest, None)
                raise KeyRejected("invalid", "Invalid API key")
            record = found
            self.cache.put_key(digest, record, now)
        # Constant-time comparisons: neither the hash nor the owner leaks through timing.
        same_hash = hmac.compare_digest(record.key_hash.encode(), digest.encode())
        same_owner = hmac.compare_digest(str(record.user_id).encode(), owner.encode())
        if not (same_hash and same_owner):
            raise KeyRejected("invalid", "Invalid API key")
        refused = record.refusal(datetime.now(UTC))
        if refused is not None:
            raise refused
        if await self._disabled(record, now):
            raise KeyRejected("disabled", "API key owner is disabled")
        return record

    async def _disabled(self, record: KeyRecord, now: float) -> bool:
        cached = self.cache.disabled.get(record.user_id)
        if cached is not None and now - cached[1] < self.ttl:
            return cached[0]
        try:
            disabled = (await self.users.get(record.user_id)).disabled
        except NotFound:
            disabled = True  # the owner is gone (their keys go with them, but a cached key may not)
        self.cache.put_user(record.user_id, disabled, now)
        return disabled
