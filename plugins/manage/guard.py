"""Who may use Manage: an admin, by session cookie or by admin API token, whose role is read again
from the store on every request (a demoted admin loses access at once). Cookie-authenticated
requests that change anything must carry the session's CSRF token."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from plugins.auth import IDENTITY, Identity, User, check_csrf, identify
from proxy_core.db import NotFound

from .tokens import AdminToken, AdminTokens, looks_like_token

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Refuse = Callable[[web.Request, int, str], web.StreamResponse]


@dataclass(frozen=True, slots=True)
class Admin:
    """The admin behind a request: ``identity`` when signed in, ``token`` when a script called."""

    user: User
    identity: Identity | None
    token: AdminToken | None

    @property
    def id(self) -> uuid.UUID:
        return self.user.id

    @property
    def csrf_token(self) -> str:
        return "" if self.identity is None else self.identity.csrf_token


ADMIN = web.RequestKey("plugins.manage.admin", Admin)
"""Set on every request a Manage handler runs for."""


class Guard:
    def __init__(self, tokens: AdminTokens, users: Callable[[uuid.UUID], Awaitable[User]]) -> None:
        self.tokens = tokens
        self.users = users

    def protect(self, handler: Handler, refuse: Refuse) -> Handler:
        """``handler`` run only for an admin (else ``refuse(request, status, message)`` or the sign-in
        answer the auth stage gives)."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            found = await self.admin(request, refuse)
            if isinstance(found, web.StreamResponse):
                return found
            cookie_write = request.method not in SAFE_METHODS and found.identity is not None
            if cookie_write and not await _csrf_ok(request):
                return refuse(
                    request, 403, "The form expired or did not come from this site; reload and retry."
                )
            request[ADMIN] = found
            try:
                return await handler(request)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                return refuse(request, exc.status, exc.text or exc.reason)

        return guarded

    async def still_admin(self, admin: Admin) -> bool:
        """Whether ``admin`` is still an active admin (long-lived answers check it as they go)."""
        try:
            user = await self.users(admin.id)
        except NotFound:
            return False
        if not user.is_admin or user.disabled:
            return False
        return admin.token is None or await self.tokens.is_live(admin.token.id)

    async def admin(self, request: web.Request, refuse: Refuse) -> Admin | web.StreamResponse:
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and looks_like_token(credential.strip()):
            token = await self.tokens.verify(credential.strip())
            if token is None:
                return refuse(request, 401, "This admin token is unknown or revoked.")
            return await self._checked(request, refuse, token.user_id, None, token)
        identity = request.get(IDENTITY)
        if identity is None:
            found = await identify(request)
            if not isinstance(found, Identity):
                return found
            identity = request[IDENTITY] = found
        return await self._checked(request, refuse, identity.user_id, identity, None)

    async def _checked(
        self,
        request: web.Request,
        refuse: Refuse,
        user_id: uuid.UUID,
        identity: Identity | None,
        token: AdminToken | None,
    ) -> Admin | web.StreamResponse:
        try:
            user = await self.users(user_id)
        except NotFound:
            return refuse(request, 403, "Only administrators may use Manage.")
        if not user.is_admin or user.disabled:
            return refuse(request, 403, "Only administrators may use Manage.")
        return Admin(user, identity, token)


async def _csrf_ok(request: web.Request) -> bool:
    submitted = request.headers.get("X-CSRF-Token")
    if submitted is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        value = (await request.post()).get("csrf_token")
        submitted = value if isinstance(value, str) else None
    return check_csrf(request, submitted)
