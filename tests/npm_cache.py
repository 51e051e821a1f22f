"""Node packages the tests need, installed with ``npm ci`` from the npm registry once per lockfile into
the test cache (``$SHMASTRA_TEST_CACHE``, default ``~/.cache/shmastra-cloud-tests``), which later runs
reuse: a clean clone (CI) installs on first use, and a changed lockfile installs afresh beside the old.

Concurrent runs (parallel checkouts, several pytest processes) are safe: an install holds an exclusive
``flock`` on its own lock file, so one installs while the others wait and then reuse it, and it is
built in a staging folder renamed into place only when ``npm ci`` succeeded. A missing ``npm`` fails
the tests that need it rather than skipping them.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

MANIFESTS = ("package.json", "package-lock.json")
_DONE = Path("node_modules") / ".package-lock.json"  # npm writes it last


def cache_root() -> Path:
    """The test cache folder (not created)."""
    configured = os.environ.get("SHMASTRA_TEST_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "shmastra-cloud-tests"


def npm_installed(
    name: str, source: Path, files: Sequence[str] = MANIFESTS, *, scripts: bool = False
) -> Path:
    """The cache folder holding ``files`` of ``source`` (its ``package.json`` and lockfile among them)
    and their ``node_modules``, installed by ``npm ci`` (install scripts only when ``scripts``) unless
    an earlier run did. Keyed by the content of ``files``."""
    digest = hashlib.sha256(b"".join((source / file).read_bytes() for file in files)).hexdigest()[:16]
    root = cache_root()
    target = root / f"{name}-{digest}"
    if (target / _DONE).exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with (root / f".{name}-{digest}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if (target / _DONE).exists():  # another run installed it while this one waited
            return target
        npm = shutil.which("npm")
        assert npm is not None, f"npm is needed for {name} (Debian: apt-get install nodejs npm)"
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-{digest}.", dir=root))
        try:
            for file in files:
                shutil.copy(source / file, staging / file)
            command = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"]
            done = subprocess.run(
                command if scripts else [*command, "--ignore-scripts"],
                cwd=staging,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, f"npm ci for {name} failed:\n{done.stdout}\n{done.stderr}"
            shutil.rmtree(target, ignore_errors=True)  # a half-copied leftover of a crashed run
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target
