"""Virtual keys: their format, how they are made and hashed, and how a presented key is judged.

A virtual key reads ``vk_<userId>_<64 hex>``. Only its SHA-256 hash and a short display prefix are
stored; the key itself is shown once, when it is issued. The user id inside the key must match the
owner of the stored key, so a key of user A with user B's id spliced in is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

_KEY = re.compile(r"vk_([A-Za-z0-9_\-]{1,128})_([0-9a-f]{64})")
_USER_ID = re.compile(r"[A-Za-z0-9_\-]{1,128}")
_PREFIX_HEX = 8


class KeyRejected(Exception):
    """A presented key may not be used; ``message`` is safe to show the client (it names no secret)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What the store keeps about one key (never the key itself)."""

    id: str
    user_id: str
    prefix: str
    key_hash: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    user_disabled: bool = False


class KeyStore(Protocol):
    """The one query the gateway's hot path needs; the database-backed store implements it."""

    async def find(self, key_hash: str) -> KeyRecord | None: ...


def valid_user_id(user_id: str) -> bool:
    return _USER_ID.fullmatch(user_id) is not None


def new_key(user_id: str) -> str:
    if not valid_user_id(user_id):
        raise ValueError("a user id may hold only letters, digits, '_' and '-' (at most 128)")
    return f"vk_{user_id}_{secrets.token_hex(32)}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def display_prefix(key: str) -> str:
    """The part of a key that may appear in logs and listings: ``vk_<userId>_<8 hex>``."""
    match = _KEY.fullmatch(key)
    if match is None:
        return "vk_?"
    return f"vk_{match.group(1)}_{match.group(2)[:_PREFIX_HEX]}"


def owner_of(key: str) -> str | None:
    """The user id written into a well-formed key, or ``None`` for anything else."""
    match = _KEY.fullmatch(key)
    return None if match is None else match.group(1)


class KeyChecker:
    """Judges presented keys against a :class:`KeyStore`, caching found records for ``cache_seconds``
    (revocation reaches every worker within that time; expiry is checked on every request)."""

    def __init__(
        self,
        store: KeyStore,
        cache_seconds: float = 5.0,
        max_cached: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self.max_cached = max_cached
        self._clock = clock
        self._cache: dict[str, tuple[KeyRecord, float]] = {}

    async def check(self, key: str) -> KeyRecord:
        """The record of ``key`` if it may be used now; raises :class:`KeyRejected` otherwise."""
        owner = owner_of(key)
        if owner is None:
            raise KeyRejected("invalid", "Invalid API key")
        digest = hash_key(key)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[1] < self.cache_seconds:
            record = cached[0]
        else:
            found = await self.store.find(digest)
            if found is None:
                self._cache.pop(digest, None)
                raise KeyRejected("invalid", "Invalid API key")
            record = found
            if len(self._cache) >= self.max_cached:
                self._cache.pop(next(iter(self._cache)))
            self._cache[digest] = (record, now)
        # Constant-time comparisons: neither the hash nor the owner leaks through timing.
        same_hash = hmac.compare_digest(record.key_hash.encode(), digest.encode())
        same_owner = hmac.compare_digest(record.user_id.encode(), owner.encode())
        if not (same_hash and same_owner):
            raise KeyRejected("invalid", "Invalid API key")
        if record.revoked_at is not None:
            raise KeyRejected("revoked", "API key revoked")
        if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
            raise KeyRejected("expired", "API key expired")
        if record.user_disabled:
            raise KeyRejected("disabled", "API key owner is disabled")
        return record

    def forget(self, key_hash: str) -> None:
        """Drop a cached record at once (used after revoking or rotating in this process)."""
        self._cache.pop(key_hash, None)
