"""Part (c): paused -> first byte, with :mod:`bench.starttime`'s measurement: a cloud (``vkey``,
``auth``, ``sandbox_router``, local provider) in this process, the fast template's nginx as the app;
the user's sandbox is paused and Studio asked for as a browser does, each wait split into the
provider's part (spawn), the app's own start (its ``/health`` probed every 10 ms from the spawn) and
our share (the rest)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import aiohttp

from plugins.sandbox_router import sandbox_router

from .. import starttime
from ..clients import run_async
from ..starttime import Probe, Timing
from . import apps

EMAIL = "solo@example.com"


async def _measure(rounds: int) -> list[Timing]:
    folder = Path(tempfile.mkdtemp(prefix="shmastra-bench-resume-"))
    users: dict[str, aiohttp.ClientSession] = {}
    try:
        template = apps.fast_template(folder / "template")
        async with starttime.cloud(folder, template, health_interval=0.01) as (base, app):
            router = sandbox_router(app)
            probe = Probe(router.provider, folder / "sandboxes")
            probe.install(router)
            await starttime.timed_start(base, app, folder, probe, users, EMAIL)  # the first start
            return await starttime.resumes_of(base, app, folder, probe, users, rounds, EMAIL)
    finally:
        for http in users.values():
            await http.close()
        shutil.rmtree(folder, ignore_errors=True)


def run(rounds: int) -> list[Timing]:
    return run_async(_measure(rounds))
