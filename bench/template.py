"""How long a local sandbox takes to make: ``python -m bench.template [--rounds N]``.

Per round, in a fresh cache folder: the first ``prepare()`` of the bundled template with an EMPTY npm
cache (what a new machine pays), the first with npm's own cache warm, ``prepare()`` again (already
prepared), ``populate_workspace()`` for a new user, and ``start.sh`` until ``GET /health`` answers.
Rounds interleave the two first-prepare kinds; medians are printed. Not part of CI; needs the npm
registry. Everything is removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from plugins.sandbox_router.template import BUNDLED_TEMPLATE_DIR, node_runtime, populate_workspace, prepare


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _prepare(cache: Path, npm_cache: str | None) -> float:
    previous = os.environ.get("NPM_CONFIG_CACHE")
    if npm_cache:
        os.environ["NPM_CONFIG_CACHE"] = npm_cache
    try:
        return _timed(lambda: asyncio.run(prepare(BUNDLED_TEMPLATE_DIR, cache, lambda _p: None)))
    finally:
        if previous is None:
            os.environ.pop("NPM_CONFIG_CACHE", None)
        else:
            os.environ["NPM_CONFIG_CACHE"] = previous


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_to_health(workspace: Path, limit: float = 180) -> float:
    port = _free_port()
    env = node_runtime().env(
        {k: v for k, v in os.environ.items() if not k.startswith("PM2")}
        | {"SANDBOX_HOME": str(workspace), "PORT": str(port), "MASTRA_AUTH_TOKEN": "bench"}
    )
    started = time.perf_counter()
    process = subprocess.Popen(
        ["bash", str(workspace / "start.sh")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while time.perf_counter() - started < limit:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the app never answered /health")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    figures: dict[str, list[float]] = {}
    root = Path(tempfile.mkdtemp(prefix="bench-template-", dir="/tmp"))
    try:
        for round_number in range(args.rounds):
            order = ["cold", "warm"] if round_number % 2 == 0 else ["warm", "cold"]
            for kind in order:
                cache = root / f"{kind}{round_number}"
                npm_cache = str(root / f"npm{round_number}") if kind == "cold" else None
                figures.setdefault(f"first prepare, npm cache {kind}", []).append(_prepare(cache, npm_cache))
                figures.setdefault("prepare again", []).append(_prepare(cache, None))
                prepared = asyncio.run(prepare(BUNDLED_TEMPLATE_DIR, cache, lambda _p: None))
                workspace = cache / "users" / "u"
                figures.setdefault("populate a workspace", []).append(
                    _timed(lambda: populate_workspace(prepared, workspace))  # noqa: B023
                )
                figures.setdefault("start.sh to /health", []).append(_start_to_health(workspace))
                shutil.rmtree(cache)
        for name, values in figures.items():
            median = statistics.median(values)
            shown = f"{median * 1000:.1f} ms" if median < 1 else f"{median:.1f} s"
            print(f"{name:32} {shown:>10}   (n={len(values)})")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
