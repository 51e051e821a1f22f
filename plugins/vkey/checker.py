"""Judging a presented key on the gateway's hot path: cheap when cached, two indexed look-ups when not.

A key is refused when it is malformed or unknown, when the user id written in it is not its owner's
(constant-time comparisons), when it is revoked, expired or rotated out past its grace period, or
when its owner is disabled or gone. Expiry is checked on every request; everything read from the
database is trusted for ``ttl`` seconds (see :mod:`plugins.vkey.cache`).
"""

from __future__ import annotations

import hmac
import uuid
from functools import partial

from plugins.auth import UserDirectory
from proxy_core.cache import SingleFlight
from proxy_core.db import Database, NotFound

from .cache import KeyCache
from .keys import KeyRecord, KeyRejected, hash_key, owner_of
from .store import VirtualKeys

_MAX_VERIFIED = 100_000


class KeyChecker:
    def __init__(
        self, db: Database, cache: KeyCache, ttl: float = 5.0, users: UserDirectory | None = None
    ) -> None:
        self.keys = VirtualKeys(db)
        self.users = UserDirectory(db) if users is None else users
        self.cache = cache
        self.ttl = ttl
        # when an entry runs out under load, the requests waiting for it share one store read
        self._finding: SingleFlight[str, KeyRecord | None] = SingleFlight()
        self._reading: SingleFlight[uuid.UUID, bool] = SingleFlight()
        # Keys seen to hash to a stored key of the user they name: facts that never change, so the
        # hash and the comparisons are skipped next time (the record itself is still checked).
        self._verified: dict[str, str] = {}

    async def check(self, key: str) -> KeyRecord:
        """The record of ``key`` if it may be used now; raises :class:`KeyRejected` otherwise, and
        :class:`~proxy_core.db.StoreError` when the database is needed and cannot answer."""
        digest = self._verified.get(key)
        record = None if digest is None else self.cache.keys.get(digest)
        if record is None:
            record = await self._verify(key)
        refused = record.refusal_now()
        if refused is not None:
            raise refused
        if await self._disabled(record):
            raise KeyRejected("disabled", "API key owner is disabled")
        return record

    async def _verify(self, key: str) -> KeyRecord:
        """The stored record ``key`` hashes to, if the user id written in ``key`` is its owner's."""
        owner = owner_of(key)
        if owner is None:
            raise KeyRejected("invalid", "Invalid API key")
        digest = hash_key(key)
        cached = self.cache.keys.get(digest)
        if cached is not None:
            record = cached
        else:
            found = await self._finding.run(digest, partial(self._find, digest))
            if found is None:
                raise KeyRejected("invalid", "Invalid API key")
            record = found
        # Constant-time comparisons: neither the hash nor the owner leaks through timing.
        same_hash = hmac.compare_digest(record.key_hash.encode(), digest.encode())
        same_owner = hmac.compare_digest(str(record.user_id).encode(), owner.encode())
        if not (same_hash and same_owner):
            raise KeyRejected("invalid", "Invalid API key")
        if len(self._verified) >= _MAX_VERIFIED:
            self._verified.clear()
        self._verified[key] = digest
        return record

    async def _find(self, digest: str) -> KeyRecord | None:
        found = await self.keys.find(digest)
        if found is not None:
            self.cache.keys.put(digest, found, self.ttl)
        return found

    async def _disabled(self, record: KeyRecord) -> bool:
        cached = self.cache.disabled.get(record.user_id)
        if cached is not None:
            return cached
        return await self._reading.run(record.user_id, partial(self._read_disabled, record.user_id))

    async def _read_disabled(self, user_id: uuid.UUID) -> bool:
        try:
            disabled = (await self.users.get(user_id)).disabled
        except NotFound:
            disabled = True  # the owner is gone (their keys go with them, but a cached key may not)
        self.cache.disabled.put(user_id, disabled, self.ttl)
        return disabled
