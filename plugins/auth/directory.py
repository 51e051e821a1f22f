"""The public user directory: how other plugins (and the CLI) read users and change them.

Every change goes through here, so the rules hold whoever makes it: disabling a user (or enabling
one) revokes their sessions in the same transaction, so a re-enabled user starts clean and no old
session revives; each change is announced to subscribers (the auth stage drops its cached sessions,
vkey its cached keys), so in this process it takes effect at once; other processes see it within
their caches' lifetimes (``session_cache_seconds``, ``key_cache_seconds``). A role a sign-in brings
is announced too; a user created by their first sign-in is not (nothing is cached about them yet).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from aiohttp import web

from proxy_core import Readiness, StageContext
from proxy_core.db import Store, database

from .sessions import Session, last_seen, revoke_user_sessions
from .users import User, Users

log = logging.getLogger(__name__)

Change = Literal["created", "disabled", "enabled", "role", "signed_out"]


@dataclass(frozen=True, slots=True)
class UserChanged:
    """What happened to ``user`` (as it is now); ``ended`` are the sessions the change revoked."""

    user: User
    change: Change
    ended: tuple[Session, ...] = ()


Listener = Callable[[UserChanged], Awaitable[None] | None]
UserRef = uuid.UUID | str
"""A user named by id (``uuid.UUID``) or by email (``str``, compared case-insensitively)."""


class UserDirectory:
    """Users and their state, read and changed with the rules above.

    Raises :class:`~proxy_core.db.NotFound` for an unknown user and other
    :class:`~proxy_core.db.StoreError` from the store.
    """

    name = "auth-user-directory"

    def __init__(self, db: Store) -> None:
        self.db = db
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` (sync or async) after every change made through this directory."""
        self._listeners.append(listener)

    async def get(self, user: UserRef) -> User:
        return await _get(Users(self.db), user)

    async def find_by_email(self, email: str) -> User | None:
        return await Users(self.db).find_by_email(email)

    async def list(self) -> list[User]:
        """Everyone, oldest first."""
        return await Users(self.db).list()

    async def last_seen(self) -> dict[uuid.UUID, datetime]:
        """When each user who is signed in somewhere last made a request (the signed-out are absent)."""
        return await last_seen(self.db)

    async def create(self, email: str, *, name: str | None = None, role: str = "member") -> User:
        """A new user; :class:`~proxy_core.db.UniqueViolation` when the email is taken."""
        user = await Users(self.db).create(email, name=name, role=role)
        await self._announce(UserChanged(user, "created"))
        return user

    async def set_disabled(self, user: UserRef, disabled: bool) -> User:
        """Refuse (or allow again) the user's sign-in, sessions and keys. Either way every session
        they hold ends, in the same transaction: enabling never revives an old session."""
        async with self.db.transaction() as tx:
            found = await _get(Users(tx), user)
            updated = await Users(tx).set_disabled(found.id, disabled)
            ended = await revoke_user_sessions(tx, found.id)
        await self._announce(UserChanged(updated, "disabled" if disabled else "enabled", tuple(ended)))
        return updated

    async def set_role(self, user: UserRef, role: str) -> User:
        found = await self.get(user)
        updated = await Users(self.db).set_role(found.id, role)
        await self._announce(UserChanged(updated, "role"))
        return updated

    async def sign_out(self, user: UserRef) -> int:
        """End every session of the user (an admin's "sign out everywhere"); how many ended."""
        async with self.db.transaction() as tx:
            found = await _get(Users(tx), user)
            ended = await revoke_user_sessions(tx, found.id)
        await self._announce(UserChanged(found, "signed_out", tuple(ended)))
        return len(ended)

    async def _announce(self, event: UserChanged) -> None:
        for listener in self._listeners:
            try:
                result = listener(event)
                if result is not None:
                    await result
            except Exception:
                log.exception("auth: a user-change listener failed")

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        self._listeners.clear()

    async def readiness(self) -> Readiness:
        return Readiness(True)


async def _get(users: Users, user: UserRef) -> User:
    return await (users.get(user) if isinstance(user, uuid.UUID) else users.get_by_email(user))


USER_DIRECTORY = web.AppKey("plugins.auth.user_directory", UserDirectory)


def user_directory(context: StageContext) -> UserDirectory:
    """The app's one directory on the shared store (every stage that asks gets the same one, so
    they all hear each other's changes)."""
    db = database(context)
    return context.resource(USER_DIRECTORY, lambda: UserDirectory(db))
