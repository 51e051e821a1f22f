"""Key lifecycle, the Python API behind ``shmastra-cloud keys``: issue (the key is shown once), rotate
with a grace period during which the old key still works, revoke, disable a user, list.

The sandbox router calls :meth:`KeyService.rotate` when it provisions a sandbox: it works whether or
not the user already has a key, and returns the new key to put into the sandbox's environment.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from .keys import KeyRecord, display_prefix, hash_key, new_key, valid_user_id

DEFAULT_GRACE = timedelta(hours=24)


class KeyExists(Exception):
    """The user already has a working key (rotate it instead of issuing a second one)."""


class UnknownUser(LookupError):
    """No key was ever issued to this email address."""


@dataclass(frozen=True, slots=True)
class KeyListing:
    """One key as ``keys list`` shows it (never the key, only its prefix)."""

    email: str
    record: KeyRecord

    @property
    def state(self) -> str:
        record = self.record
        if record.revoked_at is not None:
            return "revoked"
        if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
            return "expired"
        if record.user_disabled:
            return "disabled"
        return "active" if record.expires_at is None else "expiring"


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: str  # the only time the key itself is available
    email: str
    record: KeyRecord

    def __repr__(self) -> str:
        return f"IssuedKey({self.record.prefix!r}, email={self.email!r})"


class KeyAdminStore(Protocol):
    """The writes and reads of key management (the database-backed store implements it)."""

    async def keys_of(self, email: str) -> Sequence[KeyRecord]: ...

    async def insert_key(self, email: str, record: KeyRecord) -> None: ...

    async def expire_keys(self, ids: Sequence[str], at: datetime) -> None: ...

    async def revoke_keys(self, ids: Sequence[str], at: datetime) -> None: ...

    async def set_user_disabled(self, email: str, disabled: bool) -> int: ...

    async def all_keys(self) -> Sequence[KeyListing]: ...


def default_user_id(email: str) -> str:
    """A stable user id for an email when the caller has none (the CLI, before any sign-in)."""
    return "u" + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:20]


class KeyService:
    def __init__(self, store: KeyAdminStore, grace: timedelta = DEFAULT_GRACE) -> None:
        self.store = store
        self.grace = grace

    async def issue(
        self, email: str, user_id: str | None = None, expires_in: timedelta | None = None
    ) -> IssuedKey:
        """A new key for ``email``; raises :class:`KeyExists` when one already works."""
        email = _normal(email)
        current = _working(await self.store.keys_of(email))
        if current:
            raise KeyExists(f"{email} already has a working key ({current[0].prefix}); rotate it instead")
        return await self._create(
            email, user_id or _owner(await self.store.keys_of(email), email), expires_in
        )

    async def rotate(
        self, email: str, user_id: str | None = None, grace: timedelta | None = None
    ) -> IssuedKey:
        """A new key for ``email``; its working keys keep working for ``grace`` (default: the
        service's) and then expire. With no key yet this simply issues one."""
        email = _normal(email)
        existing = await self.store.keys_of(email)
        owner = user_id or _owner(existing, email)
        issued = await self._create(email, owner, None)
        until = datetime.now(UTC) + (self.grace if grace is None else grace)
        ending = [r.id for r in _working(existing) if r.expires_at is None or r.expires_at > until]
        if ending:
            await self.store.expire_keys(ending, until)
        return issued

    async def revoke(self, email: str) -> int:
        """Revoke every key of ``email`` at once; the number revoked."""
        email = _normal(email)
        records = await self.store.keys_of(email)
        if not records:
            raise UnknownUser(f"no key was ever issued to {email}")
        live = [r.id for r in records if r.revoked_at is None]
        if live:
            await self.store.revoke_keys(live, datetime.now(UTC))
        return len(live)

    async def set_user_disabled(self, email: str, disabled: bool) -> None:
        """Stop (or allow again) every key of ``email`` without revoking them."""
        if not await self.store.set_user_disabled(_normal(email), disabled):
            raise UnknownUser(f"no key was ever issued to {email}")

    async def list(self) -> list[KeyListing]:
        return sorted(await self.store.all_keys(), key=lambda k: (k.email, k.record.created_at))

    async def _create(self, email: str, user_id: str, expires_in: timedelta | None) -> IssuedKey:
        if not valid_user_id(user_id):
            raise ValueError("a user id may hold only letters, digits, '_' and '-' (at most 128)")
        key = new_key(user_id)
        now = datetime.now(UTC)
        record = KeyRecord(
            id=uuid.uuid4().hex,
            user_id=user_id,
            prefix=display_prefix(key),
            key_hash=hash_key(key),
            created_at=now,
            expires_at=None if expires_in is None else now + expires_in,
        )
        await self.store.insert_key(email, record)
        return IssuedKey(key, email, record)


def _normal(email: str) -> str:
    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise ValueError(f"not an email address: {email!r}")
    return email


def _working(records: Sequence[KeyRecord]) -> list[KeyRecord]:
    now = datetime.now(UTC)
    return [r for r in records if r.revoked_at is None and (r.expires_at is None or r.expires_at > now)]


def _owner(records: Sequence[KeyRecord], email: str) -> str:
    return records[-1].user_id if records else default_user_id(email)
