"""The sign-in paths under ``path_prefix``: the page, SSO start and callback, email codes, sign-out.

A sign-in in progress lives in the flow cookie (encrypted, ten minutes, scoped to these paths). Its
random ``id`` binds the pre-sign-in forms' CSRF token; SSO adds state, PKCE verifier and nonce. State
is compared in constant time and used once: the cookie is cleared by the callback and the state
recorded in the store (:mod:`plugins.auth.used_states`) until it would have expired anyway, so a replay
is refused by every worker and replica.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from proxy_core import Forwarder, error_response, wants_html
from proxy_core.db import Connection, StoreError

from . import csrf, pages
from .accounts import Accounts
from .config import AuthConfig
from .cookies import FLOW_TTL
from .identity import Identity
from .keys import Keys
from .mail import DeliveryFailed, valid_address
from .providers.base import (
    CodeSignIn,
    DecoyCodes,
    Provider,
    ProviderUnavailable,
    RedirectSignIn,
    RemoteSignOut,
    ResponseIssuerCheck,
    SignedIn,
    SignInRefused,
)
from .providers.workos import WorkOSProvider
from .redirects import HOME, safe_next
from .resolver import SessionResolver
from .sessions import session_id
from .tokens import pkce_pair, random_token, same
from .used_states import UsedStates

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

UNREACHABLE = "The sign-in provider cannot be reached right now. Try again in a moment."


class Flows:
    def __init__(
        self,
        config: AuthConfig,
        provider: Provider,
        db: Connection,
        resolver: SessionResolver,
        accounts: Accounts,
        keys: Keys,
        forwarder: Forwarder,
        public_url: str | None,
    ) -> None:
        self.config = config
        self.prefix = config.path_prefix
        self.resolver = resolver
        self.cookies = resolver.cookies
        self.accounts = accounts
        self.keys = keys
        self.forwarder = forwarder
        self.public_url = public_url
        self.redirect = provider if isinstance(provider, RedirectSignIn) else None
        codes = isinstance(provider, CodeSignIn)
        if isinstance(provider, WorkOSProvider):
            codes = provider.config.magic_auth
        self.codes: CodeSignIn | None = provider if codes and isinstance(provider, CodeSignIn) else None
        self.provider = provider
        self.used_states = UsedStates(db, FLOW_TTL)
        self._table: dict[tuple[str, str], Handler] = {
            ("GET", "/sign-in"): self.sign_in_page,
            ("GET", "/sso"): self.start_sso,
            ("GET", "/callback"): self.callback,
            ("POST", "/code"): self.send_code,
            ("POST", "/code/verify"): self.verify_code,
            ("GET", "/sign-out"): self.sign_out_page,
            ("POST", "/sign-out"): self.sign_out,
        }

    def routes(self, strip: Callable[[web.Request], web.Request]) -> list[web.RouteDef]:
        """The sign-in paths as routes; anything else under the prefix is 404, or 405 with ``Allow``
        for a known path asked with another method."""

        def guarded(handler: Handler) -> Handler:
            async def handle(request: web.Request) -> web.StreamResponse:
                try:
                    return await handler(strip(request))
                except ProviderUnavailable as exc:
                    log.warning("auth: %s", exc)
                    return self.problem(request, 503, "Sign-in unavailable", UNREACHABLE)
                except StoreError as exc:
                    log.warning("auth: the store failed: %s", exc.message)
                    return self.problem(
                        request, 503, "Sign-in unavailable", "Signing in is unavailable for a moment."
                    )

            return handle

        declared = [
            web.get(self.prefix + sub, guarded(handler))  # and HEAD
            if method == "GET"
            else web.route(method, self.prefix + sub, guarded(handler))
            for (method, sub), handler in self._table.items()
        ]
        return [*declared, web.route("*", self.prefix + "{rest:(/.*)?}", self._elsewhere)]

    async def _elsewhere(self, request: web.Request) -> web.StreamResponse:
        sub = request.path[len(self.prefix) :]
        methods = {m for m, path in self._table if path == sub}
        if "GET" in methods:
            methods.add("HEAD")
        if methods:
            allow = ", ".join(sorted(methods))
            return error_response(request, 405, "Method not allowed.", headers={"Allow": allow})
        return error_response(request, 404, "Nothing is served at this address.")

    def problem(self, request: web.Request, status: int, title: str, message: str) -> web.StreamResponse:
        if wants_html(request):
            return pages.problem(prefix=self.prefix, status=status, title=title, message=message)
        return error_response(request, status, message)

    def base_url(self, request: web.Request) -> str:
        """Where people reach this cloud: ``[server] public_url``, else the address this request came to."""
        if self.public_url:
            return self.public_url
        client = self.forwarder.client(request)
        return f"{client.proto}://{client.host}"

    def _redirect_uri(self, request: web.Request) -> str:
        return f"{self.base_url(request)}{self.prefix}/callback"

    async def _flow(self, request: web.Request) -> dict[str, Any]:
        flow = await self.cookies.flow(request)
        if not isinstance(flow.get("id"), str):
            flow = {"id": random_token(16)}
        return flow

    def _next(self, value: object) -> str:
        return safe_next(value if isinstance(value, str) else None, self.prefix)

    async def _csrf_ok(self, request: web.Request, form: Any) -> bool:
        flow = await self.cookies.flow(request)
        submitted, bound = form.get(csrf.FIELD), flow.get("id")
        if not isinstance(submitted, str) or not isinstance(bound, str):
            return False
        return same(submitted, csrf.derive(self.keys.csrf, "pre:" + bound))

    # -- the page -------------------------------------------------------------------------------

    async def sign_in_page(self, request: web.Request, message: str | None = None) -> web.StreamResponse:
        target = self._next(request.query.get("next"))
        if message is None and await self._signed_in(request):
            raise web.HTTPFound(target, headers=pages.HEADERS)
        flow = await self._flow(request)
        flow.pop("email", None)
        sso = None
        if self.redirect is not None:
            sso = f"{self.prefix}/sso" + (f"?next={_quote(target)}" if target != HOME else "")
        response = pages.sign_in(
            prefix=self.prefix,
            csrf=csrf.derive(self.keys.csrf, "pre:" + flow["id"]),
            next=target,
            sso_href=sso,
            codes=self.codes is not None,
            message=message,
            status=200 if message is None else 400,
        )
        await self.cookies.set_flow(request, response, flow)
        return response

    async def _signed_in(self, request: web.Request) -> bool:
        token = await self.cookies.session_token(request)
        return token is not None and await self.resolver.session(session_id(token)) is not None

    # -- SSO ------------------------------------------------------------------------------------

    async def start_sso(self, request: web.Request) -> web.StreamResponse:
        if self.redirect is None:
            return error_response(request, 404, "Single sign-on is not configured.")
        flow = await self._flow(request)
        verifier, challenge = pkce_pair()
        flow.update(
            state=random_token(32),
            verifier=verifier,
            nonce=random_token(16),
            next=self._next(request.query.get("next")),
            started=time.time(),
        )
        location = await self.redirect.authorize_url(
            redirect_uri=self._redirect_uri(request),
            state=flow["state"],
            challenge=challenge,
            nonce=flow["nonce"],
        )
        response = web.Response(status=302, headers={**pages.HEADERS, "Location": location})
        await self.cookies.set_flow(request, response, flow)
        return response

    async def callback(self, request: web.Request) -> web.StreamResponse:
        if self.redirect is None:
            return error_response(request, 404, "Single sign-on is not configured.")
        flow = await self.cookies.flow(request)
        state, expected = request.query.get("state", ""), flow.get("state")
        if (
            not isinstance(expected, str)
            or not state
            or not same(state, expected)
            or not await self.used_states.first_use(state)
        ):
            response = self.problem(
                request, 400, "Sign-in expired", "This sign-in link expired or was already used. Start again."
            )
            self.cookies.clear_flow(request, response)
            return response
        if isinstance(self.redirect, ResponseIssuerCheck):
            try:
                await self.redirect.check_response_issuer(request.query.get("iss"))
            except SignInRefused as exc:
                log.warning("auth: sign-in response refused: %s", exc.message)
                return self._ended_flow(
                    request, self.problem(request, exc.status, "Sign-in refused", exc.message)
                )
        if "error" in request.query:
            detail = request.query.get("error_description") or request.query["error"]
            return self._ended_flow(request, self.problem(request, 403, "Sign-in refused", detail[:300]))
        code = request.query.get("code", "")
        if not code:
            return self._ended_flow(
                request, self.problem(request, 400, "Sign-in failed", "No code came back.")
            )
        try:
            who = await self.redirect.exchange(
                code=code,
                verifier=str(flow.get("verifier", "")),
                nonce=str(flow.get("nonce", "")),
                redirect_uri=self._redirect_uri(request),
            )
        except SignInRefused as exc:
            log.info("auth: sign-in refused: %s", exc.message)
            return self._ended_flow(
                request, self.problem(request, exc.status, "Sign-in refused", exc.message)
            )
        return self._ended_flow(request, await self._complete(request, who, self._next(flow.get("next"))))

    def _ended_flow(self, request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        self.cookies.clear_flow(request, response)
        return response

    # -- email codes ----------------------------------------------------------------------------

    async def send_code(self, request: web.Request) -> web.StreamResponse:
        if self.codes is None:
            return error_response(request, 404, "Email codes are not enabled.")
        form = await request.post()
        if not await self._csrf_ok(request, form):
            return await self.sign_in_page(request, "The form expired. Please try again.")
        email = str(form.get("email", "")).strip()
        if not valid_address(email):
            return await self.sign_in_page(request, "Enter a valid email address.")
        client_ip = self.forwarder.client(request).ip
        flow = await self._flow(request)
        # the same work and the same answers whether or not the address may sign in
        allowed = await self.accounts.may_sign_in(email)
        try:
            if allowed:
                await self.codes.send_code(email, client_ip, flow["id"])
            elif isinstance(self.codes, DecoyCodes):
                await self.codes.send_decoy(email, client_ip, flow["id"])
        except SignInRefused as exc:
            return self.problem(request, exc.status, "Please wait", exc.message)
        except DeliveryFailed:
            return self.problem(
                request,
                503,
                "Sign-in is unavailable",
                "The sign-in code could not be sent. Try again in a minute.",
            )
        if not allowed:
            log.info("auth: code not sent to %s: not allowed to sign in", email)
        flow.update(email=email, next=self._next(form.get("next")))
        response = pages.enter_code(
            prefix=self.prefix, csrf=csrf.derive(self.keys.csrf, "pre:" + flow["id"]), email=email
        )
        await self.cookies.set_flow(request, response, flow)
        return response

    async def verify_code(self, request: web.Request) -> web.StreamResponse:
        if self.codes is None:
            return error_response(request, 404, "Email codes are not enabled.")
        form = await request.post()
        flow = await self.cookies.flow(request)
        email, flow_id = flow.get("email"), flow.get("id")
        if (
            not await self._csrf_ok(request, form)
            or not isinstance(email, str)
            or not isinstance(flow_id, str)
        ):
            return await self.sign_in_page(request, "The form expired. Please start again.")
        code = str(form.get("code", ""))
        try:
            who = await self.codes.verify_code(email, code, self.forwarder.client(request).ip, flow_id)
        except SignInRefused as exc:
            token = csrf.derive(self.keys.csrf, "pre:" + str(flow["id"]))
            return pages.enter_code(
                prefix=self.prefix, csrf=token, email=email, message=exc.message, status=exc.status
            )
        return self._ended_flow(request, await self._complete(request, who, self._next(flow.get("next"))))

    # -- completing and ending ------------------------------------------------------------------

    async def _complete(self, request: web.Request, who: SignedIn, target: str) -> web.StreamResponse:
        """A brand-new session for ``who`` (never one the browser brought: no fixation); any session
        the browser held before is revoked."""
        try:
            user = await self.accounts.sign_in(who)
        except SignInRefused as exc:
            log.info("auth: %s refused: %s", who.email, exc.message)
            return self.problem(request, exc.status, "Sign-in refused", exc.message)
        previous = await self.cookies.session_token(request)
        if previous is not None:
            await self.resolver.end(session_id(previous))
        token = await self.resolver.sessions.create(user.id, who.data)
        log.info("auth: %s signed in (%s)", user.email, self.config.provider)
        response = web.Response(status=303, headers={**pages.HEADERS, "Location": target})
        await self.cookies.set_session(request, response, token)
        return response

    async def sign_out_page(self, request: web.Request) -> web.StreamResponse:
        found = await self.resolver.identify(request)
        if not isinstance(found, Identity):
            raise web.HTTPFound(f"{self.prefix}/sign-in", headers=pages.HEADERS)
        return pages.sign_out(prefix=self.prefix, csrf=found.csrf_token, email=found.email)

    async def sign_out(self, request: web.Request) -> web.StreamResponse:
        """POST with the session's CSRF token (form field or header): revoke, clear, and end the
        provider's session too (WorkOS; OIDC's RP-initiated logout)."""
        token = await self.cookies.session_token(request)
        session = await self.resolver.session(session_id(token)) if token is not None else None
        if session is None:
            response: web.StreamResponse = web.Response(
                status=303, headers={**pages.HEADERS, "Location": f"{self.prefix}/sign-in"}
            )
            self.cookies.clear_session(request, response)
            return response
        submitted = request.headers.get(csrf.HEADER)
        if submitted is None:
            submitted = str((await request.post()).get(csrf.FIELD, ""))
        if not same(submitted, csrf.derive(self.keys.csrf, session.id)):
            return self.problem(
                request, 403, "Sign-out not confirmed", "The form expired. Reload the page and retry."
            )
        await self.resolver.end(session.id)
        location = f"{self.prefix}/sign-in"
        keeper, provider = self.resolver.keeper, self.provider
        if keeper is not None:
            location = keeper.logout_url(session.data, self.base_url(request) + location) or location
        elif isinstance(provider, RemoteSignOut):
            back = self.base_url(request) + location
            location = await provider.end_session_url(session.data, back) or location
        log.info("auth: %s signed out", session.email)
        response = web.Response(status=303, headers={**pages.HEADERS, "Location": location})
        self.cookies.clear_session(request, response)
        return response


def _quote(value: str) -> str:
    return quote(value, safe="")
