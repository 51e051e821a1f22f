"""A user's sandbox folder (``$SANDBOX_HOME`` for the local provider), made cheaply from a prepared
template: nothing is installed per user.

Layout: ``shmastra/`` (the project: its files copied, ``node_modules`` a symlink into the prepared
copy), the template's scripts (``start.sh``, ``ecosystem.config.js``, ``healer/``: hard links where the
file system allows, copies otherwise), ``runtime`` (a symlink: pm2, shared) and ``.template-version``.

The project's own files are copied, not hard-linked: the user and the healer edit them, and an in-place
write through a hard link would change the prepared copy, and so every other user's project.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .prepare import MARKER, PreparedTemplate

PROJECT = "shmastra"
VERSION_FILE = ".template-version"
NOT_COPIED = {MARKER, "VERSION", "template.py", "README.md", "app", "runtime"}


def populate_workspace(prepared: PreparedTemplate, workspace: Path) -> None:
    """Fill ``workspace`` from ``prepared``. An existing project is kept as it is (it is the user's);
    the scripts are refreshed and ``.template-version`` names ``prepared``'s version."""
    workspace.mkdir(parents=True, exist_ok=True)
    for entry in sorted(prepared.root.iterdir()):
        if entry.name in NOT_COPIED:
            continue
        destination = workspace / entry.name
        _remove(destination)
        if entry.is_dir():
            shutil.copytree(entry, destination, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, destination)
    runtime = workspace / "runtime"
    _remove(runtime)
    if (prepared.root / "runtime").is_dir():
        runtime.symlink_to(prepared.root / "runtime", target_is_directory=True)
    project = workspace / PROJECT
    if not project.exists() and (prepared.root / "app").is_dir():
        _copy_project(prepared.root / "app", project)
    (workspace / VERSION_FILE).write_text(f"{prepared.version}\n", encoding="utf-8")


def _copy_project(app: Path, project: Path) -> None:
    shutil.copytree(app, project, symlinks=True, ignore=shutil.ignore_patterns("node_modules"))
    if (app / "node_modules").is_dir():
        (project / "node_modules").symlink_to(app / "node_modules", target_is_directory=True)


def _link_or_copy(source: str | Path, destination: str | Path) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
