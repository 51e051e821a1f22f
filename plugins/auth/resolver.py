"""Which live session (and so which identity) a request carries: the cookie read, the session looked up
through a short per-process cache, the idle deadline moved on, the provider's tokens refreshed when
due, and the answer to give a request without one. Used by the stage (every request) and by the
sign-in paths (already signed in? signing out).

The hot path is two dict look-ups: a ``Cookie`` header seen within the last second maps straight to
its session id (no cookie parsing, no Fernet decryption, no hashing: a browser sends the same header
on every request), and the session comes from the per-process session cache. Concurrent requests of
a session whose cache entry ran out share one store read. The store stays the source of truth: a
session ended here is dropped at once (the next request reads the store), elsewhere within
``session_cache_seconds``; a cookie past its age is refused at most a second late."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import replace
from functools import partial
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
_COOKIE_SECONDS = 1.0  # how long a Cookie header's verdict (which session it names) is reused
_COOKIE_ENTRIES = 4096
_COOKIE_LONGEST = 4096  # longer headers are decrypted every time (bounded memory)


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
        self._signed: TTLCache[str, str] = TTLCache(
            min(_COOKIE_SECONDS, config.session_cache_seconds), _COOKIE_ENTRIES
        )
        self._loading: dict[str, asyncio.Future[Session | None]] = {}
        self._generation = 0  # moved on by every ending or user change: an older read is not cached
        self._identities: dict[str, tuple[Session, Identity]] = {}  # made once per session read
        self._refreshing: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def identify(self, request: web.Request) -> Identity | web.StreamResponse:
        """The identity of the request's live session, or the answer to give instead. Raises
        :class:`~proxy_core.db.StoreError` when the store cannot be read."""
        sid = await self.session_of(request)
        if sid is None:
            return self.unauthenticated(
                request, clear=request.cookies.get(self.config.cookie_name) is not None
            )
        session = self._cache.get(sid) or await self.session(sid)
        if session is None:
            return self.unauthenticated(request, clear=True)
        if session.disabled:
            return error_response(request, 403, "Your account is disabled. Ask an administrator.")
        if self.keeper is not None and self.keeper.refresh_due(session.data, time.time()):
            refreshed = await self._refresh(request, session)
            if not isinstance(refreshed, Session):
                return refreshed
            session = refreshed
        made = self._identities.get(session.id)
        if made is not None and made[0] is session:  # the same session read: the same identity
            return made[1]
        identity = Identity(
            session.user_id,
            session.email,
            session.role,
            session.id,
            session.name,
            csrf.derive(self.keys.csrf, session.id),
        )
        if len(self._identities) >= _COOKIE_ENTRIES:
            self._identities.clear()
        self._identities[session.id] = (session, identity)
        return identity

    async def session_of(self, request: web.Request) -> str | None:
        """The id of the session the request's valid session cookie names; ``None`` without one."""
        header = request.headers.get("Cookie")
        if header is not None and (sid := self._signed.get(header)) is not None:
            return sid
        token = await self.cookies.session_token(request)
        if token is None:
            return None
        sid = session_id(token)
        if header is not None and len(header) <= _COOKIE_LONGEST:
            self._signed.put(header, sid)
        return sid

    async def session(self, sid: str) -> Session | None:
        """The live session ``sid`` (from a short per-process cache), its idle deadline moved on.
        Concurrent callers missing the cache share one read of the store."""
        cached = self._cache.get(sid)
        if cached is not None:
            return cached
        loading = self._loading.get(sid)
        if loading is None:
            loading = self._loading[sid] = asyncio.ensure_future(self._load(sid))
            loading.add_done_callback(partial(self._loaded, sid))
        return await asyncio.shield(loading)

    def _loaded(self, sid: str, loading: asyncio.Future[Session | None]) -> None:
        if self._loading.get(sid) is loading:
            del self._loading[sid]
        if not loading.cancelled():
            loading.exception()  # retrieved: every waiter may have gone (a StoreError reaches those left)

    async def _load(self, sid: str) -> Session | None:
        generation = self._generation
        session = await self.sessions.get(sid)
        if session is None:
            return None
        if (now() - session.last_seen_at).total_seconds() > min(_TOUCH_EVERY, self.config.idle_timeout / 10):
            session = replace(session, last_seen_at=await self.sessions.touch(sid))
        if generation == self._generation:  # nothing ended or changed meanwhile
            self._cache.put(sid, session)
        return session

    async def end(self, sid: str) -> None:
        """Revoke the session ``sid`` and forget it here."""
        self._generation += 1
        await self.sessions.revoke(sid)
        self._generation += 1
        self._cache.pop(sid)

    async def user_changed(self, event: UserChanged) -> None:
        """Drop the user's cached sessions (role, disabled flag, revocations), and end the sessions a
        change revoked at the provider too."""
        user_id = event.user.id
        self._generation += 1
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
