"""Any OpenID Connect provider, found through discovery: authorization code with PKCE (S256),
state and nonce; the id_token verified locally against the provider's JWKS; the claims the id_token
lacks (OIDC Core §5.4 puts ``email`` and ``name`` in the userinfo response) fetched from userinfo;
RFC 9207's ``iss`` checked on the way back; RP-initiated logout on sign-out."""

from __future__ import annotations

import base64
import logging
from typing import Any
from urllib.parse import quote

from joserfc.jws import JWSRegistry
from yarl import URL

from ..config import OIDCConfig
from ..users import Role
from .base import ProviderUnavailable, SignedIn, SignInRefused
from .http import JsonClient
from .jwks import JwksCache
from .shared_fetch import SharedFetch

log = logging.getLogger(__name__)

ASYMMETRIC = frozenset(name for name, alg in JWSRegistry.algorithms.items() if alg.key_type != "oct")
"""Every signature algorithm the JOSE library implements with a public key (``RS*``, ``PS*``, ``ES*``,
``EdDSA``, the fully-specified ``Ed25519``, ...): never ``none`` nor the ``HS*`` family, whose key
would be the client secret."""

_PROFILE_CLAIMS = ("email", "email_verified", "name")
_RETRY_AFTER = 2.0
"""After a failed discovery fetch, sign-ins within this many seconds fail at once (no new fetch)."""
_HEALTHY_FOR = 5.0
"""A health check that passed vouches for the provider this long."""


def signing_algorithms(advertised: object) -> list[str]:
    """The id_token algorithms we accept: the ones the provider advertises that are asymmetric."""
    names = advertised if isinstance(advertised, list) and advertised else ["RS256"]
    return [name for name in names if isinstance(name, str) and name in ASYMMETRIC]


class OIDCProvider:
    name = "oidc"

    def __init__(self, config: OIDCConfig) -> None:
        self.config = config
        self.http = JsonClient("The sign-in provider", config.timeout)
        self.jwks = JwksCache(self.http, self._jwks_url, config.discovery_cache_seconds)
        self._discovery = SharedFetch(
            self._discover, ttl=config.discovery_cache_seconds, retry_after=_RETRY_AFTER
        )
        self._health = SharedFetch(self._probe, ttl=_HEALTHY_FOR, retry_after=_RETRY_AFTER)

    async def close(self) -> None:
        await self._discovery.close()
        await self._health.close()
        await self.jwks.close()
        await self.http.close()

    @property
    def _discovery_url(self) -> str:
        return f"{self.config.issuer_url}/.well-known/openid-configuration"

    async def metadata(self) -> dict[str, Any]:
        """The discovery document, fetched on first use and cached; its issuer must be ours."""
        return await self._discovery.get()

    async def _discover(self) -> dict[str, Any]:
        document = await self.http.get(self._discovery_url)
        needed = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
        if not isinstance(document, dict) or not all(isinstance(document.get(k), str) for k in needed):
            raise ProviderUnavailable("the provider's discovery document is incomplete")
        if document["issuer"].rstrip("/") != self.config.issuer_url:
            raise ProviderUnavailable("the provider's discovery document names another issuer")
        return document

    async def _probe(self) -> bool:
        """The provider answers (any status below 500) within ``health_timeout``."""
        await self.http.request("GET", self._discovery_url, within=self.config.health_timeout)
        return True

    async def _jwks_url(self) -> str:
        return str((await self.metadata())["jwks_uri"])

    async def authorize_url(self, *, redirect_uri: str, state: str, challenge: str, nonce: str) -> str:
        """Where to send the browser. When the discovery document came from the cache, first check
        that the provider answers, so a provider that is down gets our page, not a dead host."""
        fetched_before = self._discovery.fetched_at
        endpoint = (await self.metadata())["authorization_endpoint"]
        from_cache = fetched_before > 0 and self._discovery.fetched_at == fetched_before
        if from_cache and self.config.health_timeout > 0:
            await self._health.get()
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

    async def check_response_issuer(self, iss: str | None) -> None:
        """RFC 9207: the authorization response's ``iss`` must name our issuer; a provider that
        advertises the parameter must send it (else the response may come from a mixed-up provider)."""
        metadata = await self.metadata()
        if iss is None:
            if metadata.get("authorization_response_iss_parameter_supported") is True:
                raise SignInRefused("The sign-in response did not say which provider sent it.", 400)
            return
        if iss != metadata["issuer"]:
            raise SignInRefused("The sign-in response came from another provider.", 400)

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
        claims = await self.jwks.verify(
            body["id_token"],
            algorithms=signing_algorithms(metadata.get("id_token_signing_alg_values_supported")),
            claims={
                "iss": {"essential": True, "value": metadata["issuer"]},
                "aud": {"essential": True, "value": self.config.client_id},
                "exp": {"essential": True},
                "sub": {"essential": True},
                "nonce": {"essential": True, "value": nonce},
            },
            leeway=self.config.leeway,
        )
        if any(claim not in claims for claim in _PROFILE_CLAIMS):
            claims = await self.with_userinfo(claims, metadata, body.get("access_token"))
        email = claims.get("email")
        if not isinstance(email, str) or not email:
            raise SignInRefused("The sign-in provider did not share an email address (scope 'email').", 400)
        verified = claims.get("email_verified")
        if verified is False or verified == "false":  # some providers send the claim as a string
            raise SignInRefused("The sign-in provider has not verified this email address.", 403)
        name = claims.get("name")
        return SignedIn(
            str(claims["sub"]),
            email,
            name if isinstance(name, str) else None,
            self._role(claims),
            {"provider": "oidc", "sub": claims["sub"], "id_token": body["id_token"]},
            email_verified=verified is True or verified == "true" or self.config.emails_verified,
        )

    async def with_userinfo(
        self, claims: dict[str, Any], metadata: dict[str, Any], access_token: object
    ) -> dict[str, Any]:
        """``claims`` completed from the userinfo response (the id_token's own claims win), whose
        ``sub`` must be the id_token's (OIDC Core §5.3.2: else the response may be substituted)."""
        endpoint = metadata.get("userinfo_endpoint")
        if not isinstance(endpoint, str) or not isinstance(access_token, str) or not access_token:
            return claims
        status, info = await self.http.request(
            "GET", endpoint, headers={"Authorization": f"Bearer {access_token}"}
        )
        if status != 200 or not isinstance(info, dict):
            raise SignInRefused(f"The sign-in provider did not share your profile ({status}).", 400)
        if info.get("sub") != claims["sub"]:
            log.warning("auth: userinfo sub differs from the id_token's; sign-in refused")
            raise SignInRefused("The sign-in provider's profile belongs to someone else.", 401)
        return info | claims

    async def end_session_url(self, data: dict[str, Any], return_to: str) -> str | None:
        """RP-initiated logout: the provider's ``end_session_endpoint`` with ``id_token_hint`` and
        ``post_logout_redirect_uri`` (``None`` when turned off, not advertised or not reachable)."""
        id_token = data.get("id_token")
        if not self.config.logout or not isinstance(id_token, str):
            return None
        try:
            # the cached document, however old: sign-out should not wait for the provider
            metadata = self._discovery.cached or await self.metadata()
        except ProviderUnavailable as exc:
            log.warning("auth: no logout at the provider: %s", exc)
            return None
        endpoint = metadata.get("end_session_endpoint")
        if not isinstance(endpoint, str):
            return None
        return str(
            URL(endpoint).update_query(
                id_token_hint=id_token, post_logout_redirect_uri=return_to, client_id=self.config.client_id
            )
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
