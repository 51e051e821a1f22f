"""The ``users`` table: who may sign in, with which role. Other plugins go through this module,
never through the table."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

from proxy_core.db import CheckViolation, Connection, NotFound, Row

Role = Literal["member", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)

_COLUMNS = "id, external_id, email, name, role, disabled, created_at, updated_at, last_sign_in_at"


@dataclass(frozen=True, slots=True)
class User:
    id: uuid.UUID
    external_id: str | None
    email: str
    name: str | None
    role: Role
    disabled: bool
    created_at: datetime
    updated_at: datetime
    last_sign_in_at: datetime | None = None
    """When they last signed in (by any method); ``None``: never."""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _user(row: Row) -> User:
    return User(**row)


def _email(email: str) -> str:
    email = email.strip()
    local, _, domain = email.rpartition("@")
    if not local or "." not in domain or any(c.isspace() for c in email):
        raise CheckViolation(f"not an email address: {email!r}", table="users", field="email")
    return email


def _role(role: str) -> Role:
    if role not in ROLES:
        raise CheckViolation(
            f"role must be one of {', '.join(ROLES)}, not {role!r}", table="users", field="role"
        )
    return role


class Users:
    """Queries on ``users``. ``db`` may be the :class:`Database` or a transaction's connection."""

    def __init__(self, db: Connection) -> None:
        self.db = db

    async def create(
        self, email: str, *, name: str | None = None, role: str = "member", external_id: str | None = None
    ) -> User:
        """A new user; :class:`UniqueViolation` ("email already exists") when the email is taken."""
        row = await self.db.fetchrow(
            f"INSERT INTO users (id, external_id, email, name, role) VALUES ($1, $2, $3, $4, $5) "
            f"RETURNING {_COLUMNS}",
            uuid.uuid4(),
            external_id,
            _email(email),
            name,
            _role(role),
        )
        assert row is not None  # RETURNING always yields the inserted row
        return _user(row)

    async def get(self, user_id: uuid.UUID) -> User:
        row = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE id = $1", user_id)
        if row is None:
            raise NotFound(f"no user with id {user_id}")
        return _user(row)

    async def find_by_email(self, email: str) -> User | None:
        """The user with this email, compared case-insensitively."""
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM users WHERE lower(email) = lower($1)", email.strip()
        )
        return None if row is None else _user(row)

    async def get_by_email(self, email: str) -> User:
        user = await self.find_by_email(email)
        if user is None:
            raise NotFound(f"no user with email {email.strip()}")
        return user

    async def find_by_external_id(self, external_id: str) -> User | None:
        row = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE external_id = $1", external_id)
        return None if row is None else _user(row)

    async def list(self) -> list[User]:
        """Everyone, oldest first."""
        return [
            _user(row)
            for row in await self.db.fetch(f"SELECT {_COLUMNS} FROM users ORDER BY created_at, email")
        ]

    async def set_role(self, user_id: uuid.UUID, role: str) -> User:
        return await self._update(user_id, "role = $2", _role(role))

    async def set_disabled(self, user_id: uuid.UUID, disabled: bool) -> User:
        return await self._update(user_id, "disabled = $2", disabled)

    async def signed_in(self, user_id: uuid.UUID, at: datetime) -> None:
        """Record a sign-in at ``at`` (the session's start: call it in the transaction creating it)."""
        await self.db.execute("UPDATE users SET last_sign_in_at = $2 WHERE id = $1", user_id, at)

    async def update_profile(self, user: User, email: str, name: str | None) -> User:
        """``user`` with the email and name a provider now gives (a ``None`` name keeps the stored one)."""
        email = _email(email)
        if (user.email, user.name) == (email, name or user.name):
            return user
        return await self._update(user.id, "email = $2, name = $3", email, name or user.name)

    async def link(self, user: User, external_id: str, email: str, name: str | None) -> User | None:
        """Give ``user`` the provider's ``external_id`` in place of the one it had (none, usually);
        ``None`` when the stored one changed meanwhile (the condition is in the ``UPDATE``, so of
        concurrent links exactly one wins). Whether the link is allowed is
        :mod:`plugins.auth.linking`'s decision."""
        unchanged = "external_id IS NULL" if user.external_id is None else "external_id = $5"
        row = await self.db.fetchrow(
            "UPDATE users SET external_id = $2, email = $3, name = COALESCE($4, name), updated_at = now() "
            f"WHERE id = $1 AND {unchanged} RETURNING {_COLUMNS}",
            user.id,
            external_id,
            _email(email),
            name,
            *([] if user.external_id is None else [user.external_id]),
        )
        return None if row is None else _user(row)

    async def _update(self, user_id: uuid.UUID, assignments: str, *values: object) -> User:
        row = await self.db.fetchrow(
            f"UPDATE users SET {assignments}, updated_at = now() WHERE id = $1 RETURNING {_COLUMNS}",
            user_id,
            *values,
        )
        if row is None:
            raise NotFound(f"no user with id {user_id}")
        return _user(row)
