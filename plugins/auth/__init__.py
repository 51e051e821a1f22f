"""Sign-in for the proxy: WorkOS AuthKit, any OpenID Connect provider, or emailed codes; server-side
sessions; users and their roles.

For later stages and other plugins (the only names they may import from here):

* :data:`IDENTITY` — ``request[IDENTITY]`` is the :class:`Identity` (user id, email, role, session id)
  of every request the ``auth`` stage let through with a session.
* :func:`csrf_token`, :func:`check_csrf`, :func:`require_csrf` — CSRF tokens for forms.
* :class:`UserDirectory` / :func:`user_directory` — read users; create, disable, enable, change roles,
  sign out everywhere. The only way to change the ``users`` table from outside this plugin; every
  change is announced to :meth:`UserDirectory.subscribe` listeners as a :class:`UserChanged`.
* :class:`IdentityLinks` — the trail of every link of a provider's subject to a user (for the audit
  view): ``IdentityLinks(db).list(user_id)``.
* :func:`identity_headers` — the ``X-Shmastra-*`` headers a forwarding stage adds to pass the user on
  to an upstream (clients can never send them: every header under that prefix is stripped).
* :class:`MenuEntry` — a link for the cloud menu: ``auth_stage(app).menu.add(MenuEntry(...))``.
* :class:`AuthStage` — the stage; :func:`auth_stage` finds it in an app.
* :func:`session_is_live` — whether a session id (``Identity.session_id``) is still signed in, its
  user enabled (for cutting long-lived streams of ended sessions).
"""

from aiohttp import web

from proxy_core import find_stage

from .csrf import check_csrf, csrf_token, require_csrf
from .directory import USER_DIRECTORY, UserChanged, UserDirectory, UserRef, user_directory
from .identity import IDENTITY, IDENTITY_HEADER_PREFIX, Identity, identity_headers
from .linking import IdentityLink, IdentityLinks
from .menu import MenuEntry
from .stage import AuthStage
from .users import ROLES, Role, User


def auth_stage(app: web.Application) -> AuthStage:
    """The app's ``auth`` stage."""
    return find_stage(app, AuthStage)


async def session_is_live(app: web.Application, session_id: str) -> bool:
    """Whether ``session_id`` is a live session of an enabled user, as the ``auth`` stage sees it (its
    short per-process cache first). Raises ``LookupError`` when the app has no ``auth`` stage and
    :class:`~proxy_core.db.StoreError` when the store cannot answer."""
    session = await auth_stage(app).resolver.session(session_id)
    return session is not None and not session.disabled


__all__ = [
    "IDENTITY",
    "IDENTITY_HEADER_PREFIX",
    "ROLES",
    "USER_DIRECTORY",
    "AuthStage",
    "Identity",
    "IdentityLink",
    "IdentityLinks",
    "MenuEntry",
    "Role",
    "User",
    "UserChanged",
    "UserDirectory",
    "UserRef",
    "auth_stage",
    "check_csrf",
    "csrf_token",
    "identity_headers",
    "require_csrf",
    "session_is_live",
    "user_directory",
]
