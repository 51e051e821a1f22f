"""Virtual keys: their format, how they are made and hashed, and what the store keeps about one.

A virtual key reads ``vk_<userId>_<64 hex>`` where the user id is the owner's UUID from ``users``.
Only its SHA-256 hash and a short display prefix are stored; the key itself is shown once, when it
is issued. The user id inside the key must match the owner of the stored key, so a key of user A
with user B's id spliced in is refused.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

_KEY = re.compile(r"vk_([A-Za-z0-9\-]{1,64})_([0-9a-f]{64})")
_PREFIX_HEX = 8


class KeyRejected(Exception):
    """A presented key may not be used; ``message`` is safe to show the client (it names no secret)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """A key's own limits; ``None`` falls back to the stage's ``[pipeline.limits]``, 0 is unlimited."""

    requests_per_minute: int | None = None
    tokens_per_day: int | None = None
    monthly_budget_usd: float | None = None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One row of ``virtual_keys`` (never the key itself)."""

    id: uuid.UUID
    user_id: uuid.UUID
    prefix: str
    key_hash: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    grace_until: datetime | None = None  # set when rotated out: the key works until then
    limits: KeyLimits = KeyLimits()

    def refusal(self, now: datetime) -> KeyRejected | None:
        """Why this key may not be used at ``now``, or ``None`` when it may."""
        if self.revoked_at is not None:
            return KeyRejected("revoked", "API key revoked")
        if self.expires_at is not None and self.expires_at <= now:
            return KeyRejected("expired", "API key expired")
        if self.grace_until is not None and self.grace_until <= now:
            return KeyRejected("rotated", "API key was rotated; use the new key")
        return None

    def refusal_now(self) -> KeyRejected | None:
        """:meth:`refusal` at this moment; the clock is read only for a key that something can refuse."""
        if self.revoked_at is None and self.expires_at is None and self.grace_until is None:
            return None
        return self.refusal(datetime.now(UTC))

    def state(self, now: datetime) -> str:
        """``active``, ``grace`` (rotated out, still working), ``revoked``, ``expired`` or ``rotated``."""
        refused = self.refusal(now)
        if refused is not None:
            return refused.reason
        return "active" if self.grace_until is None else "grace"


def new_key(user_id: uuid.UUID) -> str:
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
