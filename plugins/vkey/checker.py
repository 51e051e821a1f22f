"""Judging a presented key on the gateway's hot path: cheap when cached, two indexed look-ups when not.

A key is refused when it is malformed or unknown, when the user id written in it is not its owner's
(constant-time comparisons), when it is revoked, expired or rotated out past its grace period, or
when its owner is disabled or gone. Expiry is checked on every request; everything read from the
database is trusted for ``ttl`` seconds (see :mod:`plugins.vkey.cache`).
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from plugins.auth import UserDirectory
from proxy_core.db import Database, NotFound

from .cache import KeyCache
from .keys import KeyRecord, KeyRejected, hash_key, owner_of
from .store import VirtualKeys


class KeyChecker:
    def __init__(
        self, db: Database, cache: KeyCache, ttl: float = 5.0, users: UserDirectory | None = None
    ) -> None:
        self.keys = VirtualKeys(db)
        self.users = UserDirectory(db) if users is None else users
        self.cache = cache
        self.ttl = ttl

    async def check(self, key: str) -> KeyRecord:
        """The record of ``key`` if it may be used now; raises :class:`KeyRejected` otherwise, and
        :class:`~proxy_core.db.StoreError` when the database is needed and cannot answer."""
        owner = owner_of(key)
        if owner is None:
            raise KeyRejected("invalid", "Invalid API key")
        digest = hash_key(key)
        cached = self.cache.keys.get(digest)
        if cached is not None:
            record = cached
        else:
            found = await self.keys.find(digest)
            if found is None:
                raise KeyRejected("invalid", "Invalid API key")
            record = found
            self.cache.keys.put(digest, record, self.ttl)
        # Constant-time comparisons: neither the hash nor the owner leaks through timing.
        same_hash = hmac.compare_digest(record.key_hash.encode(), digest.encode())
        same_owner = hmac.compare_digest(str(record.user_id).encode(), owner.encode())
        if not (same_hash and same_owner):
            raise KeyRejected("invalid", "Invalid API key")
        refused = record.refusal(datetime.now(UTC))
        if refused is not None:
            raise refused
        if await self._disabled(record):
            raise KeyRejected("disabled", "API key owner is disabled")
        return record

    async def _disabled(self, record: KeyRecord) -> bool:
        cached = self.cache.disabled.get(record.user_id)
        if cached is not None:
            return cached
        try:
            disabled = (await self.users.get(record.user_id)).disabled
        except NotFound:
            disabled = True  # the owner is gone (their keys go with them, but a cached key may not)
        self.cache.disabled.put(record.user_id, disabled, self.ttl)
        return disabled
