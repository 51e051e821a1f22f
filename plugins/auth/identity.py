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

IDENTITY_HEADER_PREFIX = "X-Shmastra-"
"""The only headers through which the cloud tells an upstream who is asking. The ``auth`` stage
removes every client header under this prefix (``_`` read as ``-``) and the forwarder removes them
again from what it sends, so an upstream can trust them."""


def identity_headers(identity: Identity) -> dict[str, str]:
    """What a forwarding stage adds to an upstream request to pass the signed-in user on, e.g.
    ``outgoing.headers.update(identity_headers(request[IDENTITY]))``."""
    return {
        f"{IDENTITY_HEADER_PREFIX}User-Id": str(identity.user_id),
        f"{IDENTITY_HEADER_PREFIX}User-Email": identity.email,
        f"{IDENTITY_HEADER_PREFIX}User-Role": identity.role,
    }
