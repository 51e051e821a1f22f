"""Supervised background jobs for a stage's lifespan: started with the app, logged and restarted with
back-off when they crash, cancelled (and awaited) at shutdown::

    async def lifespan(self, app):
        async with BackgroundJobs(self.name) as jobs:
            jobs.start("purge", self._purge_forever)
            yield

A job is an ``async`` function without arguments. One that returns is done (not restarted); one that
raises is logged with its traceback and started again after ``backoff`` seconds, doubled after each
quick crash up to ``max_backoff``, back to ``backoff`` once it ran longer than ``max_backoff``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


class BackgroundJobs:
    def __init__(self, owner: str, *, backoff: float = 1.0, max_backoff: float = 60.0) -> None:
        self.owner = owner
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._tasks: set[asyncio.Task[None]] = set()
        self.crashes = 0

    def __len__(self) -> int:
        """How many jobs are running (one waiting to restart after a crash counts)."""
        return len(self._tasks)

    def start(self, name: str, job: Job, *, restart: bool = True) -> asyncio.Task[None]:
        """Run ``job`` in the background until it returns or the jobs stop."""
        task = asyncio.create_task(self._supervise(name, job, restart), name=f"{self.owner}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _supervise(self, name: str, job: Job, restart: bool) -> None:
        loop = asyncio.get_running_loop()
        delay = self.backoff
        while True:
            started = loop.time()
            try:
                await job()
                return
            except Exception:
                self.crashes += 1
                log.exception(
                    "%s: background job %r crashed%s", self.owner, name, "; restarting" if restart else ""
                )
                if not restart:
                    return
            if loop.time() - started > self.max_backoff:
                delay = self.backoff
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_backoff)

    async def wait(self, seconds: float) -> None:
        """Give the running jobs up to ``seconds`` to finish on their own."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=seconds)

    async def stop(self) -> None:
        """Cancel every job and wait until each has finished its clean-up."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> BackgroundJobs:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def every(seconds: float, action: Callable[[], Awaitable[object]]) -> Job:
    """A job calling ``action`` every ``seconds`` (first after one period); a crash of one call is the
    job's crash (logged, restarted with back-off)."""

    async def periodically() -> None:
        while True:
            await asyncio.sleep(seconds)
            await action()

    return periodically
