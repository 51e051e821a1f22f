"""Sign-in for the proxy: WorkOS AuthKit, any OpenID Connect provider, or emailed codes; server-side
sessions; users and their roles.

For later stages:

* :data:`IDENTITY` — ``request[IDENTITY]`` is the :class:`Identity` (user id, email, role, session id)
  of every request the ``auth`` stage let through with a session.
* :func:`csrf_token`, :func:`check_csrf`, :func:`require_csrf` — CSRF tokens for forms.
* :class:`IdentityLinks` — the trail of every link of a provider's subject to a user (for the audit
  view): ``IdentityLinks(db).list(user_id)``.
* :func:`identity_headers` — the ``X-Shmastra-*`` headers a forwarding stage adds to pass the user on
  to an upstream (clients can never send them: every header under that prefix is stripped).
* :class:`AuthStage` — the stage; :meth:`AuthStage.revoke_user` signs a user out everywhere;
  :func:`auth_stage` finds it in an app.
"""

from aiohttp import web

from proxy_core import STAGES

from .csrf import check_csrf, csrf_token, require_csrf
from .identity import IDENTITY, IDENTITY_HEADER_PREFIX, Identity, identity_headers
from .linking import IdentityLink, IdentityLinks
from .stage import AuthStage


def auth_stage(app: web.Application) -> AuthStage:
    """The app's ``auth`` stage (for admin actions such as :meth:`AuthStage.revoke_user`)."""
    for stage in app[STAGES]:
        if isinstance(stage, AuthStage):
            return stage
    raise LookupError("this app has no auth stage")


__all__ = [
    "IDENTITY",
    "IDENTITY_HEADER_PREFIX",
    "AuthStage",
    "Identity",
    "IdentityLink",
    "IdentityLinks",
    "auth_stage",
    "check_csrf",
    "csrf_token",
    "identity_headers",
    "require_csrf",
]
