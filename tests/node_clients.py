"""The Node clients the gateway tests drive (the Vercel AI SDK, the Composio SDK, an MCP client),
installed from ``tests/node/package.json`` and its lockfile into the test cache by
:func:`tests.npm_cache.npm_installed` (once per lockfile). A missing ``node``/``npm`` fails the tests
that need them rather than skipping them.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import orjson

from tests.npm_cache import npm_installed

SOURCE = Path(__file__).parent / "node"
_SCRIPT_TIMEOUT = 120  # seconds: a hung client fails its test instead of the whole run


def install() -> Path:
    """The folder holding the installed clients and the scripts of ``tests/node``."""
    target = npm_installed("node", SOURCE)
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
