"""Every user's sandbox as Manage shows it, and the actions on one, all through the sandbox router's
exported API (its lifecycle, store queries and provider): the store's row joined with the
provider's own list, so a sandbox the provider lost (or one the store forgot) shows up too."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from plugins.sandbox_router import (
    CommandResult,
    NoSandboxToReprovision,
    ProviderError,
    Sandbox,
    SandboxRouterStage,
    reprovision_sandbox,
    sandbox_router,
)

from .config import ManageConfig

NEEDS_ATTENTION_STATES = frozenset({"error", "broken"})


@dataclass(frozen=True, slots=True)
class SandboxView:
    user_id: uuid.UUID
    email: str
    state: str
    provider_state: str | None
    """What the provider's own list says (``None``: the provider does not know this sandbox)."""
    sandbox_id: str | None
    template_version: str | None
    outdated: bool
    healer_status: str | None
    healer_message: str | None
    error_message: str | None
    progress: str | None
    last_activity_at: datetime | None
    state_changed_at: datetime | None

    @property
    def needs_attention(self) -> bool:
        return self.state in NEEDS_ATTENTION_STATES or self.healer_status == "broken"

    def as_json(self) -> dict[str, Any]:
        return {
            "user_id": str(self.user_id),
            "email": self.email,
            "state": self.state,
            "provider_state": self.provider_state,
            "sandbox_id": self.sandbox_id,
            "template_version": self.template_version,
            "outdated": self.outdated,
            "healer_status": self.healer_status,
            "healer_message": self.healer_message,
            "error_message": self.error_message,
            "progress": self.progress,
            "last_activity_at": None if self.last_activity_at is None else self.last_activity_at.isoformat(),
            "state_changed_at": None if self.state_changed_at is None else self.state_changed_at.isoformat(),
            "needs_attention": self.needs_attention,
        }


class NoSandbox(Exception):
    """The user has no sandbox (or it has been removed)."""


def router_of(app: web.Application) -> SandboxRouterStage | None:
    try:
        return sandbox_router(app)
    except LookupError:
        return None


class SandboxDesk:
    """The sandboxes of ``router`` for Manage; ``target`` is the template version rollouts aim at."""

    def __init__(self, router: SandboxRouterStage, config: ManageConfig) -> None:
        self.router = router
        self.config = config

    @property
    def store(self) -> Any:
        return self.router.lifecycle.store

    def default_target(self) -> str | None:
        """The version new sandboxes get: the router's template ``VERSION``."""
        try:
            return (self.router.config.template_dir / "VERSION").read_text().strip() or None
        except OSError:
            return None

    async def listed(self) -> dict[str, str]:
        """The provider's own list: sandbox id → its state there (empty when it cannot answer)."""
        try:
            return {item.sandbox_id: str(item.state) for item in await self.router.provider.list()}
        except ProviderError:
            return {}

    async def views(
        self, emails: dict[uuid.UUID, str], target: str | None, listed: dict[str, str]
    ) -> list[SandboxView]:
        rows: list[Sandbox] = await self.store.all()
        views = []
        for row in rows:
            progress = None
            if row.progress_step:
                progress = f"{row.progress_step} {row.progress_percent or 0}%"
            views.append(
                SandboxView(
                    user_id=row.user_id,
                    email=emails.get(row.user_id, str(row.user_id)),
                    state=row.state,
                    provider_state=listed.get(row.sandbox_id) if row.sandbox_id else None,
                    sandbox_id=row.sandbox_id,
                    template_version=row.template_version,
                    outdated=bool(target and row.template_version and row.template_version != target),
                    healer_status=row.healer_status,
                    healer_message=row.healer_message,
                    error_message=row.error_message,
                    progress=progress,
                    last_activity_at=row.last_activity_at,
                    state_changed_at=row.state_changed_at,
                )
            )
        return views

    async def row(self, user_id: uuid.UUID) -> Sandbox:
        row: Sandbox | None = await self.store.of_user(user_id)
        if row is None:
            raise NoSandbox("This user has no sandbox yet.")
        return row

    async def resume(self, user_id: uuid.UUID) -> str:
        row = await self.row(user_id)
        if row.state == "running":
            return "It is already running."
        self.router.lifecycle.start(user_id, check=True)
        return "Starting."

    async def pause(self, user_id: uuid.UUID) -> str:
        await self.row(user_id)
        paused = await self.router.lifecycle.pause(user_id, "paused by an administrator")
        return "Paused." if paused else "It was not running."

    async def run(self, user_id: uuid.UUID, command: str, limit: float | None = None) -> CommandResult:
        row = await self.row(user_id)
        if row.handle is None:
            raise NoSandbox("This sandbox has been removed.")
        if row.state not in ("running", "broken", "error"):
            raise NoSandbox(f"The sandbox is {row.state}; resume it first.")
        result: CommandResult = await self.router.provider.run(
            row.handle, command, limit=limit or self.config.command_timeout
        )
        return result

    async def restart_app(self, user_id: uuid.UUID) -> CommandResult:
        return await self.run(user_id, self.config.commands.restart_app)

    async def rerun_healer(self, user_id: uuid.UUID) -> CommandResult:
        return await self.run(user_id, self.config.commands.restart_healer)

    async def logs(self, user_id: uuid.UUID) -> str:
        result = await self.run(user_id, self.config.commands.logs)
        return (result.stdout + result.stderr)[-self.config.logs_max_chars :]

    @property
    def keeps_files(self) -> bool:
        """Whether a reprovision here can keep the user's files (else the new sandbox starts fresh)."""
        return self.router.provider.keeps_files

    async def reprovision(self, user_id: uuid.UUID, keep_files: bool = True) -> str:
        """A new sandbox from the current template (waited for), with the user's files where the
        provider can; its app is restarted so it runs them."""
        try:
            done = await reprovision_sandbox(
                self.router.lifecycle, user_id, keep_files=keep_files, limit=self.config.command_timeout
            )
        except NoSandboxToReprovision as exc:
            raise NoSandbox(str(exc)) from None
        if not done.kept_files:
            return done.message
        restarted = await self.restart_app(user_id)
        if restarted.exit_code != 0:
            return f"{done.message} Restarting its app failed (exit {restarted.exit_code}): restart it again."
        return done.message

    async def delete(self, user_id: uuid.UUID) -> str:
        await self.row(user_id)
        await self.router.lifecycle.kill(user_id)
        return "Removed; the next visit provisions a new one."

    async def hours(self, user_id: uuid.UUID, since: datetime, until: datetime) -> float:
        """Hours the sandbox was running in ``[since, until)``, from its recorded state changes."""
        seconds: float = await self.store.running_seconds(user_id, since, until)
        return seconds / 3600
