"""The cloud as a teammate meets it, served by its own process: ``vkey``, ``auth`` (emailed codes) and
``sandbox_router`` with the ``local`` provider (no bubblewrap) in front of a bench template, the access
log on; and what a browser does with it: sign in, open its sandbox and wait until it runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

from .. import procs, signin, starttime
from ..sandbox import until_ready

JSON = {"Accept": "application/json"}


@dataclass
class Cloud:
    service: procs.Service
    folder: Path

    @property
    def url(self) -> str:
        return self.service.url

    @property
    def mailbox(self) -> Path:
        return self.folder / "mailbox"

    def stop(self) -> None:
        """Stop the cloud (it stops the sandboxes it started), then any sandbox group still alive."""
        self.service.stop()
        for pgid, _ in self.sandboxes().values():
            with contextlib.suppress(OSError):  # only a group still running in one of our workspaces
                if Path(os.readlink(f"/proc/{pgid}/cwd")).is_relative_to(self.folder):
                    os.killpg(pgid, signal.SIGKILL)
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Cloud:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def sandboxes(self) -> dict[str, tuple[int, int]]:
        """Each running sandbox's owner (user id) -> (process group, port), from the provider's files."""
        found = {}
        for state in (self.folder / "sandboxes").glob("*/state.json"):
            record = orjson.loads((state.parent / "sandbox.json").read_bytes())
            running = orjson.loads(state.read_bytes())
            found[str(record["user_id"])] = (int(running["pid"]), int(running["port"]))
        return found


def start(template: Path, *, users: int = 1, cpus: str | None = None) -> Cloud:
    """A cloud process whose sandboxes run ``template``; ``users`` may sign in from 127.0.0.1."""
    folder = Path(tempfile.mkdtemp(prefix="shmastra-bench-journey-"))
    port = procs.free_port()
    router = (
        f'[[pipeline]]\nstage = "sandbox_router"\ntemplate_dir = "{template}"\nhealth_interval = 0.01\n'
        f'[pipeline.local]\nroot = "{folder}/sandboxes"\ncache_dir = "{folder}/cache"\n'
        'hidden_paths = []\nbwrap = "never"\n'
    )
    many = 2 * users + 10
    config = procs.write_temp(
        f'[server]\nport = {port}\naccess_log = true\nmax_body_size = 0\nlog_format = "json"\n'
        + signin.pipeline(
            folder,
            router,
            auth_options='allowed_domains = ["example.com"]\n',
            email_options=f"sends_per_ip = {many}\nverifies_per_ip = {many}\n",
        ),
        ".toml",
    )
    service = procs.spawn(
        "ours: vkey, auth (signed in), sandbox_router; +access log",
        [sys.executable, "-m", "proxy_core.cli", "serve", "-c", str(config)],
        port,
        cpus=cpus,
        files=[config],
    )
    return Cloud(service, folder)


def browser() -> aiohttp.ClientSession:
    return starttime.browser()


async def open_sandbox(http: aiohttp.ClientSession, base: str) -> None:
    """Ask for the app as an API caller does (503 while it starts; 429 past the start limit) until its
    own answer comes back."""
    for _ in range(600):
        async with http.get(base + "/api/mastra/small", headers=JSON) as answer:
            await answer.read()
            if answer.status == 200:
                return
            if answer.status == 429:
                await asyncio.sleep(0.2)
                continue
            if answer.status != 503:
                raise RuntimeError(f"opening the sandbox answered {answer.status}")
        await until_ready(http, base)
    raise RuntimeError("the sandbox did not start")


async def signed_in(cloud: Cloud, email: str) -> aiohttp.ClientSession:
    http = browser()
    await signin.enter_code(http, cloud.url, cloud.mailbox, email)
    return http
