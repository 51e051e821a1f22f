"""Every admin action, once: done through the owning plugin's API and recorded in the audit log
with its result. Pages and the JSON API both call these."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from plugins.auth import InvitationFailed
from plugins.sandbox_router import ProviderError
from proxy_core.db import CheckViolation, NotFound, StoreError, UniqueViolation

from .audit import AuditLog
from .driver import RolloutDriver
from .guard import Admin
from .people import People
from .rollouts import Rollouts
from .sandboxes import NoSandbox, SandboxDesk
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
    def __init__(
        self,
        audit: AuditLog,
        people: People,
        tokens: AdminTokens,
        desk: SandboxDesk | None = None,
        driver: RolloutDriver | None = None,
    ) -> None:
        self.audit = audit
        self.people = people
        self.tokens = tokens
        self.desk = desk
        self.driver = driver

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
        except InvitationFailed as exc:
            outcome = Outcome(False, exc.message, exc.status)
        except (NoSandbox, ConflictError) as exc:
            outcome = Outcome(False, str(exc), 409)
        except ProviderError as exc:
            outcome = Outcome(False, f"The sandbox provider said: {exc}", 502)
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

    async def invite(self, admin: Admin, request: web.Request, email: str) -> Outcome:
        """Mail ``email`` an invitation (a link to this cloud's sign-in page) and add them as a member."""

        async def work() -> Outcome:
            user = await self.people.invite(request, email, admin.user)
            return Outcome(
                True,
                f"{user.email} was sent an invitation and may now sign in with an emailed code.",
                201,
                data={"id": str(user.id)},
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

    # sandboxes -------------------------------------------------------------------------------------

    def _desk(self) -> SandboxDesk:
        if self.desk is None:
            raise ValueError("This cloud has no sandbox_router stage.")
        return self.desk

    async def sandbox(self, admin: Admin, user_id: uuid.UUID, action: str, **detail: Any) -> Outcome:
        """``action``: resume, pause, restart-app, rerun-healer, reprovision (keeping the files where
        the provider can), delete or logs."""
        if action == "reprovision":
            return await self.reprovision(admin, user_id, keep_files=True)

        async def work() -> Outcome:
            desk = self._desk()
            if action == "resume":
                return Outcome(True, await desk.resume(user_id))
            if action == "pause":
                return Outcome(True, await desk.pause(user_id))
            if action == "delete":
                return Outcome(True, await desk.delete(user_id))
            if action == "logs":
                return Outcome(True, "Recent logs.", data={"logs": await desk.logs(user_id)})
            if action in ("restart-app", "rerun-healer"):
                done = await (
                    desk.restart_app(user_id) if action == "restart-app" else desk.rerun_healer(user_id)
                )
                return _command_outcome(
                    done, "Restarted." if action == "restart-app" else "Healer started again."
                )
            raise NotFound(f"no sandbox action {action!r}")

        return await self._run(admin, f"sandbox.{action}", user_id, work, **detail)

    async def reprovision(self, admin: Admin, user_id: uuid.UUID, *, keep_files: bool) -> Outcome:
        """A new sandbox from the current template; ``keep_files``: with the user's files, where the
        provider can (the audit entry and the answer say whether they were kept)."""
        kept = keep_files and self.desk is not None and self.desk.keeps_files

        async def work() -> Outcome:
            message = await self._desk().reprovision(user_id, keep_files)
            return Outcome(True, message, data={"kept_files": kept})

        return await self._run(admin, "sandbox.reprovision", user_id, work, keep_files=kept)

    async def run_command(self, admin: Admin, user_id: uuid.UUID, command: str) -> Outcome:
        async def work() -> Outcome:
            if not command.strip():
                raise ValueError("Give a command to run.")
            done = await self._desk().run(user_id, command)
            return _command_outcome(done, f"Exited with {done.exit_code}.", fail_on_exit=False)

        return await self._run(admin, "sandbox.run", user_id, work, command=command[:200])

    async def restart_failed(self, admin: Admin, targets: list[tuple[uuid.UUID, str]]) -> Outcome:
        """Restart every sandbox in ``targets`` (user id, state): a failed start is started again,
        a broken app restarted. One audit entry per sandbox, and one for the whole."""
        results = {}
        for user_id, state in targets:
            outcome = await self.sandbox(admin, user_id, "resume" if state == "error" else "restart-app")
            results[str(user_id)] = "ok" if outcome.ok else outcome.message

        async def work() -> Outcome:
            failed = sum(1 for r in results.values() if r != "ok")
            message = f"Restarted {len(results) - failed} of {len(results)} sandbox(es)."
            return Outcome(failed == 0, message, 200 if failed == 0 else 502, data={"results": results})

        return await self._run(admin, "sandbox.restart_failed", None, work, count=len(targets))

    # rollouts ---------------------------------------------------------------------------------------

    def _driver(self) -> RolloutDriver:
        if self.driver is None:
            raise ValueError("This cloud has no sandbox_router stage: nothing to roll out.")
        return self.driver

    async def set_target(self, admin: Admin, version: str) -> Outcome:
        async def work() -> Outcome:
            version_ = version.strip()
            if not version_ or len(version_) > 100 or any(c.isspace() for c in version_):
                raise ValueError("A version is one word, e.g. 0.3.1.")
            await Rollouts(self._driver().db).set_target(version_)
            return Outcome(
                True, f"Target template version is now {version_}.", data={"target_version": version_}
            )

        return await self._run(admin, "rollout.set_target", None, work, version=version.strip()[:100])

    async def start_rollout(
        self,
        admin: Admin,
        target: str | None,
        available: str | None,
        outdated: list[uuid.UUID],
        concurrency: int,
        wake_paused: bool,
    ) -> Outcome:
        async def work() -> Outcome:
            driver = self._driver()
            if not target:
                raise ValueError("Set a target template version first.")
            if target != available:
                raise ConflictError(
                    f"This cloud's template is version {available or 'unknown'}: only it can be rolled out "
                    f"(the target is {target})."
                )
            if not outdated:
                raise ConflictError("No sandbox is outdated.")
            if not 1 <= concurrency <= 100:
                raise ValueError("Concurrency is between 1 and 100.")
            rollout = await Rollouts(driver.db).create(target, concurrency, wake_paused, admin.id, outdated)
            driver.wake.set()
            return Outcome(
                True,
                f"Rolling {target} out to {len(outdated)} sandbox(es), {concurrency} at a time.",
                201,
                data={"id": str(rollout.id), "sandboxes": len(outdated)},
            )

        return await self._run(
            admin, "rollout.start", None, work, version=target, count=len(outdated), concurrency=concurrency
        )

    async def control_rollout(self, admin: Admin, rollout_id: uuid.UUID, command: str) -> Outcome:
        """``pause``, ``resume`` or ``cancel`` (in-flight updates finish; waiting ones are skipped)."""
        moves = {
            "pause": ("paused", ("running",)),
            "resume": ("running", ("paused",)),
            "cancel": ("cancelled", ("running", "paused")),
        }

        async def work() -> Outcome:
            driver = self._driver()
            if command not in moves:
                raise NotFound(f"no rollout command {command!r}")
            state, only_from = moves[command]
            store = Rollouts(driver.db)
            if await store.get(rollout_id) is None:
                raise NotFound(f"no rollout with id {rollout_id}")
            if not await store.set_state(rollout_id, state, only_from=only_from):  # type: ignore[arg-type]
                raise ConflictError(f"The rollout cannot {command} now.")
            if command == "cancel":
                await store.set_items(rollout_id, "skipped", where_state=("pending", "deferred"))
            driver.wake.set()
            return Outcome(True, f"Rollout {state}.", data={"state": state})

        return await self._run(admin, f"rollout.{command}", None, work, rollout=str(rollout_id))

    async def roll_back(self, admin: Admin, user_id: uuid.UUID) -> Outcome:
        async def work() -> Outcome:
            desk, driver = self._desk(), self._driver()
            row = await desk.row(user_id)

            async def report(step: str, percent: int) -> None:
                return None

            result = await driver.updater().roll_back(row, report)
            if result.state != "rolled_back":
                return Outcome(False, result.message, 502)
            return Outcome(True, result.message)

        return await self._run(admin, "sandbox.rollback", user_id, work)


class ConflictError(Exception):
    """The action does not fit the current state (answered 409)."""


def _command_outcome(done: Any, message: str, *, fail_on_exit: bool = True) -> Outcome:
    output = (done.stdout + done.stderr)[-4000:]
    if fail_on_exit and done.exit_code != 0:
        return Outcome(False, f"The command exited with {done.exit_code}: {output[-300:]}", 502)
    return Outcome(True, message, data={"exit_code": done.exit_code, "output": output})
