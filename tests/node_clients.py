"""The Node clients the gateway tests drive (the Vercel AI SDK, the Composio SDK, an MCP client),
installed from ``tests/node/package.json`` and its lockfile with ``npm ci`` from the npm registry, once
per lockfile version, into a cache folder (``$SHMASTRA_TEST_CACHE``, default
``~/.cache/shmastra-cloud-tests``) shared by later runs. A clean clone (CI) installs on first use; a
missing ``node``/``npm`` fails the tests that need them rather than skipping them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson

SOURCE = Path(__file__).parent / "node"
_MANIFESTS = ("package.json", "package-lock.json")
_SCRIPT_TIMEOUT = 120  # seconds: a hung client fails its test instead of the whole run


def cache_root() -> Path:
    configured = os.environ.get("SHMASTRA_TEST_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "shmastra-cloud-tests"


def install() -> Path:
    """The folder holding the installed clients and the scripts of ``tests/node``."""
    digest = hashlib.sha256(b"".join((SOURCE / name).read_bytes() for name in _MANIFESTS)).hexdigest()[:16]
    target = cache_root() / f"node-{digest}"
    if not (target / "node_modules" / ".package-lock.json").exists():  # npm writes it last
        npm = shutil.which("npm")
        assert npm is not None, "npm is needed for the Node client tests (Debian: apt-get install nodejs)"
        staging = cache_root() / f"node-{digest}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name in _MANIFESTS:
            shutil.copy(SOURCE / name, staging / name)
        done = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=staging,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"npm ci failed in {staging}:\n{done.stdout}\n{done.stderr}"
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    for script in SOURCE.glob("*.mjs"):  # always the working tree's version
        shutil.copy(script, target / script.name)
    return target


async def run_script(folder: Path, script: str, scenario: dict[str, Any]) -> Any:
    """Run ``script`` with ``scenario`` as its JSON argument; its last line of output, parsed."""
    node = shutil.which("node")
    assert node is not None, "node is needed for the Node client tests (Debian: apt-get install nodejs)"
    process = await asyncio.create_subprocess_exec(
        node,
        script,
        orjson.dumps(scenario).decode(),
        cwd=folder,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), _SCRIPT_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    lines = out.decode().strip().splitlines()
    assert process.returncode == 0 and lines, (
        f"{script} failed ({process.returncode}):\n{out.decode()}\n{err.decode()}"
    )
    return orjson.loads(lines[-1])
