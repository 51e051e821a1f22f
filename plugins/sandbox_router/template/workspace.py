"""A user's sandbox folder (``$SANDBOX_HOME`` for the local provider), made cheaply from a prepared
template: nothing is installed per user.

Layout: ``shmastra/`` (the project: the template's ``app/``, or a ``shmastra/`` it ships as is; its
files copied, ``node_modules`` a symlink into the prepared copy), the template's scripts (``start.sh``,
``env.sh``, ``pm2.sh``, ``ecosystem.config.js``, ``healer/``, copied), ``runtime`` (a symlink: pm2,
shared) and ``.template-version``.

The heavy part, the installed dependencies, is shared through symlinks; the few kilobytes of files are
copied rather than hard-linked, because an in-place write through a hard link (the user's editor, the
healer, a test's file browser) would change the prepared copy, and so every other user's workspace.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .prepare import MARKER, PreparedTemplate

PROJECT = "shmastra"
VERSION_FILE = ".template-version"
NOT_COPIED = {MARKER, "VERSION", "template.py", "README.md", "app", "runtime", PROJECT}


def populate_workspace(prepared: PreparedTemplate, workspace: Path) -> None:
    """Fill ``workspace`` from ``prepared``. An existing project is kept as it is (it is the user's);
    the scripts are refreshed and ``.template-version`` names ``prepared``'s version."""
    workspace.mkdir(parents=True, exist_ok=True)
    for entry in sorted(prepared.root.iterdir()):
        if entry.name in NOT_COPIED:
            continue
        destination = workspace / entry.name
        _remove(destination)
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, destination, symlinks=True)
        else:
            shutil.copy2(entry, destination, follow_symlinks=False)
    runtime = workspace / "runtime"
    _remove(runtime)
    if (prepared.root / "runtime").is_dir():
        runtime.symlink_to(prepared.root / "runtime", target_is_directory=True)
    project = workspace / PROJECT
    for source in (prepared.root / "app", prepared.root / PROJECT):
        if source.is_dir() and not project.exists():
            _copy_project(source, project)
    (workspace / VERSION_FILE).write_text(f"{prepared.version}\n", encoding="utf-8")


def _copy_project(source: Path, project: Path) -> None:
    shutil.copytree(source, project, symlinks=True, ignore=shutil.ignore_patterns("node_modules"))
    if (source / "node_modules").is_dir():
        (project / "node_modules").symlink_to(source / "node_modules", target_is_directory=True)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
