"""What every provider produces, the errors they raise, and the three capabilities a provider may have."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..users import Role


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A person the provider vouched for."""

    external_id: str
    email: str
    name: str | None = None
    role: Role | None = None
    """The role the provider says, or ``None`` when it has no say (the stored role then stands)."""
    data: dict[str, Any] = field(default_factory=dict)
    """Kept with the session: tokens, the provider's session id."""
    email_verified: bool = True
    """The provider vouches that ``email`` belongs to this person; only then may the sign-in create a
    user or link one by email (see :mod:`plugins.auth.linking`)."""


class SignInRefused(Exception):
    """The provider (or our policy) said no; the message is safe to show to the person."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.message, self.status = message, status


class ProviderUnavailable(Exception):
    """The provider could not be reached, or failed (5xx, malformed answer); worth retrying later."""


class SessionEnded(Exception):
    """The provider no longer honours the session (its refresh token was revoked or expired)."""


@runtime_checkable
class RedirectSignIn(Protocol):
    """Sign-in by sending the browser to the provider and back (authorization code + PKCE)."""

    async def authorize_url(self, *, redirect_uri: str, state: str, challenge: str, nonce: str) -> str: ...

    async def exchange(self, *, code: str, verifier: str, nonce: str, redirect_uri: str) -> SignedIn: ...


@runtime_checkable
class ResponseIssuerCheck(Protocol):
    """A redirect provider that checks RFC 9207's ``iss`` parameter of the authorization response."""

    async def check_response_issuer(self, iss: str | None) -> None: ...


@runtime_checkable
class RemoteSignOut(Protocol):
    """A provider whose own session ends by sending the browser to it (RP-initiated logout)."""

    async def end_session_url(self, data: dict[str, Any], return_to: str) -> str | None: ...


@runtime_checkable
class CodeSignIn(Protocol):
    """Sign-in with a one-time code sent to an email address."""

    async def send_code(self, email: str, client_ip: str, flow: str) -> None:
        """Send a code for ``email``; ``flow`` is the asking browser's sign-in flow id, which
        verification must present again (a provider may ignore it)."""
        ...

    async def verify_code(self, email: str, code: str, client_ip: str, flow: str) -> SignedIn: ...


@runtime_checkable
class DecoyCodes(Protocol):
    """A code provider that can look, from outside, as if it sent a code to any address."""

    async def send_decoy(self, email: str, client_ip: str, flow: str) -> None: ...


@runtime_checkable
class SessionKeeper(Protocol):
    """A provider whose tokens need refreshing while our session lives, and a remote logout."""

    def refresh_due(self, data: dict[str, Any], now: float) -> bool: ...

    def still_valid(self, data: dict[str, Any], now: float) -> bool: ...

    async def refresh(self, data: dict[str, Any]) -> dict[str, Any]: ...

    def logout_url(self, data: dict[str, Any], return_to: str) -> str | None: ...

    async def revoke(self, data: dict[str, Any]) -> None: ...


class Provider(Protocol):
    name: str

    async def close(self) -> None: ...
