"""The ``auth`` stage: answers its own sign-in paths, lets public paths through, and attaches the
:data:`IDENTITY` of a live session to every other request, or answers with a redirect to sign-in
(browser navigations) or 401 JSON (API calls, XHR, WebSockets).

Put it after ``vkey`` (gateway callers hold a key, not a session) and before anything that serves
users' content.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import timedelta
from urllib.parse import urlencode

from aiohttp import web

from proxy_core import Next, Readiness, Stage, StageContext, error_response
from proxy_core.credentials import OwnedCredentials
from proxy_core.db import StoreError, database
from proxy_core.inject import offer_script

from . import csrf
from .accounts import Accounts
from .config import AuthConfig
from .cookies import Cookies
from .flows import Flows
from .guard import HeaderStripper, PublicPaths
from .identity import IDENTITY, IDENTITY_HEADER_PREFIX, Identity
from .keys import Keys, existing_secret, load_or_create_secret
from .menu import CloudMenu
from .providers import build_provider
from .providers.base import ProviderUnavailable, SessionEnded, SessionKeeper, SignInRefused
from .redirects import is_navigation
from .sessions import Session, Sessions, now, session_id

log = logging.getLogger(__name__)

_TOUCH_EVERY = 60.0
_PURGE_EVERY = 3600.0
_KEEP_ENDED = timedelta(days=7)


class AuthStage(Stage[AuthConfig]):
    name = "auth"
    config_class = AuthConfig

    def __init__(self, config: AuthConfig, context: StageContext) -> None:
        super().__init__(config, context)
        if config.cookie_secret is not None:
            secret = config.cookie_secret.get_secret_value()
        elif context.checking:
            secret = existing_secret(config.data_dir)
        else:
            secret = load_or_create_secret(config.data_dir)
        self.keys = Keys.from_secret(secret)
        self.db = database(context)
        self.sessions = Sessions(self.db, lifetime=config.session_lifetime, idle=config.idle_timeout)
        self.accounts = Accounts(self.db, config)
        self.forwarder = context.forwarder
        self.cookies = Cookies(
            self.keys.cookie,
            name=config.cookie_name,
            lifetime=config.session_lifetime,
            secure=config.cookie_secure,
            flow_path=config.path_prefix,
            forwarder=context.forwarder,
        )
        self.provider = build_provider(config, self.keys, self.db)
        self.keeper = self.provider if isinstance(self.provider, SessionKeeper) else None
        self.public = PublicPaths(config.public_paths)
        self.strip = HeaderStripper((*config.strip_headers, IDENTITY_HEADER_PREFIX + "*"))
        public_url = context.config.server.public_url
        self.flows = Flows(self, str(public_url).rstrip("/") if public_url else None)
        self.menu = CloudMenu(self)
        self._prefix = config.path_prefix
        self._cache: dict[str, tuple[float, Session]] = {}
        self._refreshing: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        purger = asyncio.create_task(self._purge_ended(), name="auth-session-purge")
        try:
            yield
        finally:
            purger.cancel()
            await asyncio.gather(purger, return_exceptions=True)
            await self.provider.close()

    async def readiness(self) -> Readiness:
        return Readiness(True, f"provider {self.config.provider}")

    def banner(self) -> str:
        """Who may sign in, and (for emailed codes) where the codes go."""
        config = self.config
        allowed = [*config.admins, *config.allowed_emails, *(f"anyone@{d}" for d in config.allowed_domains)]
        if allowed:
            who = f"sign in as {', '.join(allowed)} or an existing user"
        else:
            who = "only existing users may sign in (add one: `shmastra-cloud users add EMAIL --admin`)"
        if config.provider == "workos":
            return f"{who}, through WorkOS"
        if config.provider == "oidc":
            assert config.oidc is not None
            return f"{who}, through {config.oidc.issuer_url}"
        settings = config.email_code
        if settings.delivery == "mailbox":
            where = f"sign-in codes are written to {settings.mailbox_dir or config.data_dir / 'mailbox'}"
        elif settings.delivery == "smtp":
            assert settings.smtp is not None
            where = f"sign-in codes are emailed through {settings.smtp.host}:{settings.smtp.port}"
        else:
            where = "sign-in codes appear in this log"
        return f"{who}; {where}"

    def owned_credentials(self) -> OwnedCredentials:
        """The session and sign-in flow cookies, and the identity headers: never sent upstream (a
        sandbox runs agent code that could replay an admin's session)."""
        return OwnedCredentials.of(
            cookies=(self.config.cookie_name, self.cookies.flow_name),
            header_prefixes=(IDENTITY_HEADER_PREFIX,),
        )

    async def __call__(self, request: web.Request, next: Next) -> web.StreamResponse:
        request = self.strip(request)
        path = request.path
        if path.startswith(self._prefix) and (
            len(path) == len(self._prefix) or path[len(self._prefix)] == "/"
        ):
            return await self.flows.handle(request)
        if path in self.public:
            return await next(request)
        try:
            found = await self.identify(request)
        except StoreError as exc:
            log.warning("auth: cannot read sessions: %s", exc.message)
            return error_response(request, 503, "Signing in is unavailable for a moment. Try again shortly.")
        if not isinstance(found, Identity):
            return found
        request[IDENTITY] = found
        if self.config.menu and is_navigation(request):
            offer_script(request, self.menu.path)
        return await next(request)

    def routes(self) -> Sequence[web.AbstractRouteDef]:
        return self.menu.routes() if self.config.menu else ()

    async def identify(self, request: web.Request) -> Identity | web.StreamResponse:
        """The identity of the request's live session, or the answer to give instead. Raises
        :class:`StoreError` when the store cannot be read."""
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
        clock = time.monotonic()
        if cached is not None and cached[0] > clock:
            return cached[1]
        session = await self.sessions.get(sid)
        if session is None:
            self._cache.pop(sid, None)
            return None
        if (now() - session.last_seen_at).total_seconds() > min(_TOUCH_EVERY, self.config.idle_timeout / 10):
            session = replace(session, last_seen_at=await self.sessions.touch(sid))
        if self.config.session_cache_seconds:
            if len(self._cache) > 10_000:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > clock}
            self._cache[sid] = (clock + self.config.session_cache_seconds, session)
        return session

    def forget(self, sid: str) -> None:
        self._cache.pop(sid, None)

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
                self.forget(session.id)
                return self.unauthenticated(request, clear=True)
            if not self.keeper.refresh_due(current.data, time.time()):
                self._cache[session.id] = (time.monotonic() + self.config.session_cache_seconds, current)
                return current
            try:
                data = await self.keeper.refresh(current.data)
            except (SessionEnded, SignInRefused) as exc:
                log.info("auth: session %s ended by the provider: %s", session.id[:12], exc)
                await self.sessions.revoke(session.id)
                self.forget(session.id)
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
            self._cache[session.id] = (time.monotonic() + self.config.session_cache_seconds, refreshed)
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

    async def revoke_user(self, user_id: uuid.UUID) -> int:
        """Sign a user out everywhere (an admin's action): every live session, here and at the provider."""
        ended = await self.sessions.revoke_user(user_id)
        for session in ended:
            self.forget(session.id)
            if self.keeper is not None:
                try:
                    await self.keeper.revoke(session.data)
                except ProviderUnavailable as exc:
                    log.warning("auth: could not revoke session %s at the provider: %s", session.id[:12], exc)
        return len(ended)

    async def _purge_ended(self) -> None:
        leader = self.db.leadership("auth.session-purge")
        try:
            while True:
                await asyncio.sleep(_PURGE_EVERY)
                try:
                    if await leader.is_leader():
                        purged = await self.sessions.purge(now() - _KEEP_ENDED)
                        if purged:
                            log.info("auth: purged %d ended sessions", purged)
                except StoreError as exc:
                    log.warning("auth: session purge failed: %s", exc.message)
        finally:
            await leader.close()
