"""Users as the Manage UI sees them, read and changed only through the owning plugins' exported
APIs: auth (users, sessions) and vkey (keys)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from plugins.auth import ROLES, User, UserDirectory, invite
from plugins.vkey import IssuedKey, KeyService


@dataclass(frozen=True, slots=True)
class Person:
    """One row of the users list; the key is shown by its prefix only."""

    user: User
    key_prefix: str | None
    key_state: str | None
    last_seen: datetime | None


class People:
    def __init__(self, users: UserDirectory, keys: KeyService) -> None:
        self.users = users
        self.keys = keys

    async def get(self, user_id: uuid.UUID) -> User:
        """Raises :class:`~proxy_core.db.NotFound`."""
        return await self.users.get(user_id)

    async def emails(self) -> dict[uuid.UUID, str]:
        return {user.id: user.email for user in await self.users.list()}

    async def list(self) -> list[Person]:
        users = await self.users.list()
        newest: dict[uuid.UUID, tuple[str, str]] = {}
        now = datetime.now(UTC)
        for listing in await self.keys.list():
            record = listing.record
            newest[record.user_id] = (record.prefix, record.state(now))
        seen = await self.users.last_seen()
        people = []
        for user in users:
            prefix, state = newest.get(user.id, (None, None))
            people.append(Person(user, prefix, state, seen.get(user.id)))
        return people

    async def set_role(self, user_id: uuid.UUID, role: str) -> User:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        return await self.users.set_role(user_id, role)

    async def set_disabled(self, user_id: uuid.UUID, disabled: bool) -> User:
        """Refuse (or allow) sign-in and keys; either way every session ends at once (auth's
        directory, through vkey so its cached keys go too)."""
        return await self.keys.set_disabled(user_id, disabled)

    async def sign_out(self, user_id: uuid.UUID) -> int:
        return await self.users.sign_out(user_id)

    async def rotate_key(self, user_id: uuid.UUID) -> IssuedKey:
        return await self.keys.rotate(user_id)

    async def revoke_keys(self, user_id: uuid.UUID) -> int:
        return await self.keys.revoke(user_id)

    async def invite(self, request: web.Request, email: str, invited_by: User) -> User:
        """A new member, mailed an invitation to sign in (auth's :func:`~plugins.auth.invite`: raises
        :class:`~plugins.auth.InvitationFailed`, nothing written)."""
        return await invite(request, email, invited_by=invited_by)
