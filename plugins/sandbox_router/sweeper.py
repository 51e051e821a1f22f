"""The leader's periodic work: pause idle sandboxes, reconcile the store with the provider's own list
(paused or removed behind our back, orphans nobody owns, starts that never finished), and count the
sandboxes per state for ``/metrics`` (only the leader reports them: workers' numbers are added up)."""

from __future__ import annotations

import asyncio
import logging
import time

from proxy_core.db import ActivityWriter, StoreError
from proxy_core.metrics import Gauge

from .lifecycle import Lifecycle
from .providers.base import Handle, ProviderError
from .store import now

log = logging.getLogger(__name__)


class Sweeper:
    def __init__(self, lifecycle: Lifecycle, activity: ActivityWriter, states: Gauge) -> None:
        self.lifecycle = lifecycle
        self.activity = activity  # this process's pending activity is written before each sweep
        self.states = states
        self.config = lifecycle.config
        self.leader = lifecycle.db.leadership("sandbox_router.sweeper")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_interval)
            try:
                if await self.leader.is_leader():
                    await self.sweep()
                else:
                    self.states.values.clear()  # a former leader's counts would be added to the new one's
            except (StoreError, ProviderError) as exc:
                log.warning("sandbox_router: sweep failed: %s", exc)

    async def close(self) -> None:
        await self.leader.close()

    async def sweep(self) -> None:
        await self.activity.flush()
        await self.pause_idle()
        await self.reconcile()
        await self.count_states()

    async def count_states(self) -> None:
        for state, count in (await self.lifecycle.store.count_by_state()).items():
            self.states.set((state,), count)

    async def pause_idle(self) -> int:
        """Pause running sandboxes with no activity for ``idle_timeout``; the number paused."""
        since = time.time() - self.config.idle_timeout
        paused = 0
        for row in await self.lifecycle.store.in_states("running"):
            last = row.last_activity_at or row.state_changed_at or row.updated_at
            if last is not None and last.timestamp() > since:
                continue
            idle = self.config.idle_timeout
            reason = f"idle for {idle / 60:g} minutes" if idle >= 60 else f"idle for {idle:g} s"
            if await self.lifecycle.pause(row.user_id, reason, unless_active_since=since):
                paused += 1
                log.info("sandbox_router: paused the sandbox of %s (%s)", row.user_id, reason)
        return paused

    async def reconcile(self) -> None:
        store = self.lifecycle.store
        listed = {item.sandbox_id: item for item in await self.lifecycle.provider.list()}
        rows = await store.all()
        owned = {row.sandbox_id for row in rows if row.sandbox_id is not None}
        for row in rows:
            if row.sandbox_id is None:
                continue
            seen = listed.get(row.sandbox_id)
            if seen is None and row.state in ("running", "paused", "broken"):
                await store.set_handle(row.user_id, None)
                await store.set_state(
                    row.user_id, "paused", "removed at the provider; a new one is made on the next visit"
                )
                self.lifecycle.on_stopped(row.user_id)
            elif seen is not None and seen.state == "paused" and row.state == "running":
                await store.set_state(row.user_id, "paused", "paused at the provider")
                self.lifecycle.on_stopped(row.user_id)
        stuck_before = now().timestamp() - self.config.health_timeout - 60
        for row in rows:
            watch = self.lifecycle.watches.get(row.user_id)
            stuck = row.updated_at is not None and row.updated_at.timestamp() < stuck_before
            if row.state in ("provisioning", "resuming") and stuck and (watch is None or watch.done.is_set()):
                await store.set_state(row.user_id, "error", "The start was interrupted; try again.")
        starting = {str(row.user_id) for row in rows if row.state in ("provisioning", "resuming")}
        for sandbox_id, item in listed.items():
            owner = item.metadata.get("user_id")
            if sandbox_id not in owned and owner not in starting:  # a start may not have saved it yet
                log.warning("sandbox_router: killing orphan sandbox %s (owner %s)", sandbox_id, owner)
                await self.lifecycle.provider.kill(Handle(sandbox_id))
