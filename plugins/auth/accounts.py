"""Who may sign in, and the user record a sign-in creates or updates (with the role it brings)."""

from __future__ import annotations

from proxy_core.db import Database

from .config import AuthConfig
from .directory import UserDirectory
from .linking import Linker
from .providers.base import SignedIn, SignInRefused
from .users import User, Users

NOT_ALLOWED = "This account may not sign in here. Ask an administrator to add you."
DISABLED = "Your account is disabled. Ask an administrator."


class Accounts:
    def __init__(self, db: Database, config: AuthConfig, directory: UserDirectory) -> None:
        self.users = Users(db)
        self.directory = directory
        self.linker = Linker(db, config.provider)
        self.config = config
        self._admins = frozenset(config.admins)
        self._emails = frozenset(config.allowed_emails)
        self._domains = frozenset(config.allowed_domains)
        # Email codes prove only that someone reads a mailbox, so with no lists nobody new gets in;
        # an identity provider is a gate of its own.
        self._open = config.provider != "email_code" and not (self._emails or self._domains)

    async def may_sign_in(self, email: str) -> bool:
        """Admins, listed addresses and domains, and users an operator added (and did not disable)."""
        email = email.strip().lower()
        if email in self._admins or email in self._emails:
            return True
        if email.rpartition("@")[2] in self._domains or self._open:
            return True
        user = await self.users.find_by_email(email)
        return user is not None and not user.disabled

    async def sign_in(self, who: SignedIn) -> User:
        """The user for ``who``, created or updated; raises :class:`SignInRefused` when not allowed."""
        if not await self.may_sign_in(who.email):
            raise SignInRefused(NOT_ALLOWED, 403)
        user = await self.linker.user_for(who)
        if user.disabled:
            raise SignInRefused(DISABLED, 403)
        # the stored email: an address the provider does not vouch for never makes an admin
        role = "admin" if user.email.lower() in self._admins else who.role
        if role is not None and role != user.role:
            user = await self.directory.set_role(user.id, role)  # announced, like any role change
        return user
