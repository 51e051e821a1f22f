"""A user's sandbox from nothing to running and back: provision, resume, health, pause, kill.

Single flight: in one process, concurrent callers for one user share one start task; across workers
and replicas the task runs under the store's per-user lock and re-reads the row once it holds it,
so a burst of requests from anywhere makes exactly one provider create/resume call. Each step is in
the row (state, reason, progress), so every replica's progress page can show it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiohttp

from plugins.vkey import KeyService
from proxy_core.db import Database, StoreError

from .config import SandboxRouterConfig
from .environment import sandbox_env
from .gate import ProviderGate
from .providers.base import (
    Endpoint,
    Handle,
    Progress,
    ProviderAuthError,
    ProviderError,
    SandboxGone,
    SandboxProvider,
    SandboxSpec,
)
from .store import Sandbox, Sandboxes

log = logging.getLogger(__name__)


class TooManyStarts(Exception):
    """This replica already runs its maximum of concurrent starts; ``position``: the caller's place
    in the line of users waiting for one to finish (1: next)."""

    def __init__(self, position: int) -> None:
        super().__init__(position)
        self.position = position


IN_FLIGHT_GRACE = 0.5
"""Seconds a request forwarded through a worker's cached address at its last moment gets to be
answered before a pause freezes the sandbox (see :attr:`Lifecycle.route_grace`)."""

TOUCH_EVERY = 1.0
"""Seconds between two records of one user's activity by one worker: a worker caching a sandbox's
address, or forwarding through it, records activity unless it did less than this long ago."""

QUEUE_FORGET_SECONDS = 10.0
"""A waiting user who has not asked again for this long (the page was closed) leaves the line."""


@dataclass
class StartWatch:
    """What this process knows of a start in flight (the progress page reads it)."""

    step: str = "queued"
    percent: int = 0
    message: str = "Getting ready"
    position: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    error: str | None = None


def health_waits(first: float, longest: float, factor: float = 1.25) -> Iterator[float]:
    """Seconds to wait between health checks: ``first``, then each 1.25 times longer, at most
    ``longest`` (what the polling adds to a start is at most one wait: ``longest`` for a slow one)."""
    wait = min(first, longest)
    while True:
        yield wait
        wait = min(wait * factor, longest)


def health_progress(elapsed: float, estimate: float) -> Progress:
    """The health step while the app starts: 80 % to 95 % over the last measured start's length, and
    how long that one took (the page never claims more than it knows: 95 % at most)."""
    share = min(elapsed / estimate, 1.0) if estimate > 0 else 1.0
    return Progress("health", 80 + int(15 * share), f"Starting Mastra (the last start took {estimate:.0f} s)")


def _seconds(at: datetime | None) -> float:
    return 0.0 if at is None else at.timestamp()


@dataclass(frozen=True, slots=True)
class CloudUrls:
    public: str  # where browsers reach the cloud
    internal: str  # where sandboxes reach it


class Lifecycle:
    """Starts, pauses and kills users' sandboxes; shared by the stage, the sweeper and the CLI."""

    def __init__(
        self,
        db: Database,
        provider: SandboxProvider,
        config: SandboxRouterConfig,
        keys: KeyService,
        urls: CloudUrls,
    ) -> None:
        self.db = db
        self.store = Sandboxes(db)
        self.provider = provider
        self.config = config
        self.keys = keys
        self.urls = urls
        self.gate = ProviderGate()
        self.watches: dict[uuid.UUID, StartWatch] = {}
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._line: dict[uuid.UUID, float] = {}
        """Users refused a start (all slots busy) in arrival order, with when they last asked."""
        self._background: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        self.on_stopped: Callable[[uuid.UUID], None] = lambda user_id: None
        """Called when this process stops a sandbox (the stage forgets its cached address)."""
        self.app_start_estimate: float | None = None
        """Seconds the last start here waited for the app's ``/health`` (the health step's percentages)."""
        self.on_finished: Callable[[str], None] = lambda outcome: None
        """Called with ``running`` or ``failed`` when a start of this process ends (metrics)."""

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        return self._http

    async def close(self) -> None:
        for task in [*self._tasks.values(), *self._background]:
            task.cancel()
        await asyncio.gather(*self._tasks.values(), *self._background, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    # starting --------------------------------------------------------------------------------------

    def start(self, user_id: uuid.UUID, *, check: bool = False) -> StartWatch:
        """Join the user's start in flight, or begin one. ``check``: the row says running but the
        sandbox did not answer; look again (and resume it) instead of trusting the row."""
        watch = self.watches.get(user_id)
        if watch is not None and not watch.done.is_set():
            return watch
        self._queue_up(user_id)
        watch = self.watches[user_id] = StartWatch()
        task = asyncio.get_running_loop().create_task(self._start(user_id, watch, check))
        self._tasks[user_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(user_id, None))
        return watch

    def _queue_up(self, user_id: uuid.UUID) -> None:
        """First come, first started when starts are at their maximum: raise :class:`TooManyStarts`
        with the user's place in line unless a slot is free for them."""
        clock = time.monotonic()
        for waiting, seen in list(self._line.items()):
            if clock - seen > QUEUE_FORGET_SECONDS:
                del self._line[waiting]
        self._line[user_id] = clock  # keeps its place when already in line
        place = list(self._line).index(user_id) + 1
        free = self.config.max_concurrent_starts - len(self._tasks)
        if place > free:
            raise TooManyStarts(place - max(free, 0))
        del self._line[user_id]

    async def ensure_running(self, user_id: uuid.UUID) -> Sandbox:
        """Start the sandbox if needed and wait for the outcome (the CLI and exports use it)."""
        row = await self.store.of_user(user_id)
        if row is None or row.state != "running":
            watch = self.start(user_id)
            await watch.done.wait()
            if watch.error is not None:
                raise ProviderError(watch.error)
        row = await self.store.of_user(user_id)
        assert row is not None
        return row

    async def _start(self, user_id: uuid.UUID, watch: StartWatch, check: bool) -> None:
        began = time.monotonic()
        try:
            await self._make_room(user_id, watch)
            async with self.db.user_lock(f"sandbox_router:{user_id}"):
                try:
                    async with asyncio.timeout(self.config.start_timeout):
                        await self._start_locked(user_id, watch, check)
                except TimeoutError:
                    raise ProviderError(
                        f"The sandbox provider did not finish starting your sandbox within "
                        f"{self.config.start_timeout:g} s."
                    ) from None
            log.info(
                "sandbox_router: the sandbox of %s is running (%.2f s)", user_id, time.monotonic() - began
            )
        except ProviderError as exc:
            watch.error = exc.message
            if isinstance(exc, ProviderAuthError):
                log.error("sandbox_router: the provider refused our credentials: %s", exc.message)
            await self._fail(user_id, exc.message)
        except StoreError as exc:
            watch.error = "The cloud's database cannot be reached. Try again in a moment."
            log.warning("sandbox_router: start of %s: %s", user_id, exc.message)
        except Exception:
            watch.error = "The sandbox could not be started (an unexpected error; the operator's log has it)."
            log.exception("sandbox_router: start of %s failed", user_id)
            await self._fail(user_id, watch.error)
        finally:
            watch.done.set()
            self.on_finished("failed" if watch.error else "running")

    async def _start_locked(self, user_id: uuid.UUID, watch: StartWatch, check: bool) -> None:
        row = await self.store.ensure(user_id, self.provider.name)
        if row.state == "running" and row.handle is not None and row.app_token is not None:
            endpoint = self.provider.endpoint(row.handle)
            if not check or await self._healthy(endpoint, row.app_token):
                return  # another worker or replica finished it while we waited for the lock
        handle, token, made = row.handle, row.app_token, False
        broken = handle is not None and row.state == "broken"
        if broken and handle is not None and not await self._restart_healer(user_id, watch, handle):
            await self.provider.stop(handle)  # no process manager to ask: restart everything instead
        if handle is None or token is None:
            (handle, token), made = await self._provision(user_id, watch, ""), True
        else:
            self._progress(user_id, watch, Progress("resume", 20, "Waking your sandbox"), remember=False)
            await self.store.set_state(user_id, "resuming")
            paused = handle
            try:
                handle = await self.gate.call(
                    user_id,
                    lambda: self.provider.resume(paused, self._on_progress(user_id, watch)),
                    self._on_wait(user_id, watch),
                )
            except SandboxGone:
                notice = "Your previous sandbox was removed; making a new one."
                (handle, token), made = await self._provision(user_id, watch, notice), True
        self._progress(user_id, watch, Progress("health", 80, "Starting Mastra"), remember=False)
        began = time.monotonic()

        def waited() -> None:
            estimate = self.app_start_estimate
            if estimate is not None:
                progress = health_progress(time.monotonic() - began, estimate)
                self._progress(user_id, watch, progress, remember=False)

        if await self._wait_healthy(self.provider.endpoint(handle), token, waited):
            self.app_start_estimate = time.monotonic() - began
        else:
            reason = f"The sandbox did not become healthy within {self.config.health_timeout:g} s."
            try:
                await self.provider.stop(handle)  # "Try again" starts it afresh (a pause may only freeze)
            except ProviderError as exc:
                log.warning("sandbox_router: could not stop unhealthy sandbox of %s: %s", user_id, exc)
            raise ProviderError(reason)
        if made:  # a resumed sandbox keeps its version (upgrades set it)
            await self.store.set_state(
                user_id, "running", handle=handle, template_version=await self._template_version(handle)
            )
        else:
            await self.store.set_state(user_id, "running", handle=handle)
        self._progress(user_id, watch, Progress("ready", 100, "Ready"), remember=False)

    async def _make_room(self, user_id: uuid.UUID, watch: StartWatch) -> None:
        """Under ``max_running``, pause the least recently used running sandboxes of others until one
        more fits. Before the user's own lock is taken (two starts never wait on each other's lock), so
        starts racing on several workers may overshoot the cap briefly; the next start corrects it."""
        cap = self.config.max_running
        if cap is None:
            return
        others = [r for r in await self.store.in_states("running", "broken") if r.user_id != user_id]
        if len(others) < cap:
            return
        self._progress(user_id, watch, Progress("queued", 2, "Making room on the machine"), remember=False)
        others.sort(key=lambda r: (_seconds(r.last_activity_at), _seconds(r.state_changed_at)))
        chosen = others[: len(others) - cap + 1]
        if self.provider.paused_accepts_connections:
            for row in chosen:  # its pause waits out cached routes (route_grace); the start goes on
                self.spawn(self._pause_for_room(row.user_id))
            return
        for row in chosen:
            await self._pause_for_room(row.user_id)

    async def _pause_for_room(self, user_id: uuid.UUID) -> None:
        if await self.pause(user_id, "paused to make room for another user (max_running)"):
            log.info("sandbox_router: paused the sandbox of %s to make room", user_id)

    async def _restart_healer(self, user_id: uuid.UUID, watch: StartWatch, handle: Handle) -> bool:
        """ "Try again" after the healer gave up: a fresh healer (0 attempts) through the sandbox's
        process manager; False when that cannot be done."""
        self._progress(user_id, watch, Progress("heal", 10, "Restarting the healer"))
        try:
            result = await self.provider.run(handle, self.config.healer_restart_command, limit=30)
        except (ProviderError, OSError) as exc:
            log.warning("sandbox_router: could not restart the healer of %s: %s", user_id, exc)
            return False
        if result.exit_code == 0:
            await self.store.set_healer(user_id, "healing", "Restarted by the user.")
        return result.exit_code == 0

    async def _provision(self, user_id: uuid.UUID, watch: StartWatch, notice: str) -> tuple[Handle, str]:
        """A new sandbox (its handle stored at once, so the reconciler never takes it for an orphan)
        and its app token."""
        self._progress(user_id, watch, Progress("provision", 5, notice or "Creating your sandbox"))
        await self.store.set_state(user_id, "provisioning", notice or None)
        issued = await self.keys.rotate(user_id, grace=timedelta(0))  # the old sandbox is gone
        token = secrets.token_urlsafe(32)
        env = sandbox_env(
            user_id=user_id,
            virtual_key=issued.key,
            app_token=token,
            public_url=self.urls.public,
            cloud_url=self.urls.internal,
            studio_path=self.config.studio_path,
            api_prefix=self.config.api_prefix,
        )
        env.update(self.config.healer.env())
        spec = SandboxSpec(str(user_id), env, {"user_id": str(user_id)})
        handle = await self.gate.call(
            user_id,
            lambda: self.provider.create(spec, self._on_progress(user_id, watch)),
            self._on_wait(user_id, watch),
        )
        await self.store.set_handle(user_id, handle, app_token=token, healer_status=None, healer_message=None)
        return handle, token

    async def _fail(self, user_id: uuid.UUID, reason: str) -> None:
        try:
            await self.store.set_state(user_id, "error", reason)
        except StoreError as exc:
            log.warning("sandbox_router: could not record the failure of %s: %s", user_id, exc.message)

    async def _wait_healthy(self, endpoint: Endpoint, token: str, waited: Callable[[], None]) -> bool:
        deadline = time.monotonic() + self.config.health_timeout
        for wait in health_waits(self.config.health_interval, self.config.health_interval_max):
            if await self._healthy(endpoint, token):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(wait, left))
            waited()
        raise AssertionError("unreachable: health_waits never ends")

    async def _healthy(self, endpoint: Endpoint, token: str) -> bool:
        headers = {**endpoint.headers, "x-mastra-auth-token": token}
        try:
            async with self.http.get(endpoint.base_url / "health", headers=headers) as answer:
                return answer.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _template_version(self, handle: Handle) -> str | None:
        try:
            return (await self.provider.read_file(handle, ".template-version")).decode().strip() or None
        except (ProviderError, OSError):  # a template without the file: the version is unknown
            return None

    def _on_progress(self, user_id: uuid.UUID, watch: StartWatch) -> Callable[[Progress], None]:
        return lambda progress: self._progress(user_id, watch, progress)

    def _on_wait(self, user_id: uuid.UUID, watch: StartWatch) -> Callable[[int, float], None]:
        def waiting(position: int, seconds: float) -> None:
            watch.position = position
            watch.message = f"Waiting for the sandbox provider: you are number {position} in the queue"

        return waiting

    def _progress(
        self, user_id: uuid.UUID, watch: StartWatch, progress: Progress, *, remember: bool = True
    ) -> None:
        """Show ``progress`` on this process's pages, and (``remember``) on other replicas' through the
        store; steps that a state change already tells are not written twice."""
        watch.step, watch.percent, watch.message, watch.position = (
            progress.step,
            progress.percent,
            progress.message,
            None,
        )
        if remember:
            self.spawn(self.store.set_progress(user_id, progress.message, progress.percent))

    def spawn(self, work: Awaitable[None]) -> None:
        """Run ``work`` in the background, logging failures (kept referenced until it ends)."""

        async def guarded() -> None:
            try:
                await work
            except (StoreError, ProviderError) as exc:
                log.warning("sandbox_router: background work failed: %s", exc)

        task = asyncio.get_running_loop().create_task(guarded())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # stopping --------------------------------------------------------------------------------------

    async def pause(
        self, user_id: uuid.UUID, reason: str, *, unless_active_since: float | None = None
    ) -> bool:
        """Pause the user's running sandbox; with ``unless_active_since`` (a wall-clock time), only if
        it had no activity since then. True when it was paused. Where a paused sandbox still accepts
        connections, the row says paused first and the provider pauses once no worker can still forward
        to it: :attr:`route_grace` later, sooner for a sandbox idle longer than that (a provider
        failure then leaves a paused row on a running sandbox: the next visit's resume finds it
        healthy)."""
        async with self.db.user_lock(f"sandbox_router:{user_id}"):
            row = await self.store.of_user(user_id)
            if row is None or row.handle is None or row.state not in ("running", "broken"):
                return False
            last = row.last_activity_at  # activity only: a rollout's own wake is no user's return
            if (
                unless_active_since is not None
                and last is not None
                and last.timestamp() > unless_active_since
            ):
                return False
            self.on_stopped(user_id)
            if self.provider.paused_accepts_connections:
                await self.store.set_state(user_id, "paused", reason)
                await self._outwait_routes(user_id)
                await self.provider.pause(row.handle)
            else:
                await self.provider.pause(row.handle)
                await self.store.set_state(user_id, "paused", reason)
            return True

    async def _outwait_routes(self, user_id: uuid.UUID) -> None:
        """Wait, after marking the user's sandbox paused, until no process can still forward to it:
        :attr:`route_grace`, or less for a sandbox idle for longer than that.

        Every address still cached was read before the mark, and the worker that read it recorded
        activity then, or less than :data:`TOUCH_EVERY` before (see the stage's ``touch``). Once
        :attr:`activity_lag` has passed since the mark those records are in the row, so the latest
        activity there plus TOUCH_EVERY plus route_grace is when the last cached address has stopped
        being used and its last request has been answered. An idle sweep's sandbox, idle for
        minutes, is frozen after activity_lag; one active a moment ago waits route_grace, as before.
        The workers' wall clocks are taken to agree with this one's (as the idle timeout takes them)."""
        grace = self.route_grace
        until = time.time() + grace
        if self.activity_lag < grace:
            await asyncio.sleep(self.activity_lag)
            row = await self.store.of_user(user_id)
            last = None if row is None else row.last_activity_at
            routed_until = float("-inf") if last is None else last.timestamp() + TOUCH_EVERY + grace
            until = min(until, routed_until)
        await asyncio.sleep(max(0.0, until - time.time()))

    @property
    def activity_lag(self) -> float:
        """Seconds within which activity a worker records is in the store: its activity writer
        flushes every ``batch_interval`` (``[database]``), so a record made just after a flush took
        its batch waits for that flush to end, an interval, and its own flush, each flush taken to
        last at most an interval (a writer whose flushes last longer falls behind anyway)."""
        return 3 * self.db.config.batch_interval

    @property
    def route_grace(self) -> float:
        """Seconds between marking a sandbox paused and pausing it at a provider whose paused
        sandboxes still accept connections (:attr:`SandboxProvider.paused_accepts_connections`).

        Every worker and replica caches a running sandbox's address for ``route_cache_seconds``
        counted from the start of the store read it came from, and a read that starts after the row
        says paused routes nowhere: once this much time has passed, no process forwards to the
        sandbox, and the user's next request anywhere wakes it (it waits for this lock, held
        throughout, so a resume never overtakes the pause). A request forwarded just before its
        address expired gets :data:`IN_FLIGHT_GRACE` more to be answered. Meanwhile the sandbox keeps
        answering whoever still holds its address."""
        return self.config.route_cache_seconds + IN_FLIGHT_GRACE

    async def kill(self, user_id: uuid.UUID) -> bool:
        """Remove the user's sandbox and its files; the next visit provisions a new one."""
        async with self.db.user_lock(f"sandbox_router:{user_id}"):
            row = await self.store.of_user(user_id)
            if row is None:
                return False
            self.on_stopped(user_id)
            if row.handle is not None:
                await self.provider.kill(row.handle)
            await self.store.set_handle(user_id, None)
            await self.store.set_state(user_id, "paused", "removed by an administrator")
            return True
