"""What the healer knows about the app: its pm2 process (`pm2 jlist`), `GET /health` on $PORT, and its
log; and the one thing it does to it without the model, `pm2 restart`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from settings import Settings

BUILD_START = re.compile(r"Preparing development environment|Bundling|Rebuilding|Restarting server|Building")
LOOKBACK = 64 * 1024
BUILD_END = re.compile(r"ready in|bundle complete|Server restarted|Build complete|listening", re.I)


@dataclass(frozen=True)
class ProcessInfo:
    status: str  # pm2's: online, stopping, stopped, launching, errored, one-launch-status
    pid: int
    restarts: int
    started_at: float  # epoch seconds


class App:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def process(self) -> ProcessInfo | None:
        """The app's pm2 entry, or None when pm2 does not know it (or cannot be asked)."""
        try:
            done = subprocess.run(
                [self.settings.pm2, "jlist"], capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        out = done.stdout
        start = out.find("[")
        try:
            entries = json.loads(out[start:]) if start >= 0 else []
        except json.JSONDecodeError:
            return None
        for entry in entries:
            if entry.get("name") != self.settings.app_name:
                continue
            env = entry.get("pm2_env") or {}
            return ProcessInfo(
                status=str(env.get("status", "unknown")),
                pid=int(entry.get("pid") or 0),
                restarts=int(env.get("restart_time") or 0),
                started_at=float(env.get("pm_uptime") or 0) / 1000,
            )
        return None

    def healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.settings.port}/health"
            with urllib.request.urlopen(url, timeout=5) as response:
                return 200 <= int(response.status) < 300
        except (OSError, ValueError):
            return False

    def restart(self) -> str:
        """`pm2 restart <app>` (pm2 kills the whole process tree first); pm2's verdict as text."""
        try:
            done = subprocess.run(
                [self.settings.pm2, "restart", self.settings.app_name],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"pm2 restart failed: {type(error).__name__}"
        return "restarted" if done.returncode == 0 else f"pm2 restart exited {done.returncode}"

    def wait_healthy(self, limit: float) -> bool:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.healthy():
                return True
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        return self.healthy()

    def log_tail(self, max_lines: int = 150, max_bytes: int = 16000) -> str:
        try:
            with self.settings.app_log.open("rb") as file:
                file.seek(0, os.SEEK_END)
                size = file.tell()
                file.seek(max(0, size - max_bytes))
                text = file.read().decode("utf-8", "replace")
        except OSError:
            return "(no app log yet)"
        return "\n".join(text.splitlines()[-max_lines:])


class LogWatcher:
    """Follows the app log for builds: one that started and did not end within the limit is stuck."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # the app may have started its build before the healer: read the log's recent past too
        self.offset = max(0, path.stat().st_size - LOOKBACK) if path.exists() else 0
        self.build_started: float | None = None

    def poll(self) -> None:
        try:
            with self.path.open("rb") as file:
                size = file.seek(0, os.SEEK_END)
                if size < self.offset:  # rotated or truncated
                    self.offset = 0
                file.seek(self.offset)
                chunk = file.read()
                self.offset = file.tell()
        except OSError:
            return
        for line in chunk.decode("utf-8", "replace").splitlines():
            if BUILD_END.search(line):
                self.build_started = None
            elif BUILD_START.search(line) and self.build_started is None:
                self.build_started = time.monotonic()

    def stuck_for(self) -> float:
        return 0.0 if self.build_started is None else time.monotonic() - self.build_started

    def reset(self) -> None:
        self.build_started = None
