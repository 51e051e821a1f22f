"""How the ``e2b`` SDK's failures become the provider contract's errors.

The SDK raises its own exception classes (some of which are not even ``SandboxException``
subclasses), ``httpx`` transport errors and plain ``OSError``/``TimeoutError`` from its Rust HTTP
client. The router must never see any of them: each is translated here into one
:class:`~plugins.sandbox_router.providers.base.ProviderError` subclass with a message that is safe to
show (the SDK's own text, which can carry response bodies, is only logged).
"""

from __future__ import annotations

import logging

import httpx
from connectrpc.errors import ConnectError
from e2b import (
    AuthenticationException,
    FileNotFoundException,
    NotFoundException,
    RateLimitException,
    SandboxException,
    SandboxNotFoundException,
    SandboxNotRunningException,
    SandboxUnreachableException,
    ServiceBusyException,
    TimeoutException,
)

from .base import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    SandboxGone,
)

log = logging.getLogger("plugins.sandbox_router.e2b")

AUTH_MESSAGE = (
    "E2B refused the API key: set a valid key in the E2B_API_KEY environment variable "
    "(or [pipeline.e2b] api_key) and restart"
)


def translate(exc: Exception, action: str, *, retry_after: float) -> Exception:
    """The contract error for an SDK failure during ``action`` (e.g. ``"create"``).

    ``retry_after`` is used for rate limits: SDK 2.63 already waited out the server's
    ``Retry-After`` (up to its retry count, within the call's time bound) before giving up, and
    does not expose the header on the exception (e2b-dev/E2B#1325), so the caller's back-off is
    the configured one. A missing file is the builtin :class:`FileNotFoundError`, not a provider
    failure. Anything else is a plain :class:`ProviderError`, logged with its traceback.
    """
    if isinstance(exc, ProviderError | FileNotFoundError):
        return exc
    if isinstance(exc, FileNotFoundException):
        return FileNotFoundError(str(exc))
    if isinstance(exc, AuthenticationException):
        log.error("e2b %s: %s", action, AUTH_MESSAGE)
        return ProviderAuthError(AUTH_MESSAGE)
    log.warning("e2b %s failed: %s: %s", action, type(exc).__name__, exc)
    if isinstance(exc, RateLimitException):
        return ProviderRateLimited("E2B is rate limiting us; trying again shortly", retry_after)
    if isinstance(exc, SandboxNotFoundException | SandboxNotRunningException | NotFoundException):
        return SandboxGone("The sandbox no longer exists at E2B")
    if isinstance(exc, ServiceBusyException | SandboxUnreachableException):
        return ProviderUnavailable("E2B is unavailable right now")
    if isinstance(exc, TimeoutException | httpx.TimeoutException | TimeoutError):
        return ProviderTimeout(f"E2B did not answer in time ({action})")
    if isinstance(exc, httpx.TransportError | OSError):
        return ProviderUnavailable("E2B cannot be reached")
    if isinstance(exc, SandboxException):
        status = exc.status_code or 0
        if status == 504:
            return ProviderTimeout(f"E2B did not answer in time ({action})")
        if status >= 500:
            return ProviderUnavailable(f"E2B answered with a server error ({status})")
        return ProviderError(f"E2B refused to {action} the sandbox ({status or 'error'})")
    if isinstance(exc, ConnectError):
        return ProviderUnavailable("The sandbox cannot be reached")
    log.error("e2b %s: unexpected failure", action, exc_info=exc)
    return ProviderError(f"E2B failed to {action} the sandbox")
