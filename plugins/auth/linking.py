"""Which user a provider's sign-in is, and the trail of every link between a provider's subject and a user.

A sign-in is matched by its subject first. An unknown subject may create a user, or be linked by email
to an existing user, only when the provider vouches for the email (``email_verified``, or
``emails_verified`` in its config). A user already linked to a different subject *of this provider* is
never re-linked: an attacker who controls a subject and claims alice's address must not become alice.
A subject another provider gave (the deployment moved from email codes to OIDC, say) is replaced by a
verified link, as a user an operator added would be linked. Links are made with a conditional
``UPDATE`` (only while the stored subject is still the one read), so concurrent links cannot both win.

Every link is written to ``identity_links`` in the transaction that makes it, and logged as a structured
line (``"auth: identity linked"`` with ``user_id``, ``provider``, ``subject``, ``email``, ``how``,
``replaced``). The ``manage`` plugin's audit view reads them through :class:`IdentityLinks` (exported
by the package).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from proxy_core.db import Connection, Database, UniqueViolation

from .providers.base import SignedIn, SignInRefused
from .users import User, Users

log = logging.getLogger(__name__)

How = Literal["created", "email"]

EMAIL_CODE_SUBJECT = "email:"
"""``email_code`` sign-ins have the subject ``email:<address>``."""

UNVERIFIED = (
    "The sign-in provider has not confirmed that this email address is yours, so it cannot open an "
    "account here. Ask an administrator."
)
LINKED_ELSEWHERE = (
    "This email address belongs to an account that signs in with a different identity. Ask an administrator."
)


@dataclass(frozen=True, slots=True)
class IdentityLink:
    """One link of a provider's subject to a user: ``how`` is ``created`` (a new user) or ``email``
    (an existing user found by a verified email); ``replaced`` is the other provider's subject the
    user had before, if any."""

    id: int
    at: datetime
    user_id: uuid.UUID
    provider: str
    subject: str
    email: str
    how: How
    replaced: str | None


class IdentityLinks:
    """Queries on ``identity_links`` (append-only)."""

    def __init__(self, db: Connection) -> None:
        self.db = db

    async def record(
        self, user: User, provider: str, subject: str, how: How, replaced: str | None = None
    ) -> None:
        await self.db.execute(
            "INSERT INTO identity_links (user_id, provider, subject, email, how, replaced) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            user.id,
            provider,
            subject,
            user.email,
            how,
            replaced,
        )

    async def list(self, user_id: uuid.UUID | None = None, limit: int = 100) -> list[IdentityLink]:
        """The newest links first, of everyone or of one user."""
        where, args = ("WHERE user_id = $2", [user_id]) if user_id is not None else ("", [])
        rows = await self.db.fetch(
            "SELECT id, at, user_id, provider, subject, email, how, replaced FROM identity_links "
            f"{where} ORDER BY at DESC, id DESC LIMIT $1",
            limit,
            *args,
        )
        return [IdentityLink(**row) for row in rows]

    async def provider_of(self, user_id: uuid.UUID, subject: str) -> str | None:
        """The provider that last linked ``subject`` to the user, when the trail knows."""
        provider = await self.db.fetchval(
            "SELECT provider FROM identity_links WHERE user_id = $1 AND subject = $2 "
            "ORDER BY id DESC LIMIT 1",
            user_id,
            subject,
        )
        return None if provider is None else str(provider)


class Linker:
    """The user for a provider's sign-in, created, linked or brought up to date under the rules above."""

    def __init__(self, db: Database, provider: str) -> None:
        self.db = db
        self.provider = provider

    async def user_for(self, who: SignedIn) -> User:
        try:
            return await self._user_for(who)
        except UniqueViolation:
            # a concurrent first sign-in of the same person inserted the row first; now it is found
            return await self._user_for(who)

    async def _user_for(self, who: SignedIn) -> User:
        users = Users(self.db)
        user = await users.find_by_external_id(who.external_id)
        if user is not None:
            # the subject is who it is; its email moves only to an address the provider vouches for
            email = who.email if who.email_verified else user.email
            return await users.update_profile(user, email, who.name)
        if not who.email_verified:
            raise SignInRefused(UNVERIFIED, 403)
        async with self.db.transaction() as tx:
            users, links = Users(tx), IdentityLinks(tx)
            user = await users.find_by_email(who.email)
            if user is not None and user.external_id == who.external_id:
                return user  # a concurrent first sign-in of the same person linked it a moment ago
            replaced = None
            if user is None:
                user = await users.create(who.email, name=who.name, external_id=who.external_id)
                how: How = "created"
            else:
                linked = None
                if user.external_id is None or await self._foreign(links, user, user.external_id):
                    replaced = user.external_id
                    linked = await users.link(user, who.external_id, who.email, who.name)
                if linked is None:  # linked to another subject, maybe by a sign-in a moment ago
                    self._refused(user, who)
                    raise SignInRefused(LINKED_ELSEWHERE, 403)
                user, how = linked, "email"
            await links.record(user, self.provider, who.external_id, how, replaced)
        fields = {"user_id": str(user.id), "provider": self.provider, "subject": who.external_id}
        log.info(
            "auth: identity linked",
            extra={"fields": fields | {"email": user.email, "how": how, "replaced": replaced}},
        )
        return user

    async def _foreign(self, links: IdentityLinks, user: User, subject: str) -> bool:
        """``subject`` came from another provider than this one (unknown: it did not)."""
        provider = await links.provider_of(user.id, subject)
        if provider is None and subject.startswith(EMAIL_CODE_SUBJECT):
            provider = "email_code"
        if provider is None and self.provider == "email_code":
            provider = "another"  # not an email code's subject
        return provider is not None and provider != self.provider

    def _refused(self, user: User, who: SignedIn) -> None:
        fields = {"user_id": str(user.id), "provider": self.provider, "subject": who.external_id}
        log.warning(
            "auth: sign-in refused: the email belongs to a user linked to another subject",
            extra={"fields": fields},
        )
