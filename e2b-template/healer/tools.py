"""The repair model's tools. Every path is resolved inside the project and refused otherwise (no `..`,
no absolute path, no symlink leading out, nothing under `.git`); commands run in the project with a
bounded time and without the sandbox's keys in their environment; all output is redacted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from app import App
from redact import redact
from settings import Settings

SKIP_DIRS = {"node_modules", ".git", ".mastra", "dist"}
MAX_READ = 100_000
MAX_OUTPUT = 8_000
MAX_LIST = 500
MAX_WAIT = 60.0

SCHEMAS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": list(required)},
        },
    }
    for name, description, properties, required in [
        (
            "list_files",
            "List the project's files (recursively, without node_modules/.git).",
            {"path": {"type": "string", "description": "folder relative to the project; default ."}},
            [],
        ),
        ("read_file", "Read a text file of the project.", {"path": {"type": "string"}}, ["path"]),
        (
            "write_file",
            "Write (create or replace) a text file of the project.",
            {"path": {"type": "string"}, "content": {"type": "string"}},
            ["path", "content"],
        ),
        (
            "run_command",
            "Run a shell command in the project folder and return its exit code and output.",
            {"command": {"type": "string"}, "timeout_seconds": {"type": "number"}},
            ["command"],
        ),
        ("restart_app", "Restart the app's dev server.", {}, []),
        (
            "wait",
            "Wait, then return whether the app answers /health and its latest log lines.",
            {"seconds": {"type": "number"}},
            ["seconds"],
        ),
        (
            "finish",
            "Stop working and say what you found and changed.",
            {"summary": {"type": "string"}},
            ["summary"],
        ),
    ]
]


class Refused(Exception):
    """A tool call the healer will not carry out; its message goes back to the model."""


class Toolbox:
    def __init__(self, settings: Settings, app: App) -> None:
        self.settings = settings
        self.app = app
        self.root = settings.project.resolve()
        self.finished: str | None = None

    def call(self, name: str, raw_arguments: str) -> str:
        try:
            arguments = json.loads(raw_arguments or "{}")
            if not isinstance(arguments, dict):
                raise Refused("arguments must be a JSON object")
            handler = getattr(self, f"_tool_{name}", None)
            if handler is None:
                raise Refused(f"unknown tool {name!r}")
            result = str(handler(**arguments))
        except Refused as refusal:
            result = f"refused: {refusal}"
        except TypeError as error:
            result = f"error: bad arguments for {name}: {error}"
        except (OSError, ValueError, UnicodeDecodeError) as error:
            result = f"error: {type(error).__name__}: {error}"
        return redact(result, self.settings.virtual_key)

    def inside(self, path: str) -> Path:
        if not isinstance(path, str) or not path or "\x00" in path:
            raise Refused("a path inside the project is required")
        target = (self.root / path).resolve()
        if target != self.root and self.root not in target.parents:
            raise Refused(f"{path!r} is outside the project")
        relative = target.relative_to(self.root)
        if relative.parts and relative.parts[0] == ".git":
            raise Refused("the project's git history is not editable")
        return target

    def _tool_list_files(self, path: str = ".") -> str:
        base = self.inside(path)
        found: list[str] = []
        for folder, dirs, files in os.walk(base):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
            for name in sorted(files):
                found.append(str((Path(folder) / name).relative_to(self.root)))
                if len(found) >= MAX_LIST:
                    return "\n".join([*found, "(more files not listed)"])
        return "\n".join(found) or "(no files)"

    def _tool_read_file(self, path: str) -> str:
        data = self.inside(path).read_bytes()
        text = data[:MAX_READ].decode("utf-8", "replace")
        return text + ("\n(truncated)" if len(data) > MAX_READ else "")

    def _tool_write_file(self, path: str, content: str) -> str:
        target = self.inside(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.healer-tmp")
        temporary.write_text(content, encoding="utf-8")
        os.replace(temporary, target)  # a new file: never writes through a shared (hard-linked) one
        return f"wrote {len(content.encode())} bytes to {target.relative_to(self.root)}"

    def _tool_run_command(self, command: str, timeout_seconds: float = 60) -> str:
        limit = max(1.0, min(float(timeout_seconds), self.settings.command_timeout))
        secrets = {self.settings.virtual_key} - {""}
        env = {k: v for k, v in os.environ.items() if v not in secrets and not k.endswith("_API_KEY")}
        env.pop("SHMASTRA_VIRTUAL_KEY", None)
        process = subprocess.Popen(
            command,
            shell=True,
            cwd=self.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the command and everything it started
            process.communicate()
            return f"timed out after {limit:.0f} s"
        return f"exit code {process.returncode}\n{output[-MAX_OUTPUT:]}"

    def _tool_restart_app(self) -> str:
        return self.app.restart()

    def _tool_wait(self, seconds: float) -> str:
        time.sleep(max(0.0, min(float(seconds), MAX_WAIT)))
        state = "healthy" if self.app.healthy() else "NOT healthy"
        return f"the app is {state}\nlatest log lines:\n{self.app.log_tail(max_lines=40, max_bytes=4000)}"

    def _tool_finish(self, summary: str) -> str:
        self.finished = str(summary)
        return "ok"
