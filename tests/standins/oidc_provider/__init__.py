"""panva's ``oidc-provider`` (an OpenID Certified implementation, from npm) with its default settings,
run by Node on loopback: see ``server.mjs`` for what is configured and why.

:func:`install` runs ``npm ci`` once per version of this folder into a cache directory (a clean clone
installs on its first run); :func:`running` starts the server and yields its issuer URL.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
FILES = ("package.json", "package-lock.json", "server.mjs")
CLIENT_SECRET = "standin-client-secret-0123456789abcdef"
CLIENTS = ("shmastra", "shmastra-ed25519", "shmastra-eddsa")
"""Registered clients; the last two sign id_tokens with ``Ed25519`` and ``EdDSA`` (else ``RS256``)."""


def install(cache: Path) -> Path:
    """The folder with ``server.mjs`` and its ``node_modules``, installed by ``npm ci`` when missing."""
    digest = hashlib.sha256(b"".join((HERE / name).read_bytes() for name in FILES)).hexdigest()[:16]
    target = cache / digest
    if (target / "node_modules" / "oidc-provider").is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="install-", dir=cache))
    for name in FILES:
        shutil.copy(HERE / name, staging / name)
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=staging,
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=600,
    )
    try:
        staging.rename(target)  # atomic: a concurrent run that got there first keeps its copy
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@contextmanager
def running(folder: Path, accounts: dict[str, dict[str, Any]]) -> Iterator[str]:
    """The provider serving ``accounts`` (``{sub: claims}``); yields its issuer URL."""
    env = os.environ | {"OIDC_CLIENT_SECRET": CLIENT_SECRET, "OIDC_ACCOUNTS": json.dumps(accounts)}
    log = (folder / "server.log").open("ab")
    process = subprocess.Popen(
        ["node", "server.mjs"], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=log
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        line = b""
        while not line.endswith(b"\n"):
            ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(process.stdout.fileno(), 4096) if ready else b""
            if not chunk:
                raise RuntimeError(f"oidc-provider did not start; see {folder / 'server.log'}")
            line += chunk
        yield str(json.loads(line)["issuer"])
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
