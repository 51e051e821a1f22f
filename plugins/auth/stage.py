"""The ``auth`` stage: answers its own sign-in paths, lets public paths through, and attaches the
:data:`IDENTITY` of a live session to every other request, or answers with a redirect to sign-in
(browser navigations) or 401 JSON (API calls, XHR, WebSockets).

Put it after ``vkey`` (gateway callers hold a key, not a session) and before anything that serves
users' content.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

from aiohttp import web

from proxy_core import Next, Readiness, Stage, StageContext, error_response
from proxy_core.credentials import OwnedCredentials
from proxy_core.db import StoreError, database
from proxy_core.inject import offer_script
from proxy_core.tasks import BackgroundJobs

from .accounts import Accounts
from .config import AuthConfig
from .cookies import Cookies
from .directory import user_directory
from .flows import Flows
from .guard import HeaderStripper, PublicPaths
from .identity import IDENTITY, IDENTITY_HEADER_PREFIX, Identity
from .invitations import Invitations
from .keys import Keys, existing_secret, load_or_create_secret
from .mail import build_mailer
from .menu import CloudMenu
from .providers import build_provider
from .providers.base import SessionKeeper
from .redirects import is_navigation
from .resolver import SessionResolver
from .sessions import Sessions, now

log = logging.getLogger(__name__)

_PURGE_EVERY = 3600.0
_KEEP_ENDED = timedelta(days=7)


class AuthStage(Stage[AuthConfig]):
    name = "auth"

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
        self.directory = user_directory(context)
        self.accounts = Accounts(self.db, config, self.directory)
        self.forwarder = context.forwarder
        self.cookies = Cookies(
            self.keys.cookie,
            name=config.cookie_name,
            lifetime=config.session_lifetime,
            secure=config.cookie_secure,
            flow_path=config.path_prefix,
            forwarder=context.forwarder,
        )
        mailer = build_mailer(config.email_code, config.data_dir)
        self.provider = build_provider(config, self.keys, self.db, mailer)
        self.keeper = self.provider if isinstance(self.provider, SessionKeeper) else None
        self.resolver = SessionResolver(config, self.db, self.sessions, self.cookies, self.keys, self.keeper)
        self.directory.subscribe(self.resolver.user_changed)
        self.public = PublicPaths(config.public_paths)
        self.strip = HeaderStripper((*config.strip_headers, IDENTITY_HEADER_PREFIX + "*"))
        public_url = context.config.server.public_url
        self.flows = Flows(
            config,
            self.provider,
            self.db,
            self.resolver,
            self.accounts,
            self.keys,
            context.forwarder,
            str(public_url).rstrip("/") if public_url else None,
        )
        self.menu = CloudMenu(self.resolver, config.path_prefix)
        sign_in = f"{config.path_prefix}/sign-in"
        self.invitations = Invitations(self.directory, mailer, config.provider, sign_in, self.flows.base_url)

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        async with BackgroundJobs(self.name) as jobs:
            jobs.start("session-purge", self._purge_ended)
            try:
                yield
            finally:
                await jobs.stop()
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
        if request.path in self.public:
            return await next(request)
        try:
            found = await self.resolver.identify(request)
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
        """The sign-in paths (and the menu's script), behind the earlier stages only (``vkey``):
        never sent on to a forwarding stage, never asking for a session themselves."""
        return [*(self.menu.routes() if self.config.menu else ()), *self.flows.routes(self.strip)]

    async def revoke_user(self, user_id: uuid.UUID) -> int:
        """Sign a user out everywhere (an admin's action): every live session, here and at the provider."""
        return await self.directory.sign_out(user_id)

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
