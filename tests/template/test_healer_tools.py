"""The repair model's tools, called directly: every path stays inside the project, commands run
bounded and without the sandbox's keys, and nothing the model reads back carries the virtual key."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from plugins.sandbox_router.template import BUNDLED_TEMPLATE_DIR

from .conftest import VIRTUAL_KEY

HEALER = BUNDLED_TEMPLATE_DIR / "healer"
MODULES = [path.stem for path in HEALER.glob("*.py")]


@pytest.fixture
def healer(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The healer's ``tools`` module, imported from the template (its modules import each other by
    their bare names, as pm2 runs them), and forgotten afterwards."""
    monkeypatch.syspath_prepend(str(HEALER))
    for name in MODULES:
        sys.modules.pop(name, None)
    yield importlib.import_module("tools")
    for name in MODULES:
        sys.modules.pop(name, None)


@pytest.fixture
def toolbox(healer: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    home = tmp_path / "home"
    project = home / "shmastra"
    (project / "src").mkdir(parents=True)
    (project / "src" / "index.ts").write_text("export const x = 1;\n")
    (project / ".git").mkdir()
    (project / ".git" / "config").write_text("[core]\n")
    (home / "secret.txt").write_text("outside\n")
    os.symlink(home, project / "node_modules")
    monkeypatch.setenv("SANDBOX_HOME", str(home))
    monkeypatch.setenv("SHMASTRA_VIRTUAL_KEY", VIRTUAL_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", VIRTUAL_KEY)
    monkeypatch.setenv("HEALER_COMMAND_TIMEOUT", "2")
    settings = importlib.import_module("settings").Settings.from_env()
    app = importlib.import_module("app").App(settings)
    return healer.Toolbox(settings, app)


def call(toolbox: Any, name: str, **arguments: Any) -> str:
    result: str = toolbox.call(name, json.dumps(arguments))
    return result


@pytest.mark.parametrize(
    "path",
    ["../secret.txt", "/etc/passwd", "src/../../secret.txt", "node_modules/secret.txt", ".git/config", ""],
)
def test_paths_outside_the_project_are_refused(toolbox: Any, path: str) -> None:
    for name, extra in [("read_file", {}), ("write_file", {"content": "x"}), ("list_files", {})]:
        assert call(toolbox, name, path=path, **extra).startswith("refused:")
    assert (toolbox.root.parent / "secret.txt").read_text() == "outside\n"
    assert (toolbox.root / ".git" / "config").read_text() == "[core]\n"


def test_files_inside_the_project_can_be_listed_read_and_written(toolbox: Any) -> None:
    assert call(toolbox, "list_files") == "src/index.ts"  # node_modules and .git are not listed
    assert call(toolbox, "read_file", path="src/index.ts") == "export const x = 1;\n"
    original = toolbox.root / "src" / "index.ts"
    shared = toolbox.root.parent / "shared-copy.ts"
    os.link(original, shared)  # as if hard-linked from a shared copy
    assert call(toolbox, "write_file", path="src/index.ts", content="export const x = 2;\n") == (
        "wrote 20 bytes to src/index.ts"
    )
    assert original.read_text() == "export const x = 2;\n"
    assert shared.read_text() == "export const x = 1;\n"  # replaced, never written through
    assert (
        call(toolbox, "write_file", path="src/new/deep.ts", content="") == "wrote 0 bytes to src/new/deep.ts"
    )


def test_commands_run_in_the_project_without_the_keys(toolbox: Any) -> None:
    out = call(toolbox, "run_command", command='pwd; echo "[$SHMASTRA_VIRTUAL_KEY][$OPENAI_API_KEY]"')
    assert out == f"exit code 0\n{toolbox.root}\n[][]\n"
    leaked = call(toolbox, "run_command", command=f"echo {VIRTUAL_KEY}; exit 4")
    assert leaked == "exit code 4\n[redacted]\n"


def test_a_command_is_stopped_at_its_time_limit_with_everything_it_started(toolbox: Any) -> None:
    toolbox.settings = dataclasses.replace(toolbox.settings, command_timeout=5)
    command = "sleep 30 & echo $! > bg.pid; sleep 30; echo never"
    assert call(toolbox, "run_command", command=command, timeout_seconds=60) == "timed out after 5 s"
    background = int((toolbox.root / "bg.pid").read_text())
    for _ in range(100):  # SIGKILL went to the whole process group; the kernel ends it promptly
        if _gone(background):
            break
        time.sleep(0.05)
    assert _gone(background)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # a zombie until reaped


def test_bad_calls_are_answered_not_raised(toolbox: Any) -> None:
    assert call(toolbox, "format_disk") == "refused: unknown tool 'format_disk'"
    assert toolbox.call("read_file", "not json").startswith("error: JSONDecodeError")
    assert toolbox.call("read_file", "[1]") == "refused: arguments must be a JSON object"
    assert call(toolbox, "read_file", path="missing.ts").startswith("error: FileNotFoundError")
    assert call(toolbox, "read_file").startswith("error: bad arguments for read_file")
    assert call(toolbox, "finish", summary="done") == "ok" and toolbox.finished == "done"
