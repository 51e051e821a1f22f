"""A local WorkOS (User Management / AuthKit) that speaks the contract in
``shared/reference/workos-contract.md``:

* ``GET /user_management/authorize`` redirects straight back with a code for ``WorkOS.login_as``
  (AuthKit's hosted page, reduced to "this person signs in"), or with ``error=`` when set;
* ``POST /user_management/authenticate`` (JSON or form) for ``authorization_code`` (PKCE S256
  enforced when a challenge was sent; codes are single use), ``refresh_token`` (rotating: the old
  one is dead after use) and the Magic Auth grant;
* ``GET /sso/jwks/<client_id>`` with a real RSA key; ``POST /user_management/magic_auth``;
  ``GET /user_management/sessions/logout``; ``POST /user_management/sessions/revoke``;
  ``GET /user_management/organization_memberships``.

Knobs for bad behaviour: ``token_ttl``, ``sign_with`` (``"ours"``, ``"foreign"`` key, ``"none"``
algorithm), ``issuer``; ``received`` records every authenticate body.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

CLIENT_ID = "client_standin"
API_KEY = "sk_test_standin"
MAGIC_AUTH_GRANT = "urn:workos:oauth:grant-type:magic-auth:code"


@dataclass
class Person:
    id: str
    email: str
    first_name: str | None = None
    last_name: str | None = None
    role: str | None = None
    """The ``role`` claim of tokens issued in an organization (absent when ``None``)."""


@dataclass
class Grant:
    person: Person
    redirect_uri: str
    challenge: str | None
    organization_id: str | None


@dataclass
class Refresh:
    person: Person
    session_id: str
    organization_id: str | None


@dataclass
class WorkOS:
    """The stand-in's state; tests change it between requests."""

    login_as: Person | None = None
    authorize_error: str | None = None
    organization_id: str | None = None
    """The organization tokens are issued in (``org_id``); overridden by the authorize request's."""
    memberships: dict[tuple[str, str], str] = field(default_factory=dict)
    """(user id, organization id) → role slug, for the memberships endpoint."""
    token_ttl: int = 300
    sign_with: str = "ours"
    issuer: str = ""
    """The ``iss`` of tokens; by default the URL the stand-in is reached at, with a trailing slash."""
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "standin-1"}))
    foreign_key: RSAKey = field(
        default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "standin-1"})
    )
    codes: dict[str, Grant] = field(default_factory=dict)
    refresh_tokens: dict[str, Refresh] = field(default_factory=dict)
    magic_codes: dict[str, str] = field(default_factory=dict)
    people: dict[str, Person] = field(default_factory=dict)
    ended_sessions: set[str] = field(default_factory=set)
    received: list[dict[str, str]] = field(default_factory=list)
    jwks_requests: int = 0

    def person(self, email: str, *, role: str | None = None, name: str | None = None) -> Person:
        """The person with ``email`` (created on first mention) — also the next to sign in."""
        found = self.people.get(email)
        if found is None:
            first, _, last = (name or "").partition(" ")
            found = self.people[email] = Person(
                f"user_{secrets.token_hex(8)}", email, first or None, last or None
            )
        found.role = role
        self.login_as = found
        return found

    def revoke_refresh_tokens(self) -> None:
        self.refresh_tokens.clear()

    def access_token(self, person: Person, session_id: str, organization_id: str | None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": person.id,
            "sid": session_id,
            "iat": now,
            "exp": now + self.token_ttl,
        }
        if organization_id:
            claims["org_id"] = organization_id
            if person.role:
                claims["role"] = person.role
                claims["roles"] = [person.role]
                claims["permissions"] = []
        if self.sign_with == "none":
            header = _b64(orjson.dumps({"alg": "none", "typ": "JWT", "kid": "standin-1"}))
            return f"{header}.{_b64(orjson.dumps(claims))}."
        key = self.foreign_key if self.sign_with == "foreign" else self.key
        return jwt.encode({"alg": "RS256", "kid": "standin-1"}, claims, key)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


STATE = web.AppKey("workos_standin", WorkOS)


def workos_app(state: WorkOS | None = None) -> web.Application:
    app = web.Application()
    app[STATE] = state or WorkOS()
    app.router.add_get("/user_management/authorize", _authorize)
    app.router.add_post("/user_management/authenticate", _authenticate)
    app.router.add_get("/sso/jwks/{client_id}", _jwks)
    app.router.add_post("/user_management/magic_auth", _magic_auth)
    app.router.add_get("/user_management/sessions/logout", _logout)
    app.router.add_post("/user_management/sessions/revoke", _revoke)
    app.router.add_get("/user_management/organization_memberships", _memberships)
    return app


def _state(request: web.Request) -> WorkOS:
    state = request.app[STATE]
    if not state.issuer:
        state.issuer = f"{request.scheme}://{request.host}/"
    return state


def _error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


def _authorized(request: web.Request) -> bool:
    return request.headers.get("Authorization") == f"Bearer {API_KEY}"


async def _authorize(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    query = request.query
    if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
        return _error(400, "invalid_request", "unknown client or response type")
    redirect_uri = query.get("redirect_uri", "")
    if not redirect_uri.startswith(("http://", "https://")):
        return _error(400, "invalid_request", "redirect_uri is required")
    challenge = query.get("code_challenge")
    if challenge is not None and query.get("code_challenge_method") != "S256":
        return _error(400, "invalid_request", "only S256 code challenges are supported")
    back: dict[str, str] = {}
    if "state" in query:
        back["state"] = query["state"]
    if state.authorize_error or state.login_as is None:
        back["error"] = state.authorize_error or "access_denied"
        back["error_description"] = "The user did not sign in."
    else:
        code = secrets.token_urlsafe(24)
        organization = query.get("organization_id") or state.organization_id
        state.codes[code] = Grant(state.login_as, redirect_uri, challenge, organization)
        back["code"] = code
    raise web.HTTPFound(f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(back)}")


async def _body(request: web.Request) -> dict[str, str]:
    if request.content_type == "application/json":
        parsed = await request.json()
        return {str(k): str(v) for k, v in parsed.items()} if isinstance(parsed, dict) else {}
    return {k: str(v) for k, v in (await request.post()).items()}


async def _authenticate(request: web.Request) -> web.Response:
    state = _state(request)
    body = await _body(request)
    state.received.append(body)
    if body.get("client_id") != CLIENT_ID or body.get("client_secret") != API_KEY:
        return _error(401, "invalid_client", "Invalid client ID or secret.")
    grant_type = body.get("grant_type")
    if grant_type == "authorization_code":
        grant = state.codes.pop(body.get("code", ""), None)  # single use, even when the verifier is wrong
        if grant is None:
            return _error(400, "invalid_grant", "The code is invalid or was already used.")
        if grant.challenge is not None:
            verifier = body.get("code_verifier")
            if not verifier:
                return _error(400, "invalid_grant", "code_verifier is required.")
            digest = hashlib.sha256(verifier.encode()).digest()
            if _b64(digest) != grant.challenge:
                return _error(400, "invalid_grant", "The code_verifier does not match the code_challenge.")
        return _issue(state, grant.person, f"session_{secrets.token_hex(8)}", grant.organization_id)
    if grant_type == "refresh_token":
        refresh = state.refresh_tokens.pop(body.get("refresh_token", ""), None)
        if refresh is None or refresh.session_id in state.ended_sessions:
            return _error(400, "invalid_grant", "The refresh token is invalid or revoked.")
        organization = body.get("organization_id") or refresh.organization_id
        return _issue(state, refresh.person, refresh.session_id, organization)
    if grant_type == MAGIC_AUTH_GRANT:
        email = body.get("email", "")
        code = state.magic_codes.get(email)
        if code is None or body.get("code") != code:
            return _error(400, "invalid_grant", "The code is invalid or expired.")
        del state.magic_codes[email]
        person = state.people.get(email) or state.person(email)
        return _issue(state, person, f"session_{secrets.token_hex(8)}", state.organization_id)
    return _error(400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported")


def _issue(state: WorkOS, person: Person, session_id: str, organization_id: str | None) -> web.Response:
    refresh_token = secrets.token_urlsafe(24)
    state.refresh_tokens[refresh_token] = Refresh(person, session_id, organization_id)
    answer: dict[str, Any] = {
        "user": {
            "object": "user",
            "id": person.id,
            "email": person.email,
            "email_verified": True,
            "first_name": person.first_name,
            "last_name": person.last_name,
        },
        "access_token": state.access_token(person, session_id, organization_id),
        "refresh_token": refresh_token,
        "authentication_method": "GoogleOAuth",
    }
    if organization_id:
        answer["organization_id"] = organization_id
    return web.json_response(answer)


async def _jwks(request: web.Request) -> web.Response:
    state = _state(request)
    if request.match_info["client_id"] != CLIENT_ID:
        return _error(404, "not_found", "unknown client")
    state.jwks_requests += 1
    return web.json_response(KeySet([state.key]).as_dict(private=False))


async def _magic_auth(request: web.Request) -> web.Response:
    state = _state(request)
    if not _authorized(request):
        return _error(401, "unauthorized", "Invalid API key.")
    email = (await _body(request)).get("email", "")
    if "@" not in email:
        return web.json_response({"code": "invalid_request", "message": "email is invalid"}, status=422)
    person = state.people.get(email) or state.person(email)
    state.magic_codes[email] = f"{secrets.randbelow(1_000_000):06d}"
    return web.json_response(
        {
            "object": "magic_auth",
            "id": f"magic_auth_{secrets.token_hex(6)}",
            "user_id": person.id,
            "email": email,
            "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600)),
        }
    )


async def _logout(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    session_id = request.query.get("session_id", "")
    if not session_id:
        return _error(400, "invalid_request", "session_id is required")
    state.ended_sessions.add(session_id)
    raise web.HTTPFound(request.query.get("return_to") or "/")


async def _revoke(request: web.Request) -> web.Response:
    state = _state(request)
    if not _authorized(request):
        return _error(401, "unauthorized", "Invalid API key.")
    state.ended_sessions.add((await _body(request)).get("session_id", ""))
    return web.json_response({})


async def _memberships(request: web.Request) -> web.Response:
    state = _state(request)
    if not _authorized(request):
        return _error(401, "unauthorized", "Invalid API key.")
    user_id, organization = request.query.get("user_id", ""), request.query.get("organization_id", "")
    slug = state.memberships.get((user_id, organization))
    data = []
    if slug is not None:
        data.append(
            {
                "object": "organization_membership",
                "id": f"om_{user_id}",
                "user_id": user_id,
                "organization_id": organization,
                "role": {"slug": slug},
                "status": "active",
            }
        )
    return web.json_response(
        {"object": "list", "data": data, "list_metadata": {"before": None, "after": None}}
    )
