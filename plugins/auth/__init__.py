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
* :class:`MenuEntry` / :func:`add_menu_entry` — a link for the cloud menu:
  ``add_menu_entry(app, MenuEntry(...))``.
* :class:`AuthStage` — the stage; :func:`auth_stage` finds it in an app. Other plugins never touch
  its parts (``tests/architecture`` enforces it): they use the functions here.
* :func:`identify` — a request's :class:`Identity`, or the answer the stage would give instead (a
  redirect to sign-in, 401 JSON), for a stage that runs before ``auth`` and checks for itself.
* :func:`invite` — mail someone an invitation and add them as a user (email-code sign-in only);
  :class:`InvitationFailed` says why not (bad address, known address, mail not sent: nothing written).
* :func:`sign_in_method` — the configured provider: ``"workos"``, ``"oidc"`` or ``"email_code"``.
* :func:`session_is_live` — whether a session id (``Identity.session_id``) is still signed in, its
  user enabled (for cutting long-lived streams of ended sessions).
"""

from aiohttp import web

from proxy_core import find_stage

from .csrf import check_csrf, csrf_token, require_csrf
from .directory import USER_DIRECTORY, UserChanged, UserDirectory, UserRef, user_directory
from .identity import IDENTITY, IDENTITY_HEADER_PREFIX, Identity, identity_headers
from .invitations import InvitationFailed
from .linking import IdentityLink, IdentityLinks
from .menu import MenuEntry
from .stage import AuthStage
from .users import ROLES, Role, User


def auth_stage(app: web.Application) -> AuthStage:
    """The app's ``auth`` stage."""
    return find_stage(app, AuthStage)


def sign_in_method(app: web.Application) -> str:
    """How people sign in to this cloud: the ``auth`` stage's ``provider`` (``"workos"``, ``"oidc"``
    or ``"email_code"``). Raises ``LookupError`` when the app has no ``auth`` stage."""
    return auth_stage(app).config.provider


def add_menu_entry(app: web.Application, entry: MenuEntry) -> None:
    """Show ``entry`` in the cloud menu (above "Sign out"; added once however often this is called).
    Raises ``LookupError`` when the app has no ``auth`` stage."""
    auth_stage(app).menu.add(entry)


async def identify(request: web.Request) -> Identity | web.StreamResponse:
    """The identity of the request's live session (its cookie), or the answer to give instead: a
    redirect to sign-in for a browser navigation, 401 JSON otherwise. Raises ``LookupError`` when the
    app has no ``auth`` stage and :class:`~proxy_core.db.StoreError` when the store cannot answer."""
    return await auth_stage(request.app).resolver.identify(request)


async def invite(request: web.Request, email: str, *, invited_by: User, role: Role = "member") -> User:
    """Mail ``email`` an invitation to sign in (a link to this cloud's sign-in page: ``[server]
    public_url``, else the address ``request`` came to), then add them as a user with ``role``.
    Raises :class:`InvitationFailed` with nothing written (no email-code sign-in here, a bad or
    known address, the mail not sent), :class:`~proxy_core.db.StoreError` when the store fails and
    ``LookupError`` when the app has no ``auth`` stage."""
    return await auth_stage(request.app).invitations.invite(request, email, invited_by=invited_by, role=role)


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
    "InvitationFailed",
    "MenuEntry",
    "Role",
    "User",
    "UserChanged",
    "UserDirectory",
    "UserRef",
    "add_menu_entry",
    "auth_stage",
    "check_csrf",
    "csrf_token",
    "identify",
    "identity_headers",
    "invite",
    "require_csrf",
    "session_is_live",
    "sign_in_method",
    "user_directory",
]
