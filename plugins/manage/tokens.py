"""The ``admin_tokens`` table (this plugin's own): API tokens for scripts, acting as the admin who
made them. Only a SHA-256 hash and a display prefix are stored; the token is shown once."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from proxy_core.db import Connection, Row

PREFIX = "smc_admin_"
_COLUMNS = "id, user_id, name, prefix, token_hash, created_at, last_used_at, revoked_at"


@dataclass(frozen=True, slots=True)
class AdminToken:
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    prefix: str
    token_hash: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class CreatedToken:
    token: str  # the only time the token itself is available
    record: AdminToken

    def __repr__(self) -> str:  # never print the token
        return f"CreatedToken({self.record.prefix!r})"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_token(value: str) -> bool:
    return value.startswith(PREFIX)


class AdminTokens:
    """Queries on ``admin_tokens``. ``db`` may be the database or a transaction's connection."""

    def __init__(self, db: Connection) -> None:
        self.db = db

    async def create(self, user_id: uuid.UUID, name: str) -> CreatedToken:
        token = PREFIX + secrets.token_hex(24)
        row = await self.db.fetchrow(
            f"INSERT INTO admin_tokens (id, user_id, name, prefix, token_hash, created_at) "
            f"VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}",
            uuid.uuid4(),
            user_id,
            name.strip() or "unnamed",
            token[: len(PREFIX) + 6],
            hash_token(token),
            datetime.now(UTC),
        )
        assert row is not None  # RETURNING always yields the inserted row
        return CreatedToken(token, _token(row))

    async def verify(self, token: str) -> AdminToken | None:
        """The live token ``token`` is (its last use noted), or ``None``."""
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM admin_tokens WHERE token_hash = $1", hash_token(token)
        )
        if row is None:
            return None
        found = _token(row)
        if not hmac.compare_digest(found.token_hash, hash_token(token)) or not found.active:
            return None
        await self.db.execute(
            "UPDATE admin_tokens SET last_used_at = $2 WHERE id = $1", found.id, datetime.now(UTC)
        )
        return found

    async def is_live(self, token_id: uuid.UUID) -> bool:
        revoked = await self.db.fetchrow("SELECT revoked_at FROM admin_tokens WHERE id = $1", token_id)
        return revoked is not None and revoked["revoked_at"] is None

    async def list(self) -> list[AdminToken]:
        rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM admin_tokens ORDER BY created_at DESC")
        return [_token(row) for row in rows]

    async def revoke(self, token_id: uuid.UUID) -> bool:
        """Whether a live token was revoked."""
        count = await self.db.execute(
            "UPDATE admin_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            token_id,
            datetime.now(UTC),
        )
        return count > 0


def _token(row: Row) -> AdminToken:
    return AdminToken(**row)
