"""Key lifecycle, the Python API behind ``shmastra-cloud keys``: issue (the key is shown once), rotate
with a grace period during which the old key still works, revoke, disable a user, list.

Users are auth's: a key is issued to an existing user, found through auth's public
:class:`~plugins.auth.UserDirectory` by email or id. The sandbox router calls
:meth:`KeyService.rotate` when it provisions a sandbox: it works whether or not the user already has
a key, and returns the new key to put into the sandbox's environment.

Every change drops the affected entries of this process's :class:`~plugins.vkey.cache.KeyCache` at
once; other replicas keep accepting a revoked key for at most their ``key_cache_seconds``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from plugins.auth import User, UserDirectory, UserRef, user_directory
from proxy_core import StageContext
from proxy_core.db import Connection, Database, Transaction, database

from .cache import KEY_CACHE, KeyCache
from .keys import KeyLimits, KeyRecord, display_prefix, hash_key, new_key
from .store import VirtualKeys

DEFAULT_GRACE = timedelta(hours=24)


class KeyExists(Exception):
    """The user already has a working key (rotate it instead of issuing a second one)."""


@dataclass(frozen=True, slots=True)
class KeyListing:
    """One key as ``keys list`` shows it (never the key, only its prefix)."""

    email: str
    record: KeyRecord

    @property
    def state(self) -> str:
        return self.record.state(datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: str  # the only time the key itself is available
    user: User
    record: KeyRecord

    def __repr__(self) -> str:  # never print the key
        return f"IssuedKey({self.record.prefix!r}, email={self.user.email!r})"


class KeyService:
    """Issue, rotate, revoke and list virtual keys; disable or enable their owners.

    Raises :class:`~proxy_core.db.NotFound` for an unknown user, :class:`KeyExists` when issuing to
    a user who has a working key, and other :class:`~proxy_core.db.StoreError` from the database.
    """

    def __init__(
        self,
        db: Database,
        cache: KeyCache | None = None,
        grace: timedelta = DEFAULT_GRACE,
        users: UserDirectory | None = None,
    ) -> None:
        self.db = db
        self.cache = KeyCache() if cache is None else cache
        self.grace = grace
        self.users = UserDirectory(db) if users is None else users

    async def issue(
        self, user: UserRef, *, expires_in: timedelta | None = None, limits: KeyLimits | None = None
    ) -> IssuedKey:
        """A new key for ``user``; raises :class:`KeyExists` when one already works."""
        async with self._locked(user) as (tx, owner):
            working = [r for r in await VirtualKeys(tx).of_user(owner.id) if r.state(_now()) == "active"]
            if working:
                raise KeyExists(
                    f"{owner.email} already has a working key ({working[0].prefix}); rotate it instead"
                )
            return await _create(tx, owner, expires_in, limits or KeyLimits())

    async def rotate(
        self,
        user: UserRef,
        *,
        grace: timedelta | None = None,
        expires_in: timedelta | None = None,
        limits: KeyLimits | None = None,
    ) -> IssuedKey:
        """A new key for ``user``; their working keys keep working for ``grace`` (default: the
        service's), then stop. The new key keeps the limits of the newest old one unless ``limits``
        is given. With no key yet this simply issues one."""
        async with self._locked(user) as (tx, owner):
            keys = VirtualKeys(tx)
            existing = await keys.of_user(owner.id)
            now = _now()
            until = now + (self.grace if grace is None else grace)
            ending = [
                r.id
                for r in existing
                if r.refusal(now) is None and (r.grace_until is None or r.grace_until > until)
            ]
            await keys.end_grace_at(ending, until)
            inherited = existing[-1].limits if existing else KeyLimits()
            issued = await _create(tx, owner, expires_in, inherited if limits is None else limits)
        self.cache.forget_user(owner.id)
        return issued

    async def revoke(self, user: UserRef) -> int:
        """Revoke every key of ``user`` at once; the number revoked (0 when none was live)."""
        async with self._locked(user) as (tx, owner):
            live = [r.id for r in await VirtualKeys(tx).of_user(owner.id) if r.revoked_at is None]
            await VirtualKeys(tx).revoke(live, _now())
        self.cache.forget_user(owner.id)
        return len(live)

    async def set_disabled(self, user: UserRef, disabled: bool) -> User:
        """Stop (or allow again) every key of ``user`` without revoking them, through auth's user
        directory (which also refuses their sign-in and ends their sessions)."""
        updated = await self.users.set_disabled(user, disabled)
        self.cache.forget_user(updated.id)
        return updated

    async def keys_of(self, user: UserRef) -> list[KeyRecord]:
        """Every key of ``user``, oldest first."""
        owner = await self.users.get(user)
        return await VirtualKeys(self.db).of_user(owner.id)

    async def list(self) -> list[KeyListing]:
        """Every key with its owner's email, by email, oldest first."""
        emails = {u.id: u.email for u in await self.users.list()}
        listed = [
            KeyListing(emails.get(r.user_id, str(r.user_id)), r) for r in await VirtualKeys(self.db).all()
        ]
        return sorted(listed, key=lambda k: (k.email.lower(), k.record.created_at))

    @asynccontextmanager
    async def _locked(self, user: UserRef) -> AsyncIterator[tuple[Transaction, User]]:
        """A transaction holding ``user``'s key lock (concurrent rotations of one user serialize)."""
        owner = await self.users.get(user)
        async with self.db.transaction() as tx:
            await tx.xact_lock(f"vkey:{owner.id}")
            yield tx, owner


async def _create(
    conn: Connection, owner: User, expires_in: timedelta | None, limits: KeyLimits
) -> IssuedKey:
    key = new_key(owner.id)
    now = _now()
    record = KeyRecord(
        id=uuid.uuid4(),
        user_id=owner.id,
        prefix=display_prefix(key),
        key_hash=hash_key(key),
        created_at=now,
        expires_at=None if expires_in is None else now + expires_in,
        limits=limits,
    )
    await VirtualKeys(conn).insert(record)
    return IssuedKey(key, owner, record)


def _now() -> datetime:
    return datetime.now(UTC)


def key_service(context: StageContext, grace: timedelta = DEFAULT_GRACE) -> KeyService:
    """The key service on the app's database, sharing the gateway's key cache (so a revocation here
    takes effect in this process's gateway at once)."""
    return KeyService(
        database(context), context.resource(KEY_CACHE, KeyCache), grace, user_directory(context)
    )
