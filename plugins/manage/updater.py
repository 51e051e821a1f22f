"""Updating one sandbox to a template version, through the sandbox router's provider: back up the
project, copy the new template's files in, install, restart, check health; on any failure restore the
backup, restart and check again (rolled back), and say which step failed and why.

The backup is made once per rollout (``.rollback/.rollout`` holds its id), so an update interrupted by
a restart of the cloud is simply run again from the start against the same pristine backup."""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from plugins.sandbox_router import Handle, ProviderError, Sandbox, SandboxProvider, SandboxRouterStage

from .config import ManageConfig

log = logging.getLogger(__name__)

HOME = 'cd "${SANDBOX_HOME:-/home/user}"'
SKIPPED = frozenset({"node_modules", ".env", ".git"})
Report = Callable[[str, int], Awaitable[None]]


class StepFailed(Exception):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Result:
    state: str  # updated, rolled_back or failed
    message: str
    previous_version: str | None


class Updater:
    def __init__(self, router: SandboxRouterStage, config: ManageConfig, http: aiohttp.ClientSession) -> None:
        self.router = router
        self.config = config
        self.http = http

    @property
    def provider(self) -> SandboxProvider:
        return self.router.provider

    def source(self) -> Path:
        return Path(self.router.config.template_dir) / self.config.rollout.source

    async def update(self, row: Sandbox, rollout_id: uuid.UUID, target: str, report: Report) -> Result:
        handle = row.handle
        if handle is None:
            return Result("failed", "The sandbox has been removed.", row.template_version)
        previous = row.template_version
        try:
            await report("backup", 10)
            await self._run(handle, "backup", _backup(rollout_id), 300)
        except StepFailed as exc:
            return Result("failed", f"Nothing changed: the backup failed ({exc.reason}).", previous)
        try:
            await report("apply", 30)
            await self._apply(handle, target)
            await report("install", 50)
            await self._run(
                handle, "install", self.config.rollout.install, self.config.rollout.install_timeout
            )
            await report("restart", 75)
            await self._run(handle, "restart", self.config.commands.restart_app, self.config.command_timeout)
            await report("check", 90)
            await self._healthy(handle, "check")
        except StepFailed as failure:
            return await self._roll_back(handle, row, failure, previous, report)
        await self.router.lifecycle.store.set_columns(row.user_id, template_version=target)
        return Result("updated", f"Updated to {target}.", previous)

    async def roll_back(self, row: Sandbox, report: Report) -> Result:
        """Restore the project from its last backup (Recovery's "roll back")."""
        if row.handle is None:
            return Result("failed", "The sandbox has been removed.", row.template_version)
        failure = StepFailed("requested", "an administrator asked for it")
        return await self._roll_back(row.handle, row, failure, None, report)

    async def _roll_back(
        self, handle: Handle, row: Sandbox, failure: StepFailed, previous: str | None, report: Report
    ) -> Result:
        await report("rollback", 95)
        try:
            await self._run(handle, "restore", RESTORE, 300)
            await self._run(handle, "restart", self.config.commands.restart_app, self.config.command_timeout)
            await self._healthy(handle, "check after rollback")
            restored = await self._version(handle)
        except StepFailed as second:
            log.warning("manage: rollback of %s failed too: %s", row.user_id, second)
            return Result(
                "failed",
                f"Failed at {failure.step} ({failure.reason}); "
                f"the rollback failed at {second.step} ({second.reason}).",
                previous,
            )
        await self.router.lifecycle.store.set_columns(row.user_id, template_version=restored)
        back_to = restored or previous or "the previous version"
        return Result(
            "rolled_back", f"Failed at {failure.step} ({failure.reason}); rolled back to {back_to}.", previous
        )

    async def _run(self, handle: Handle, step: str, command: str, limit: float) -> str:
        try:
            done = await self.provider.run(handle, command, limit=limit)
        except ProviderError as exc:
            raise StepFailed(step, str(exc)) from None
        if done.exit_code != 0:
            output = (done.stderr or done.stdout).strip().splitlines()
            raise StepFailed(step, f"exit {done.exit_code}" + (f": {output[-1][:200]}" if output else ""))
        return str(done.stdout)

    async def _apply(self, handle: Handle, target: str) -> None:
        source = self.source()
        if not source.is_dir():
            raise StepFailed("apply", f"the template has no {self.config.rollout.source}/ folder")
        for path in sorted(source.rglob("*")):
            relative = path.relative_to(source)
            if path.is_dir() or SKIPPED.intersection(relative.parts):
                continue
            try:
                await self.provider.write_file(handle, f"shmastra/{relative.as_posix()}", path.read_bytes())
            except (ProviderError, OSError) as exc:
                raise StepFailed("apply", f"{relative}: {exc}") from None
        try:
            await self.provider.write_file(handle, ".template-version", f"{target}\n".encode())
        except ProviderError as exc:
            raise StepFailed("apply", str(exc)) from None

    async def _version(self, handle: Handle) -> str | None:
        try:
            return (await self.provider.read_file(handle, ".template-version")).decode().strip() or None
        except ProviderError:
            return None

    async def _healthy(self, handle: Handle, step: str) -> None:
        endpoint = self.provider.endpoint(handle)
        deadline = time.monotonic() + self.config.rollout.health_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                async with self.http.get(
                    endpoint.base_url / "health", headers=dict(endpoint.headers)
                ) as answer:
                    if answer.status < 300:
                        return
                    last = f"health answered {answer.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = f"health unreachable ({type(exc).__name__})"
            await asyncio.sleep(0.2)
        raise StepFailed(step, last)


def _backup(rollout_id: uuid.UUID) -> str:
    marker = shlex.quote(str(rollout_id))
    return (
        f'{HOME} && if [ "$(cat .rollback/.rollout 2>/dev/null)" != {marker} ]; then '
        "rm -rf .rollback && mkdir .rollback && cp -a shmastra .rollback/shmastra && "
        "{ cp .template-version .rollback/ 2>/dev/null || true; } && "
        f"echo {marker} > .rollback/.rollout; fi"
    )


RESTORE = (
    f"{HOME} && test -d .rollback/shmastra && rm -rf shmastra && cp -a .rollback/shmastra shmastra && "
    "{ cp .rollback/.template-version . 2>/dev/null || true; }"
)
