"""Any OpenID Connect provider, found through discovery: authorization code with PKCE (S256),
state and nonce; the id_token verified locally against the provider's JWKS."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any
from urllib.parse import quote

from yarl import URL

from ..config import OIDCConfig
from ..users import Role
from .base import ProviderUnavailable, SignedIn, SignInRefused
from .http import JsonClient
from .jwks import JwksCache

_ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class OIDCProvider:
    name = "oidc"

    def __init__(self, config: OIDCConfig) -> None:
        self.config = config
        self.http = JsonClient("The sign-in provider", config.timeout)
        self.jwks = JwksCache(self.http, self._jwks_url, config.discovery_cache_seconds)
        self._metadata: dict[str, Any] | None = None
        self._fetched = 0.0
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        await self.http.close()

    async def metadata(self) -> dict[str, Any]:
        """The discovery document, fetched on first use and cached; its issuer must be ours."""
        async with self._lock:
            if (
                self._metadata is None
                or time.monotonic() - self._fetched > self.config.discovery_cache_seconds
            ):
                document = await self.http.get(f"{self.config.issuer_url}/.well-known/openid-configuration")
                needed = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
                if not isinstance(document, dict) or not all(
                    isinstance(document.get(k), str) for k in needed
                ):
                    raise ProviderUnavailable("the provider's discovery document is incomplete")
                if document["issuer"].rstrip("/") != self.config.issuer_url:
                    raise ProviderUnavailable("the provider's discovery document names another issuer")
                self._metadata, self._fetched = document, time.monotonic()
            return self._metadata

    async def _jwks_url(self) -> str:
        return str((await self.metadata())["jwks_uri"])

    async def authorize_url(self, *, redirect_uri: str, state: str, challenge: str, nonce: str) -> str:
        endpoint = (await self.metadata())["authorization_endpoint"]
        return str(
            URL(endpoint).update_query(
                response_type="code",
                client_id=self.config.client_id,
                redirect_uri=redirect_uri,
                scope=" ".join(self.config.scopes),
                state=state,
                nonce=nonce,
                code_challenge=challenge,
                code_challenge_method="S256",
            )
        )

    async def exchange(self, *, code: str, verifier: str, nonce: str, redirect_uri: str) -> SignedIn:
        metadata = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "client_id": self.config.client_id,
        }
        headers: dict[str, str] = {}
        secret = self.config.client_secret.get_secret_value() if self.config.client_secret else None
        if secret is not None and self.config.token_auth == "client_secret_basic":
            headers["Authorization"] = _basic(self.config.client_id, secret)
        elif secret is not None and self.config.token_auth == "client_secret_post":
            form["client_secret"] = secret
        status, body = await self.http.request("POST", metadata["token_endpoint"], form=form, headers=headers)
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("id_token"), str):
            detail = body.get("error_description") or body.get("error") if isinstance(body, dict) else None
            raise SignInRefused(f"The sign-in provider refused the sign-in ({detail or status}).", 400)
        supported = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        claims = await self.jwks.verify(
            body["id_token"],
            algorithms=[alg for alg in supported if alg in _ASYMMETRIC],
            claims={
                "iss": {"essential": True, "value": metadata["issuer"]},
                "aud": {"essential": True, "value": self.config.client_id},
                "exp": {"essential": True},
                "sub": {"essential": True},
                "nonce": {"essential": True, "value": nonce},
            },
            leeway=self.config.leeway,
        )
        email = claims.get("email")
        if not isinstance(email, str) or not email:
            raise SignInRefused("The sign-in provider did not share an email address (scope 'email').", 400)
        if claims.get("email_verified") is False:
            raise SignInRefused("The sign-in provider has not verified this email address.", 403)
        name = claims.get("name")
        return SignedIn(
            str(claims["sub"]),
            email,
            name if isinstance(name, str) else None,
            self._role(claims),
            {"provider": "oidc", "sub": claims["sub"]},
        )

    def _role(self, claims: dict[str, Any]) -> Role | None:
        claim = self.config.admin_claim
        if claim is None:
            return None
        value = claims.get(claim)
        values = value if isinstance(value, list) else [value]
        return (
            "admin" if any(v in self.config.admin_values for v in values if isinstance(v, str)) else "member"
        )


def _basic(client_id: str, secret: str) -> str:
    """HTTP Basic client authentication as RFC 6749 §2.3.1 has it: both parts form-encoded first."""
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return "Basic " + base64.b64encode(raw).decode()
