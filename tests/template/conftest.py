"""Fixtures for the sandbox template's tests: templates prepared ONCE per session with the real npm
registry (into a cache folder kept between runs, so CI on a clean clone installs what it needs and
later runs reuse it), sandboxes started by the real ``start.sh`` under real pm2, and a recorder for the
healer's reports to the cloud."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from plugins.sandbox_router.template import (
    BUNDLED_TEMPLATE_DIR,
    PreparedTemplate,
    node_runtime,
    populate_workspace,
    prepare,
)
from tests.npm_cache import cache_root
from tests.servers import free_port

HERE = Path(__file__).parent
VIRTUAL_KEY = "vk_u1_" + "ab12" * 6
SCRIPTS = ("VERSION", "env.sh", "start.sh", "pm2.sh", "ecosystem.config.js", "healer", "runtime")


@pytest.fixture(scope="session")
def template_cache() -> Path:
    path = cache_root()
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def healer_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real template's scripts and pm2 with the small test app instead of the Mastra project."""
    folder = tmp_path_factory.mktemp("healer-template")
    for name in SCRIPTS:
        source = BUNDLED_TEMPLATE_DIR / name
        if source.is_dir():
            shutil.copytree(
                source, folder / name, ignore=shutil.ignore_patterns("node_modules", "__pycache__")
            )
        else:
            shutil.copy2(source, folder / name)
    shutil.copytree(HERE / "healer_app", folder / "app")
    return folder


@pytest.fixture(scope="session")
def healer_prepared(healer_template: Path, template_cache: Path) -> PreparedTemplate:
    return asyncio.run(prepare(healer_template, template_cache, lambda _progress: None))


@pytest.fixture(scope="session")
def mastra_prepared(template_cache: Path) -> PreparedTemplate:
    """The bundled template (the Mastra project and pm2) installed from the npm registry."""
    return asyncio.run(prepare(BUNDLED_TEMPLATE_DIR, template_cache, lambda _progress: None))


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short folder for workspaces (pm2's control sockets live there)."""
    path = Path(tempfile.mkdtemp(prefix="sbx-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class Sandbox:
    home: Path
    port: int
    env: dict[str, str]
    process: asyncio.subprocess.Process

    @property
    def project(self) -> Path:
        return self.home / "shmastra"

    async def pm2(self, *args: str) -> str:
        """``pm2.sh ARGS``: pm2 against this sandbox, as the cloud runs it."""
        process = await asyncio.create_subprocess_exec(
            str(self.home / "pm2.sh"),
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate()
        return out.decode()

    def healer_log(self) -> str:
        path = self.home / "logs" / "healer.log"
        return path.read_text() if path.exists() else ""

    async def stop(self) -> None:
        if self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                os.killpg(self.process.pid, signal.SIGKILL)
                await self.process.wait()


StartSandbox = Callable[..., Awaitable[Sandbox]]


@pytest.fixture
async def start_sandbox(short_tmp: Path) -> AsyncIterator[StartSandbox]:
    """Populates a workspace from a prepared template and runs its ``start.sh`` (pm2-runtime in the
    foreground) with ``SANDBOX_HOME`` and ``PORT``; stops every sandbox at teardown."""
    started: list[Sandbox] = []

    async def start(
        prepared: PreparedTemplate, env: dict[str, str], plant: Callable[[Path], None] | None = None
    ) -> Sandbox:
        home = short_tmp / f"ws{len(started)}"
        populate_workspace(prepared, home)
        if plant is not None:
            plant(home / "shmastra")
        port = free_port()
        full_env = node_runtime().env({k: v for k, v in os.environ.items() if not k.startswith("PM2")})
        full_env.update(env, SANDBOX_HOME=str(home), PORT=str(port))
        process = await asyncio.create_subprocess_exec(
            "bash",
            str(home / "start.sh"),
            env=full_env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        sandbox = Sandbox(home, port, full_env, process)
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        await sandbox.stop()


@dataclass
class CloudReports:
    reports: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    url: str = ""
    refuse: int = 0  # answer this many reports 503 first (as a cloud that is briefly down)

    def statuses(self) -> list[str]:
        return [report["status"] for report in self.reports]


REPORTS = web.AppKey("reports", CloudReports)


async def _heal(request: web.Request) -> web.Response:
    recorder = request.app[REPORTS]
    if recorder.refuse > 0:
        recorder.refuse -= 1
        return web.Response(status=503, text="briefly down")
    recorder.authorizations.append(request.headers.get("Authorization", ""))
    recorder.reports.append(await request.json())
    return web.Response(status=204)


@pytest.fixture
async def cloud() -> AsyncIterator[CloudReports]:
    """Where the healer reports: records every ``POST /api/sandbox/heal``."""
    app = web.Application()
    recorder = CloudReports()
    app[REPORTS] = recorder
    app.router.add_post("/api/sandbox/heal", _heal)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    recorder.url = str(server.make_url("")).rstrip("/")
    yield recorder
    await server.close()


async def wait_for(condition: Callable[[], bool], what: str, limit: float = 90.0) -> None:
    """Polls ``condition`` until it holds; fails naming ``what`` if it never does."""

    async def holds() -> bool:
        return condition()

    await wait_until(holds, what, limit)


async def wait_until(condition: Callable[[], Awaitable[bool]], what: str, limit: float = 90.0) -> None:
    """Polls the async ``condition`` until it holds; fails naming ``what`` if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.2)
