"""CSRF tokens for forms: bound to the session (an HMAC of its id), so nothing is stored.

Later stages put ``csrf_token(request)`` in a hidden ``csrf_token`` field (or an ``X-CSRF-Token``
header for fetch) and call ``await require_csrf(request)`` before acting on a POST.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from .identity import IDENTITY

FIELD = "csrf_token"
HEADER = "X-CSRF-Token"


def derive(key: bytes, binding: str) -> str:
    """The token for ``binding`` (a session id, or a pre-sign-in flow id)."""
    return hmac.new(key, b"csrf:" + binding.encode(), hashlib.sha256).hexdigest()


def csrf_token(request: web.Request) -> str:
    """The token for the signed-in session of ``request``; raises 401 when there is none."""
    identity = request.get(IDENTITY)
    if identity is None:
        raise web.HTTPUnauthorized(reason="Sign in first.")
    token: str = identity.csrf_token
    return token


def check_csrf(request: web.Request, submitted: str | None) -> bool:
    """Whether ``submitted`` is this session's token (constant-time)."""
    identity = request.get(IDENTITY)
    if identity is None or not submitted or not identity.csrf_token:
        return False
    return hmac.compare_digest(identity.csrf_token.encode(), submitted.encode())


async def require_csrf(request: web.Request) -> None:
    """Raise 403 unless the request carries this session's token in the header or the form field."""
    submitted = request.headers.get(HEADER)
    if submitted is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        value = (await request.post()).get(FIELD)
        submitted = value if isinstance(value, str) else None
    if not check_csrf(request, submitted):
        raise web.HTTPForbidden(reason="The form expired or did not come from this site; reload and retry.")
