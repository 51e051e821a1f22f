"""Which live session (and so which identity) a request carries: the cookie read, the session looked up
through a short per-process cache, the idle deadline moved on, the provider's tokens refreshed when
due, and the answer to give a request without one. Used by the stage (every request) and by the
sign-in paths (already signed in? signing out)."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import replace
from urllib.parse import urlencode

from aiohttp import web

from proxy_core import error_response
from proxy_core.cache import TTLCache
from proxy_core.db import Database

from . import csrf
from .config import AuthConfig
from .cookies import Cookies
from .directory import UserChanged
from .identity import Identity
from .keys import Keys
from .providers.base import ProviderUnavailable, SessionEnded, SessionKeeper, SignInRefused
from .redirects import is_navigation
from .sessions import Session, Sessions, now, session_id

log = logging.getLogger(__name__)

_TOUCH_EVERY = 60.0


class SessionResolver:
    def __init__(
        self,
        config: AuthConfig,
        db: Database,
        sessions: Sessions,
        cookies: Cookies,
        keys: Keys,
        keeper: SessionKeeper | None,
    ) -> None:
        self.config = config
        self.db = db
        self.sessions = sessions
        self.cookies = cookies
        self.keys = keys
        self.keeper = keeper
        self._prefix = config.path_prefix
        self._cache: TTLCache[str, Session] = TTLCache(config.session_cache_seconds)
        self._refreshing: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def identify(self, request: web.Request) -> Identity | web.StreamResponse:
        """The identity of the request's live session, or the answer to give instead. Raises
        :class:`~proxy_core.db.StoreError` when the store cannot be read."""
        token = await self.cookies.session_token(request)
        if token is None:
            return self.unauthenticated(
                request, clear=request.cookies.get(self.config.cookie_name) is not None
            )
        session = await self.session(session_id(token))
        if session is None:
            return self.unauthenticated(request, clear=True)
        if session.disabled:
            return error_response(request, 403, "Your account is disabled. Ask an administrator.")
        if self.keeper is not None and self.keeper.refresh_due(session.data, time.time()):
            refreshed = await self._refresh(request, session)
            if not isinstance(refreshed, Session):
                return refreshed
            session = refreshed
        return Identity(
            session.user_id,
            session.email,
            session.role,
            session.id,
            session.name,
            csrf.derive(self.keys.csrf, session.id),
        )

    async def session(self, sid: str) -> Session | None:
        """The live session ``sid`` (from a short per-process cache), its idle deadline moved on."""
        cached = self._cache.get(sid)
        if cached is not None:
            return cached
        session = await self.sessions.get(sid)
        if session is None:
            return None
        if (now() - session.last_seen_at).total_seconds() > min(_TOUCH_EVERY, self.config.idle_timeout / 10):
            session = replace(session, last_seen_at=await self.sessions.touch(sid))
        self._cache.put(sid, session)
        return session

    async def end(self, sid: str) -> None:
        """Revoke the session ``sid`` and forget it here."""
        await self.sessions.revoke(sid)
        self._cache.pop(sid)

    async def user_changed(self, event: UserChanged) -> None:
        """Drop the user's cached sessions (role, disabled flag, revocations), and end the sessions a
        change revoked at the provider too."""
        user_id = event.user.id
        self._cache.discard_where(lambda session: session.user_id == user_id)
        if self.keeper is None:
            return
        for session in event.ended:
            try:
                await self.keeper.revoke(session.data)
            except ProviderUnavailable as exc:
                log.warning("auth: could not revoke session %s at the provider: %s", session.id[:12], exc)

    async def _refresh(self, request: web.Request, session: Session) -> Session | web.StreamResponse:
        """Refresh the provider's tokens, one refresh per session at a time across workers and replicas
        (the refresh token rotates: a second, concurrent use would be refused)."""
        assert self.keeper is not None
        lock = self._refreshing.get(session.id)
        if lock is None:
            lock = self._refreshing[session.id] = asyncio.Lock()
        async with lock, self.db.user_lock(f"auth.refresh:{session.id}"):
            current = await self.sessions.get(session.id)
            if current is None:
                self._cache.pop(session.id)
                return self.unauthenticated(request, clear=True)
            if not self.keeper.refresh_due(current.data, time.time()):
                self._cache.put(session.id, current)
                return current
            try:
                data = await self.keeper.refresh(current.data)
            except (SessionEnded, SignInRefused) as exc:
                log.info("auth: session %s ended by the provider: %s", session.id[:12], exc)
                await self.end(session.id)
                return self.unauthenticated(request, clear=True)
            except ProviderUnavailable as exc:
                if self.keeper.still_valid(current.data, time.time()):
                    log.warning("auth: cannot refresh session %s yet: %s", session.id[:12], exc)
                    return current
                return error_response(
                    request,
                    503,
                    "The sign-in provider cannot be reached, and your sign-in has run out. "
                    "Try again in a moment.",
                )
            await self.sessions.set_data(session.id, data)
            refreshed = replace(current, data=data)
            self._cache.put(session.id, refreshed)
            return refreshed

    def unauthenticated(self, request: web.Request, *, clear: bool) -> web.StreamResponse:
        if is_navigation(request):
            query = urlencode({"next": request.raw_path}) if request.raw_path != "/" else ""
            location = f"{self._prefix}/sign-in" + (f"?{query}" if query else "")
            response: web.StreamResponse = web.Response(
                status=302, headers={"Location": location, "Cache-Control": "no-store"}
            )
        else:  # JSON even when an XHR or WebSocket says it accepts HTML: no page is wanted here
            response = web.json_response(
                {"error": {"status": 401, "title": "Unauthorized", "message": "Sign in first."}},
                status=401,
                headers={"Cache-Control": "no-store"},
            )
        if clear:
            self.cookies.clear_session(request, response)
        return response
