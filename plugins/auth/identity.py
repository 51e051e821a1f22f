"""Who is asking: what the ``auth`` stage attaches to every request it lets through."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from aiohttp import web

from .users import Role


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: uuid.UUID
    email: str
    role: Role
    session_id: str
    """The server-side session's id (a hash of the cookie's secret: safe to log, show and revoke by)."""
    name: str | None = None
    csrf_token: str = ""
    """The token forms of this session must send back; see :mod:`plugins.auth.csrf`."""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


IDENTITY = web.RequestKey("plugins.auth.identity", Identity)
"""Set on every request that passed the ``auth`` stage with a session; absent on public paths."""
