"""Invitations: an admin adds someone by email address, and auth mails them where to sign in.

Only where people sign in with emailed codes (WorkOS and OpenID Connect have their own invitations).
The mail goes out through the same delivery as sign-in codes (the log, the mailbox directory or SMTP),
but before the answer, not after it: the admin must learn that it failed, and an admin's action
reveals nothing to a stranger. It goes out *before* the user is written, so a failed delivery leaves
nothing behind; a user the store then refuses (the address taken meanwhile, the store gone) leaves
a mail pointing at a sign-in page the address may or may not pass, and the admin an error to act on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from proxy_core.db import UniqueViolation

from .directory import UserDirectory
from .mail import DeliveryFailed, Mailer, invitation_mail, valid_address
from .users import ROLES, Role, User

log = logging.getLogger(__name__)


class InvitationFailed(Exception):
    """Nobody was invited; ``message`` says why (safe to show), ``status`` as HTTP would (400 a bad
    address or no email-code sign-in, 409 a known address, 503 the mail could not be sent)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message, self.status = message, status


class Invitations:
    def __init__(
        self,
        directory: UserDirectory,
        mailer: Mailer,
        provider: str,
        sign_in_path: str,
        base_url: Callable[[web.Request], str],
    ) -> None:
        self.directory = directory
        self.mailer = mailer
        self.provider = provider
        self.sign_in_path = sign_in_path
        self.base_url = base_url

    async def invite(self, request: web.Request, email: str, *, invited_by: User, role: Role) -> User:
        """Mail ``email`` an invitation, then create their user with ``role``; raises
        :class:`InvitationFailed` (nothing written) or :class:`~proxy_core.db.StoreError`."""
        if self.provider != "email_code":
            raise InvitationFailed(
                f"Invitations are for email-code sign-in; this cloud signs in with {self.provider}.", 400
            )
        if role not in ROLES:
            raise InvitationFailed(f"The role is one of {', '.join(ROLES)}, not {role!r}.", 400)
        email = email.strip()
        if not valid_address(email):
            raise InvitationFailed(f"Not an email address: {email[:254]!r}.", 400)
        if await self.directory.find_by_email(email) is not None:
            raise InvitationFailed(_known(email), 409)
        url = self.base_url(request) + self.sign_in_path
        try:
            await self.mailer.send(invitation_mail(email, url, invited_by.email))
        except DeliveryFailed:
            raise InvitationFailed(
                f"The invitation to {email} could not be sent, so nobody was added. Try again later.", 503
            ) from None
        try:
            user = await self.directory.create(email, role=role)
        except UniqueViolation:
            raise InvitationFailed(_known(email), 409) from None
        log.info("auth: %s invited %s (%s)", invited_by.email, user.email, role)
        return user


def _known(email: str) -> str:
    return f"{email} is already a user here."
