"""panva's ``oidc-provider`` (an OpenID Certified implementation, from npm) with its default settings,
run by Node on loopback: see ``server.mjs`` for what is configured and why.

:func:`install` installs it into the test cache (:func:`tests.npm_cache.npm_installed`, once per
version of this folder); :func:`running` starts the server and yields its issuer URL.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.npm_cache import npm_installed

HERE = Path(__file__).parent
FILES = ("package.json", "package-lock.json", "server.mjs")
CLIENT_SECRET = "standin-client-secret-0123456789abcdef"
CLIENTS = ("shmastra", "shmastra-ed25519", "shmastra-eddsa")
"""Registered clients; the last two sign id_tokens with ``Ed25519`` and ``EdDSA`` (else ``RS256``)."""


def install() -> Path:
    """The folder with ``server.mjs`` and its ``node_modules``."""
    return npm_installed("oidc-provider", HERE, FILES, scripts=True)


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
