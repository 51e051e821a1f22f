"""The project's git history, so a person can see and revert what the healer changed."""

from __future__ import annotations

import subprocess
from pathlib import Path

IDENTITY = ["-c", "user.name=Shmastra healer", "-c", "user.email=healer@shmastra.invalid"]


def _git(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``git ARGS`` in the project; a missing or hanging git is a failed command, never a crash."""
    try:
        return subprocess.run(
            ["git", *IDENTITY, *args], cwd=project, capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return subprocess.CompletedProcess(["git", *args], 127, "", f"git failed: {type(error).__name__}")


def ensure_repository(project: Path) -> None:
    """Make the project a repository with a first commit of its files, if it is not one yet."""
    if (project / ".git").exists():
        return
    _git(project, "init", "-q")
    commit(project, "baseline: the project before the healer changed anything")


def commit(project: Path, message: str) -> str | None:
    """Commit every change; the new commit's id, or None when nothing changed."""
    _git(project, "add", "-A")
    if _git(project, "diff", "--cached", "--quiet").returncode == 0:
        return None
    if _git(project, "commit", "-q", "-m", message).returncode != 0:
        return None
    return _git(project, "rev-parse", "HEAD").stdout.strip() or None
