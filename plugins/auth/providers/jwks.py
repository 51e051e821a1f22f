"""Signed tokens verified locally against the provider's JWKS, fetched asynchronously and cached.

An unknown ``kid`` triggers one refetch (key rotation), at most every 30 seconds, so a stream of
forged tokens with random key ids cannot turn into a stream of requests to the provider. Concurrent
verifications share one fetch in flight (:class:`SharedFetch`): no lock is held across the network.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from .base import ProviderUnavailable, SignInRefused
from .http import JsonClient
from .shared_fetch import SharedFetch

_REFETCH_EVERY = 30.0
_RETRY_AFTER = 2.0


class InvalidToken(SignInRefused):
    """A token that failed verification: bad signature, unknown key, wrong algorithm, bad claims."""

    def __init__(self, why: str) -> None:
        super().__init__(f"The sign-in provider's token was not valid ({why}).", 401)
        self.why = why


class JwksCache:
    """The provider's keys: one fetch in flight at a time, no lock held across it (see
    :class:`SharedFetch`)."""

    def __init__(self, client: JsonClient, url: Callable[[], Awaitable[str]], ttl: float) -> None:
        self._client = client
        self._url = url
        self._keys = SharedFetch(self._fetch, ttl=ttl, retry_after=_RETRY_AFTER)

    async def _fetch(self) -> KeySet:
        document = await self._client.get(await self._url())
        try:
            return KeySet.import_key_set(document)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise ProviderUnavailable(f"{self._client.name} served an unusable JWKS") from exc

    async def _key_set(self, *, stale_before: float | None = None) -> KeySet:
        return await self._keys.get(fresher_than=stale_before)

    async def close(self) -> None:
        await self._keys.close()

    async def verify(
        self, token: str, *, algorithms: list[str], claims: dict[str, Any], leeway: float
    ) -> dict[str, Any]:
        """The claims of ``token``, or :class:`InvalidToken`. ``claims`` are joserfc claim rules."""
        keys = await self._key_set()
        try:
            try:
                decoded = jwt.decode(token, keys, algorithms=algorithms)
            except InvalidKeyIdError:
                if time.monotonic() - self._keys.fetched_at < _REFETCH_EVERY:
                    raise
                keys = await self._key_set(stale_before=time.monotonic())
                decoded = jwt.decode(token, keys, algorithms=algorithms)
            jwt.JWTClaimsRegistry(leeway=int(leeway), **claims).validate(decoded.claims)
        except JoseError as exc:
            raise InvalidToken(exc.error) from None
        except ValueError as exc:  # malformed segments that joserfc reports as ValueError
            raise InvalidToken(str(exc) or "malformed") from None
        return dict(decoded.claims)
