"""A stop-gap for the template helpers' ``plugins.sandbox_router.template`` (``prepare``,
``populate_workspace``, ``node_runtime``, ``PreparedTemplate``, ``TemplateError``,
``NodeUnavailable``) with the same names and shapes, so the local provider swaps to it with one import
line at merge.

This version installs nothing (what the fast tests' stand-in template needs): ``prepare`` copies a
template once per ``VERSION`` into the cache, ``populate_workspace`` copies the prepared tree into a
workspace and writes ``.template-version``, ``node_runtime`` finds a system ``node``.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

from .base import Progress, ProgressCallback


class TemplateError(Exception):
    """The template folder is unusable."""


class NodeUnavailable(Exception):
    """No Node.js to run."""


@dataclass(frozen=True, slots=True)
class PreparedTemplate:
    root: Path
    version: str
    key: str


@dataclass(frozen=True, slots=True)
class NodeRuntime:
    bin_dir: Path


async def prepare(template_dir: Path, cache_dir: Path, on_progress: ProgressCallback) -> PreparedTemplate:
    try:
        version = (template_dir / "VERSION").read_text().strip()
    except OSError as exc:
        raise TemplateError(
            f"{template_dir}/VERSION: cannot read the template version ({exc.strerror})"
        ) from None
    target = cache_dir / version
    if not target.is_dir():
        on_progress(Progress("prepare", 10, f"Preparing template {version}"))
        staging = cache_dir / f".{version}.staging"
        await asyncio.to_thread(_copy_fresh, template_dir, staging)
        try:
            staging.rename(target)
        except OSError:  # another worker finished first: theirs is as good as ours
            await asyncio.to_thread(shutil.rmtree, staging, True)
    return PreparedTemplate(target, version, version)


def populate_workspace(prepared: PreparedTemplate, workspace: Path) -> None:
    shutil.copytree(prepared.root, workspace, symlinks=True, dirs_exist_ok=True)
    (workspace / ".template-version").write_text(prepared.version + "\n")


def node_runtime() -> NodeRuntime:
    node = shutil.which("node")
    if node is None:
        raise NodeUnavailable("no Node.js on PATH")
    return NodeRuntime(Path(node).parent)


def _copy_fresh(source: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target, symlinks=True)
