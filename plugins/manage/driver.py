"""Driving rollouts: one leader among the replicas (``database.leadership``) looks at running
rollouts every ``rollout.tick`` seconds and keeps up to each one's concurrency of sandboxes updating.
Every step is written to the store, so a new leader (or this one after a restart) carries on: an
item left ``updating`` by a leader that went away is started again."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import suppress
from datetime import datetime

import aiohttp
from aiohttp import web

from plugins.sandbox_router import SandboxRouterStage, TooManyStarts
from proxy_core.db import Database, StoreError

from .audit import AuditLog
from .config import ManageConfig
from .rollouts import Item, Rollout, Rollouts
from .updater import Updater

log = logging.getLogger(__name__)


class RolloutDriver:
    def __init__(self, db: Database, router: SandboxRouterStage, config: ManageConfig) -> None:
        self.db = db
        self.router = router
        self.config = config
        self.store = Rollouts(db)
        self.audit = AuditLog(db)
        self.running: dict[tuple[uuid.UUID, uuid.UUID], asyncio.Task[None]] = {}
        self._http: aiohttp.ClientSession | None = None
        self.wake = asyncio.Event()
        """Set to look again at once (a rollout was started, paused, resumed or cancelled)."""

    def updater(self) -> Updater:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        return Updater(self.router, self.config, self._http)

    async def run(self) -> None:
        leadership = self.db.leadership("manage.rollouts")
        try:
            while True:
                try:
                    if await leadership.is_leader():
                        await self.tick()
                except StoreError as exc:
                    log.warning("manage: rollout tick failed: %s", exc.message)
                with suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.config.rollout.tick)
                self.wake.clear()
        finally:
            for task in self.running.values():
                task.cancel()
            await asyncio.gather(*self.running.values(), return_exceptions=True)
            await leadership.close()
            if self._http is not None:
                await self._http.close()

    async def tick(self) -> None:
        for rollout in await self.store.active():
            items = await self.store.items(rollout.id)
            for item in items:  # left by a leader that went away: start it again
                if item.state == "updating" and (rollout.id, item.user_id) not in self.running:
                    await self.store.progress(rollout.id, item.user_id, "requeued", 0, state="pending")
            if rollout.state != "running":
                continue
            # the sandboxes this rollout is waking take their slots first
            items = sorted(await self.store.items(rollout.id), key=lambda i: i.woken_at is None)
            busy = sum(1 for key in self.running if key[0] == rollout.id)
            for item in items:
                if busy >= rollout.concurrency:
                    break
                if await self._start(rollout, item):
                    busy += 1
            if busy:
                continue
            items = await self.store.items(rollout.id)
            unfinished = any(i.state in ("pending", "updating", "deferred") for i in items)
            if not unfinished and await self.store.set_state(rollout.id, "done", only_from=("running",)):
                counts: dict[str, int] = {}
                for i in items:
                    counts[i.state] = counts.get(i.state, 0) + 1
                await self.audit.record(
                    rollout.created_by, "rollout.done", rollout=str(rollout.id), counts=counts
                )

    async def _start(self, rollout: Rollout, item: Item) -> bool:
        """Move ``item`` on if it can; True when it now takes one of the rollout's slots (its update
        started, or its paused sandbox is being woken for it)."""
        if item.state not in ("pending", "deferred"):
            return False
        row = await self.router.lifecycle.store.of_user(item.user_id)
        if row is None or row.handle is None:
            await self.store.progress(
                rollout.id, item.user_id, "skipped", 100, state="skipped", message="The sandbox was removed."
            )
            return False
        if row.template_version == rollout.target_version:
            await self.store.progress(
                rollout.id, item.user_id, "done", 100, state="updated", message="Already on the target."
            )
            return False
        if row.state == "error":
            await self.store.progress(
                rollout.id, item.user_id, "skipped", 100, state="skipped",
                message="Its last start failed: recover it first.",
            )  # fmt: skip
            return False
        if row.state == "paused" and not rollout.wake_paused:
            if item.state != "deferred":
                await self.store.progress(
                    rollout.id, item.user_id, "waiting", 0, state="deferred",
                    message="Paused: updates on its next resume.",
                )  # fmt: skip
            return False  # its user's next visit resumes it; then it is updated like a running one
        if row.state == "paused":
            await self.store.woken(rollout.id, item.user_id)
            with suppress(TooManyStarts):  # every start slot here is taken: asked again next tick
                self.router.lifecycle.start(item.user_id)
            return True
        if row.state not in ("running", "broken"):  # starting: looked at again next tick
            return item.woken_at is not None
        if not await self.store.claim(rollout.id, item.user_id, ("pending", "deferred")):
            return False
        key = (rollout.id, item.user_id)
        task = asyncio.get_running_loop().create_task(self._update(rollout, item.user_id, item.woken_at))
        self.running[key] = task
        task.add_done_callback(lambda _: self.running.pop(key, None))
        return True

    async def _update(self, rollout: Rollout, user_id: uuid.UUID, woken_at: datetime | None) -> None:
        """Update the sandbox; one this rollout woke is paused again after (unless its user came back
        since it was woken)."""
        started = time.monotonic()
        log.info(
            "manage: updating the sandbox of %s to %s (rollout %s)",
            user_id,
            rollout.target_version,
            rollout.id,
        )

        async def report(step: str, percent: int) -> None:
            await self.store.progress(rollout.id, user_id, step, percent)

        try:
            row = await self.router.lifecycle.store.of_user(user_id)
            assert row is not None
            result = await self.updater().update(row, rollout.id, rollout.target_version, report)
            message = result.message
            if woken_at is not None:
                await report("pause", 98)
                again = await self.router.lifecycle.pause(
                    user_id, "paused again after its update", unless_active_since=woken_at.timestamp()
                )
                message += " Paused again." if again else " Left running: its user came back."
            await self.store.progress(
                rollout.id,
                user_id,
                "done",
                100,
                state=result.state,  # type: ignore[arg-type]
                message=message,
                previous_version=result.previous_version,
            )
            await self.audit.record(
                rollout.created_by,
                "rollout.sandbox",
                target=user_id,
                result="ok" if result.state == "updated" else f"{result.state}: {result.message}",
                rollout=str(rollout.id),
                seconds=round(time.monotonic() - started, 1),
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("manage: updating the sandbox of %s failed", user_id)
            with suppress(StoreError):
                await self.store.progress(
                    rollout.id, user_id, "done", 100, state="failed", message=str(exc)[:300]
                )
        finally:
            self.wake.set()


DRIVER = web.AppKey("plugins.manage.rollout_driver", RolloutDriver)
