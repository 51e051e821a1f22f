"""Installs a template version's npm dependencies ONCE into a shared prepared copy that every local
sandbox of that version uses (see :mod:`.workspace`).

The copy lives in ``cache_dir/<version>-<digest>/``; the digest covers every file of the template (its
lockfiles included), so any change to the template makes a new copy. It is built in a temporary folder
and renamed into place, so a half-installed copy is never visible; a lock file serialises concurrent
callers (other coroutines or other processes), which then find the copy made and return at once. A
template folder whose ``app/`` and ``runtime/`` have no ``package.json`` is prepared by a plain copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from ..providers.base import Progress, ProgressCallback
from .node import NodeUnavailable, node_runtime

BUNDLED_TEMPLATE_DIR = Path(__file__).resolve().parents[3] / "e2b-template"
INSTALLED = ("runtime", "app")  # the template's folders whose npm dependencies are installed, in order
SKIPPED = ("node_modules", ".git", ".mastra", "__pycache__", ".pytest_cache")
MARKER = ".prepared"
LOCK_POLL = 0.2
OUTPUT_TAIL = 2000


class TemplateError(Exception):
    """The template folder is unusable, or installing its dependencies failed."""


@dataclass(frozen=True, slots=True)
class PreparedTemplate:
    """A template version with its dependencies installed, shared read-only by every workspace."""

    root: Path
    version: str
    key: str


def template_version(template_dir: Path) -> str:
    path = template_dir / "VERSION"
    try:
        version = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read the template version ({exc.strerror})") from None
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", version):
        raise TemplateError(f"{path}: the version must be letters, digits, '.', '_' or '-'")
    return version


def template_key(template_dir: Path) -> str:
    """``<version>-<digest of every file>`` (installed and generated folders left out)."""
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(template_dir):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED)
        for name in sorted(files):
            path = Path(folder) / name
            digest.update(str(path.relative_to(template_dir)).encode() + b"\0")
            digest.update(path.read_bytes() if not path.is_symlink() else os.readlink(path).encode())
            digest.update(b"\0")
    return f"{template_version(template_dir)}-{digest.hexdigest()[:12]}"


async def prepare(template_dir: Path, cache_dir: Path, on_progress: ProgressCallback) -> PreparedTemplate:
    """The prepared copy of ``template_dir``, installing it first if no caller has yet."""
    prepared = await asyncio.to_thread(_identify, template_dir, cache_dir)
    if not await asyncio.to_thread(_is_prepared, prepared):
        async with _exclusive(cache_dir / f".{prepared.key}.lock", on_progress):
            if not await asyncio.to_thread(_is_prepared, prepared):
                await _build(template_dir, cache_dir, prepared, on_progress)
    on_progress(Progress("done", 100, f"template {prepared.version} is ready"))
    return prepared


def _identify(template_dir: Path, cache_dir: Path) -> PreparedTemplate:
    if not template_dir.is_dir():
        raise TemplateError(f"{template_dir}: the template folder does not exist")
    version = template_version(template_dir)
    key = template_key(template_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    return PreparedTemplate(cache_dir / key, version, key)


def _is_prepared(prepared: PreparedTemplate) -> bool:
    return (prepared.root / MARKER).is_file()


@contextlib.asynccontextmanager
async def _exclusive(path: Path, on_progress: ProgressCallback) -> AsyncIterator[None]:
    """An exclusive ``flock`` on ``path``, polled so that waiting stays cancellable."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        waiting = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waiting:
                    waiting = True
                    on_progress(Progress("install", 5, "waiting for another install of this template"))
                await asyncio.sleep(LOCK_POLL)
        yield
    finally:
        os.close(fd)  # releases the lock


async def _build(
    template_dir: Path, cache_dir: Path, prepared: PreparedTemplate, on_progress: ProgressCallback
) -> None:
    staging = await asyncio.to_thread(_fresh_staging, cache_dir, prepared.key)
    try:
        on_progress(Progress("install", 5, "copying the template"))
        folders = await asyncio.to_thread(_copy_template, template_dir, staging)
        for index, name in enumerate(folders):
            low = 10 + 85 * index // len(folders)
            high = 10 + 85 * (index + 1) // len(folders)
            await _npm_install(staging / name, name, low, high, on_progress)
        await asyncio.to_thread(_publish, staging, prepared)
    except BaseException:
        await asyncio.shield(asyncio.to_thread(shutil.rmtree, staging, True))
        raise


def _fresh_staging(cache_dir: Path, key: str) -> Path:
    for stale in cache_dir.glob(f".{key}.*.tmp"):  # left by a process that died mid-install
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".tmp", dir=cache_dir))


def _publish(staging: Path, prepared: PreparedTemplate) -> None:
    (staging / MARKER).write_text(f"{prepared.version}\n{prepared.key}\n", encoding="utf-8")
    os.rename(staging, prepared.root)  # atomic: the copy appears whole or not at all


def _copy_template(source: Path, destination: Path) -> list[str]:
    """Copies the template; the folders among :data:`INSTALLED` that have npm dependencies."""
    shutil.copytree(
        source, destination, symlinks=True, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*SKIPPED)
    )
    return [name for name in INSTALLED if (destination / name / "package.json").is_file()]


async def _npm_install(folder: Path, name: str, low: int, high: int, on_progress: ProgressCallback) -> None:
    try:
        runtime = await asyncio.to_thread(node_runtime)
    except NodeUnavailable as exc:
        raise TemplateError(str(exc)) from None
    locked = (folder / "package-lock.json").is_file()
    command = "ci" if locked else "install"
    message = f"installing the {name} dependencies (npm {command})"
    on_progress(Progress("install", low, message))
    env = runtime.env()
    env.update(npm_config_fund="false", npm_config_audit="false", npm_config_update_notifier="false")
    process = await asyncio.create_subprocess_exec(
        str(runtime.npm),
        command,
        "--no-audit",
        "--no-fund",
        "--prefer-offline",
        cwd=folder,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = asyncio.ensure_future(process.communicate())
    percent = low
    try:
        while not output.done():
            await asyncio.wait([output], timeout=1.0)
            if not output.done() and percent < high - 1:
                percent += max(1, (high - percent) // 8)  # creeps towards the step's end
                on_progress(Progress("install", percent, message))
    except BaseException:
        if process.returncode is None:
            process.kill()
        await asyncio.shield(output)
        raise
    stdout, _ = output.result()
    if process.returncode != 0:
        tail = stdout.decode("utf-8", "replace")[-OUTPUT_TAIL:]
        raise TemplateError(f"npm {command} in {name}/ failed (exit {process.returncode}):\n{tail}")
    on_progress(Progress("install", high, f"installed the {name} dependencies"))
