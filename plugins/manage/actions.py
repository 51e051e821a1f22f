"""Every admin action, once: done through the owning plugin's API and recorded in the audit log
with its result. Pages and the JSON API both call these."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from proxy_core.db import CheckViolation, NotFound, StoreError, UniqueViolation

from .audit import AuditLog
from .guard import Admin
from .people import People
from .tokens import AdminTokens

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an action did: ``message`` for people, ``data`` for scripts, ``status`` the HTTP code."""

    ok: bool
    message: str
    status: int = 200
    data: dict[str, Any] = field(default_factory=dict)
    secret: str | None = None
    """Shown once (a new key or token); never logged or audited."""


class Actions:
    def __init__(self, audit: AuditLog, people: People, tokens: AdminTokens) -> None:
        self.audit = audit
        self.people = people
        self.tokens = tokens

    async def _run(
        self,
        admin: Admin,
        action: str,
        target: uuid.UUID | None,
        work: Callable[[], Awaitable[Outcome]],
        **detail: Any,
    ) -> Outcome:
        try:
            outcome = await work()
        except NotFound as exc:
            outcome = Outcome(False, str(exc.message), 404)
        except UniqueViolation:
            outcome = Outcome(False, "That already exists.", 409)
        except CheckViolation as exc:
            outcome = Outcome(False, exc.message, 400)
        except ValueError as exc:
            outcome = Outcome(False, str(exc), 400)
        except StoreError as exc:
            log.warning("manage: %s failed: %s", action, exc.message)
            outcome = Outcome(False, "The store cannot be reached; nothing was changed. Try again.", 503)
        result = "ok" if outcome.ok else f"failed: {outcome.message}"
        await self.audit.record(
            admin.id,
            action,
            target=target,
            result=result,
            via="token" if admin.token else "session",
            **detail,
        )
        return outcome

    async def set_role(self, admin: Admin, user_id: uuid.UUID, role: str) -> Outcome:
        async def work() -> Outcome:
            user = await self.people.set_role(user_id, role)
            return Outcome(True, f"{user.email} is now {user.role}.", data={"role": user.role})

        return await self._run(admin, "user.set_role", user_id, work, role=role)

    async def set_disabled(self, admin: Admin, user_id: uuid.UUID, disabled: bool) -> Outcome:
        async def work() -> Outcome:
            if disabled and user_id == admin.id:
                raise ValueError("You cannot disable yourself.")
            user = await self.people.set_disabled(user_id, disabled)
            state = "disabled: sessions and keys stopped" if disabled else "enabled"
            return Outcome(True, f"{user.email} is {state}.", data={"disabled": disabled})

        return await self._run(admin, "user.disable" if disabled else "user.enable", user_id, work)

    async def sign_out(self, admin: Admin, user_id: uuid.UUID) -> Outcome:
        async def work() -> Outcome:
            ended = await self.people.sign_out(user_id)
            return Outcome(True, f"{ended} session(s) ended.", data={"sessions_ended": ended})

        return await self._run(admin, "user.sign_out", user_id, work)

    async def rotate_key(self, admin: Admin, user_id: uuid.UUID) -> Outcome:
        async def work() -> Outcome:
            issued = await self.people.rotate_key(user_id)
            prefix = issued.record.prefix
            return Outcome(
                True,
                f"New key {prefix}… for {issued.user.email}; the old one works for its grace period.",
                data={"prefix": prefix, "key": issued.key},
                secret=issued.key,
            )

        return await self._run(admin, "key.rotate", user_id, work)

    async def revoke_keys(self, admin: Admin, user_id: uuid.UUID) -> Outcome:
        async def work() -> Outcome:
            count = await self.people.revoke_keys(user_id)
            return Outcome(True, f"{count} key(s) revoked.", data={"revoked": count})

        return await self._run(admin, "key.revoke", user_id, work)

    async def invite(self, admin: Admin, email: str, provider: str) -> Outcome:
        async def work() -> Outcome:
            if provider != "email_code":
                raise ValueError(
                    f"Invitations are for email-code sign-in; this cloud signs in with {provider}."
                )
            user = await self.people.invite(email)
            return Outcome(
                True, f"{user.email} may now sign in with an emailed code.", 201, data={"id": str(user.id)}
            )

        return await self._run(admin, "user.invite", None, work, email=email.strip())

    async def create_token(self, admin: Admin, name: str) -> Outcome:
        async def work() -> Outcome:
            created = await self.tokens.create(admin.id, name)
            record = created.record
            return Outcome(
                True,
                f"Token {record.prefix}… created. Copy it now: it is not shown again.",
                201,
                data={"id": str(record.id), "prefix": record.prefix, "token": created.token},
                secret=created.token,
            )

        return await self._run(admin, "token.create", None, work, name=name.strip())

    async def revoke_token(self, admin: Admin, token_id: uuid.UUID) -> Outcome:
        async def work() -> Outcome:
            if not await self.tokens.revoke(token_id):
                raise NotFound(f"no live token with id {token_id}")
            return Outcome(True, "Token revoked.")

        return await self._run(admin, "token.revoke", None, work, token_id=str(token_id))
