"""The cloud as the journey meets it: one real ``shmastra-cloud serve`` process on loopback with its own
``proxy.toml`` (SQLite, ``local`` sandboxes from the bundled template, email codes written to its JSON
log, a short idle timeout, OpenAI at a provider stand-in), its log read for sign-in codes, and its CLI
asked which sandboxes run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.servers import free_port, json_lines, spawn, stop, until_ready

REPO = Path(__file__).resolve().parents[2]
COMMAND = Path(sys.executable).parent / "shmastra-cloud"

CONFIG = """\
[server]
host = "127.0.0.1"
port = {port}
log_format = "json"
shutdown_timeout = 5

[database]
url = "sqlite:///data/shmastra.db"

[[pipeline]]
stage = "vkey"
[pipeline.providers.openai]
url = "{llm_url}/v1"
key_env = "OPENAI_API_KEY"

[[pipeline]]
stage = "auth"
provider = "email_code"
allowed_domains = ["example.com"]
public_paths = ["/api/sandbox/heal"]
[pipeline.email_code]
delivery = "log"

[[pipeline]]
stage = "sandbox_router"
provider = "local"
template_dir = "{template_dir}"
idle_timeout = {idle_timeout}
sweep_interval = 1
health_timeout = 300
start_timeout = 900
[pipeline.healer]
startup_grace = 240  # a loaded 2-core machine bundles mastra dev slowly: never restart a healthy start
build_stuck = 120
[pipeline.local]
root = "data/sandboxes"
cache_dir = "{cache_dir}"
"""


@dataclass
class Cloud:
    url: str
    folder: Path
    config: Path
    log: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]

    def lines(self) -> list[dict[str, Any]]:
        """The server's JSON log lines written so far."""
        return json_lines(self.log)

    def codes(self, email: str) -> list[str]:
        """The sign-in codes the server logged for ``email``, oldest first."""
        return [
            str(line["code"])
            for line in self.lines()
            if line.get("event") == "sign_in_code" and line.get("email") == email
        ]

    async def command(self, *args: str) -> str:
        """``shmastra-cloud ARGS --config <its config>``'s output (in a thread: the stand-in the server
        calls runs on this loop, which must stay free); a failure fails the test."""
        done = await asyncio.to_thread(
            subprocess.run,
            [str(COMMAND), *args, "--config", str(self.config)],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    async def sandboxes(self) -> dict[str, tuple[str, str]]:
        """``sandboxes list``: owner's email → (state, sandbox id)."""
        rows = {}
        for line in (await self.command("sandboxes", "list")).splitlines():
            fields = line.split("\t")
            if len(fields) >= 3:
                rows[fields[0]] = (fields[1], fields[2])
        return rows

    def workspace(self, sandbox_id: str) -> Path:
        """The sandbox's home folder (the ``local`` provider's layout)."""
        return self.folder / "data" / "sandboxes" / sandbox_id / "home"

    def runs(self, sandbox_id: str) -> bool:
        """Whether any process of the sandbox (its first process and every descendant, from the
        ``local`` provider's ``state.json``) is running: a paused sandbox has none, whether it was
        frozen (every process stopped, ``T``) or stopped (none left)."""
        state = self.folder / "data" / "sandboxes" / sandbox_id / "state.json"
        if not state.is_file():
            return False
        root = int(orjson.loads(state.read_bytes())["pid"])
        states: dict[int, str] = {}
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile
            pid = int(stat.parent.name)
            states[pid] = fields[0]
            children.setdefault(int(fields[1]), []).append(pid)
        tree, running = [root], False
        while tree:
            pid = tree.pop()
            running = running or states.get(pid, "T") not in "TtZX"
            tree.extend(children.get(pid, []))
        return running

    def sandbox_environment(self, sandbox_id: str) -> dict[str, str]:
        """The environment the cloud gave the sandbox (kept in its ``sandbox.json``)."""
        spec = orjson.loads((self.folder / "data" / "sandboxes" / sandbox_id / "sandbox.json").read_bytes())
        environment: dict[str, str] = spec["env"]
        return environment


@contextlib.asynccontextmanager
async def serving(
    llm_url: str, openai_key: str, cache_dir: Path, idle_timeout: float
) -> AsyncIterator[Cloud]:
    """The server, started from a fresh short folder (pm2's control sockets live in the workspaces);
    stopped (and its sandboxes with it) at the end."""
    folder = Path(tempfile.mkdtemp(prefix="jny-", dir="/tmp"))
    port = free_port()
    config = folder / "proxy.toml"
    config.write_text(
        CONFIG.format(
            port=port,
            llm_url=llm_url,
            template_dir=REPO / "e2b-template",
            idle_timeout=idle_timeout,
            cache_dir=cache_dir,
        )
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "SHMASTRA_ADMIN_EMAIL", "PROXY_CONFIG") and not k.startswith("PM2")
    }
    env.update(PYTHONUNBUFFERED="1", OPENAI_API_KEY=openai_key)
    log = folder / "server.log"
    process = spawn([str(COMMAND), "serve", "--config", str(config)], env, log, cwd=folder)
    cloud = Cloud(f"http://127.0.0.1:{port}", folder, config, log, env, process)
    try:
        async with aiohttp.ClientSession() as probe:
            await until_ready(probe, cloud.url, process, log, "the server", tries=1200)
        yield cloud
    finally:
        await stop(process, 60)
        await _stop_sandboxes(folder / "data" / "sandboxes")
        shutil.rmtree(folder, ignore_errors=True)


async def _stop_sandboxes(root: Path) -> None:
    """Sandboxes the server left running (it leaves them to be resumed by the next server): their
    process groups, from the ``local`` provider's ``state.json``."""
    for state in root.glob("*/state.json"):
        with contextlib.suppress(orjson.JSONDecodeError, KeyError, ProcessLookupError, PermissionError):
            os.killpg(int(orjson.loads(state.read_bytes())["pid"]), signal.SIGKILL)
