"""The leader's periodic work: pause idle sandboxes, reconcile the store with the provider's own list
(paused or removed behind our back, orphans nobody owns, starts that never finished), and count the
sandboxes per state for ``/metrics`` (only the leader reports them: workers' numbers are added up)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from proxy_core.db import ActivityWriter, StoreError
from proxy_core.metrics import Gauge

from .lifecycle import Lifecycle
from .providers.base import Handle, ProviderError
from .store import Sandbox, now

log = logging.getLogger(__name__)

LOCK_WAIT = 2.0
"""Seconds the reconciler waits for a user's lock before leaving that user for the next sweep."""


class Sweeper:
    def __init__(
        self, lifecycle: Lifecycle, activity: ActivityWriter, states: Gauge, lock_wait: float = LOCK_WAIT
    ) -> None:
        self.lifecycle = lifecycle
        self.lock_wait = lock_wait
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
            last = row.active_at
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
        before = await store.all()  # read before the list: a change after it shows under the lock
        listed = {item.sandbox_id: item for item in await self.lifecycle.provider.list()}
        for row in before:
            if row.sandbox_id is None:
                continue
            seen = listed.get(row.sandbox_id)
            if seen is None and row.state in ("running", "paused", "broken"):
                await self._drifted(
                    row, "removed at the provider; a new one is made on the next visit", forget=True
                )
            elif seen is not None and seen.state == "paused" and row.state == "running":
                await self._drifted(row, "paused at the provider", forget=False)
        rows = await store.all()  # read after the list: a sandbox in it made by a start is in its row
        owned = {row.sandbox_id for row in rows if row.sandbox_id is not None}
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

    async def _drifted(self, seen: Sandbox, reason: str, *, forget: bool) -> None:
        """Record that the provider paused (or, ``forget``, removed) the sandbox of ``seen`` behind the
        store's back, under the user's lock like every other state change. A user whose lock is not
        free within ``lock_wait`` (a start or pause in flight) is left for the next sweep, and so is
        one whose row changed since it was read: the start that changed it knows better."""
        key = f"sandbox_router:{seen.user_id}"
        async with contextlib.AsyncExitStack() as held:
            try:
                async with asyncio.timeout(self.lock_wait):
                    await held.enter_async_context(self.lifecycle.db.user_lock(key))
            except TimeoutError:
                log.info("sandbox_router: reconcile skips %s this time (a start holds it)", seen.user_id)
                return
            row = await self.lifecycle.store.of_user(seen.user_id)
            if row is None or (row.state, row.sandbox_id, row.state_changed_at) != (
                seen.state,
                seen.sandbox_id,
                seen.state_changed_at,
            ):
                return
            if forget:
                await self.lifecycle.store.set_handle(row.user_id, None)
            await self.lifecycle.store.set_state(row.user_id, "paused", reason)
            self.lifecycle.on_stopped(row.user_id)
