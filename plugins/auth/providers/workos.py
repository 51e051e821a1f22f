"""WorkOS AuthKit (User Management): authorization code + PKCE, Magic Auth, local verification of
the RS256 access token, refresh with rotation, organization restriction and roles."""

from __future__ import annotations

from typing import Any

from yarl import URL

from ..config import WorkOSConfig
from ..users import Role
from .base import ProviderUnavailable, SessionEnded, SignedIn, SignInRefused
from .http import JsonClient
from .jwks import InvalidToken, JwksCache

MAGIC_AUTH_GRANT = "urn:workos:oauth:grant-type:magic-auth:code"


class WorkOSProvider:
    name = "workos"

    def __init__(self, config: WorkOSConfig) -> None:
        self.config = config
        self.base = str(config.base_url).rstrip("/")
        self.http = JsonClient("WorkOS", config.timeout)
        self.jwks = JwksCache(self.http, self._jwks_url, config.jwks_cache_seconds)
        self._auth = {"Authorization": f"Bearer {config.api_key.get_secret_value()}"}

    async def _jwks_url(self) -> str:
        return f"{self.base}/sso/jwks/{self.config.client_id}"

    async def close(self) -> None:
        await self.http.close()

    async def authorize_url(self, *, redirect_uri: str, state: str, challenge: str, nonce: str) -> str:
        query = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "provider": "authkit",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if self.config.organization_id:
            query["organization_id"] = self.config.organization_id
        return str(URL(f"{self.base}/user_management/authorize").with_query(query))

    async def exchange(self, *, code: str, verifier: str, nonce: str, redirect_uri: str) -> SignedIn:
        return await self._authenticate(
            {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}
        )

    async def send_code(self, email: str, client_ip: str, flow: str) -> None:
        status, body = await self.http.request(
            "POST", f"{self.base}/user_management/magic_auth", json={"email": email}, headers=self._auth
        )
        if status >= 400:
            raise SignInRefused(_message(body, "WorkOS could not send a code to this address."), 400)

    async def verify_code(self, email: str, code: str, client_ip: str, flow: str) -> SignedIn:
        return await self._authenticate({"grant_type": MAGIC_AUTH_GRANT, "code": code, "email": email})

    async def _authenticate(self, grant: dict[str, str]) -> SignedIn:
        status, body = await self.http.request(
            "POST", f"{self.base}/user_management/authenticate", json=self._client_credentials(grant)
        )
        if status != 200 or not isinstance(body, dict):
            raise SignInRefused(_message(body, "WorkOS refused the sign-in."), 400 if status < 500 else 502)
        try:
            access_token, refresh_token, user = body["access_token"], body["refresh_token"], body["user"]
            user_id, email = str(user["id"]), str(user["email"])
        except (KeyError, TypeError):
            raise ProviderUnavailable("WorkOS answered without tokens or user") from None
        claims = await self._verify(access_token)
        if claims.get("sub") != user_id:
            raise InvalidToken("the token is for another user")
        name = " ".join(str(p) for p in (user.get("first_name"), user.get("last_name")) if p) or None
        return SignedIn(user_id, email, name, await self._role(claims, user_id), _data(claims, refresh_token))

    def _client_credentials(self, grant: dict[str, str]) -> dict[str, str]:
        return {
            **grant,
            "client_id": self.config.client_id,
            "client_secret": self.config.api_key.get_secret_value(),
        }

    async def _verify(self, token: str) -> dict[str, Any]:
        claims = await self.jwks.verify(
            token,
            algorithms=["RS256"],
            claims={
                "iss": {"essential": True, "value": self.config.expected_issuer},
                "exp": {"essential": True},
                "sub": {"essential": True},
                "sid": {"essential": True},
            },
            leeway=self.config.leeway,
        )
        wanted = self.config.organization_id
        if wanted and claims.get("org_id") != wanted:
            raise SignInRefused("Your account is not a member of this organization.", 403)
        return claims

    async def _role(self, claims: dict[str, Any], user_id: str) -> Role | None:
        role = claims.get("role")
        if isinstance(role, str):
            return self._map(role)
        organization = self.config.organization_id
        if not organization:
            return None
        answer = await self.http.get(
            str(
                URL(f"{self.base}/user_management/organization_memberships").with_query(
                    user_id=user_id, organization_id=organization
                )
            ),
            headers=self._auth,
        )
        slugs = [
            m["role"]["slug"]
            for m in (answer or {}).get("data", [])
            if isinstance(m, dict)
            and m.get("status", "active") == "active"
            and isinstance(m.get("role"), dict)
        ]
        if not slugs:
            raise SignInRefused("Your account is not an active member of this organization.", 403)
        return "admin" if any(self._map(slug) == "admin" for slug in slugs) else "member"

    def _map(self, slug: str) -> Role:
        return "admin" if slug in self.config.admin_roles else "member"

    def refresh_due(self, data: dict[str, Any], now: float) -> bool:
        return now >= float(data.get("exp", 0)) - self.config.refresh_margin

    def still_valid(self, data: dict[str, Any], now: float) -> bool:
        return now < float(data.get("exp", 0)) + self.config.leeway

    async def refresh(self, data: dict[str, Any]) -> dict[str, Any]:
        grant = {"grant_type": "refresh_token", "refresh_token": str(data.get("refresh_token", ""))}
        if self.config.organization_id:
            grant["organization_id"] = self.config.organization_id
        status, body = await self.http.request(
            "POST", f"{self.base}/user_management/authenticate", json=self._client_credentials(grant)
        )
        if status != 200 or not isinstance(body, dict) or "access_token" not in body:
            raise SessionEnded(_message(body, f"refresh refused ({status})"))
        try:
            claims = await self._verify(str(body["access_token"]))
        except SignInRefused as exc:
            raise SessionEnded(exc.message) from None
        if claims.get("sub") != data.get("sub"):
            raise SessionEnded("the refreshed token is for another user")
        return _data(claims, str(body.get("refresh_token") or data["refresh_token"]))

    def logout_url(self, data: dict[str, Any], return_to: str) -> str | None:
        sid = data.get("sid")
        if not sid:
            return None
        return str(
            URL(f"{self.base}/user_management/sessions/logout").with_query(
                session_id=sid, return_to=return_to
            )
        )

    async def revoke(self, data: dict[str, Any]) -> None:
        sid = data.get("sid")
        if sid:
            await self.http.request(
                "POST",
                f"{self.base}/user_management/sessions/revoke",
                json={"session_id": sid},
                headers=self._auth,
            )


def _data(claims: dict[str, Any], refresh_token: str) -> dict[str, Any]:
    """What the session keeps: enough to refresh and to log out at WorkOS, not the access token."""
    return {
        "provider": "workos",
        "sub": claims["sub"],
        "sid": claims["sid"],
        "org_id": claims.get("org_id"),
        "exp": claims["exp"],
        "refresh_token": refresh_token,
    }


def _message(body: Any, fallback: str) -> str:
    if isinstance(body, dict):
        for key in ("message", "error_description", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    return fallback
