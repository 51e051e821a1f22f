"""Decides, once per check, whether the app needs healing: a crash (pm2 says errored/stopped, or the
process is gone), two failed health checks one interval apart, a build stuck too long, or the app's
process tree exhausting memory (a share of the cgroup's limit, or of `HEALER_MEMORY_LIMIT_MB`) or CPU
(at least `HEALER_CPU_PERCENT` of one core for `HEALER_CPU_CHECKS` checks in a row)."""

from __future__ import annotations

import time
from pathlib import Path

import usage
from app import App, LogWatcher
from settings import Settings

DOWN = {"errored", "stopped", "stopping", "one-launch-status"}


def memory_limit(settings: Settings) -> int | None:
    if settings.memory_limit_mb > 0:
        return int(settings.memory_limit_mb * 2**20)
    for path in (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")):
        try:
            raw = path.read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 1 << 60:
            return int(raw)
    return None


class Detector:
    def __init__(self, settings: Settings, app: App) -> None:
        self.settings = settings
        self.app = app
        self.logs = LogWatcher(settings.app_log)
        self.failed_health = 0
        self.busy_checks = 0
        self.memory_limit = memory_limit(settings)
        self.cpu_sample: tuple[int, float, float] | None = None  # (pid, CPU seconds, at)

    def reset(self) -> None:
        self.failed_health = 0
        self.busy_checks = 0
        self.cpu_sample = None
        self.logs.reset()

    def check(self) -> tuple[str | None, bool]:
        """(the problem, or None; whether /health answered)."""
        self.logs.poll()
        process = self.app.process()
        healthy = self.app.healthy()
        if process is None:
            return "the app is not running under pm2", healthy
        if process.status in DOWN or (process.status == "online" and process.pid == 0):
            return f"the app crashed (pm2 status: {process.status})", healthy
        uptime = time.time() - process.started_at
        stuck = self.logs.stuck_for()
        if healthy:
            self.failed_health = 0
        elif stuck > 0:  # a build is under way: its own limit applies, not the health checks'
            # the first build after a start may take the start-up grace (a big project's cold bundle)
            if stuck > self.settings.build_stuck and uptime > self.settings.startup_grace:
                return f"the dev build has been stuck for {stuck:.0f} s", healthy
        elif uptime > self.settings.startup_grace:
            self.failed_health += 1
            if self.failed_health >= 2:
                return "GET /health failed twice in a row", healthy
        return self._exhausted(process.pid), healthy

    def _exhausted(self, pid: int) -> str | None:
        memory, cpu_seconds = usage.usage(pid)
        now = time.monotonic()
        cpu = 0.0
        if self.cpu_sample is not None and self.cpu_sample[0] == pid and now > self.cpu_sample[2]:
            cpu = 100 * (cpu_seconds - self.cpu_sample[1]) / (now - self.cpu_sample[2])
        self.cpu_sample = (pid, cpu_seconds, now)
        if self.memory_limit and memory > self.memory_limit * self.settings.memory_percent / 100:
            share = f"{self.settings.memory_percent:.0f} %"
            return f"the app uses {memory // 2**20} MiB, over {share} of the memory limit"
        self.busy_checks = self.busy_checks + 1 if cpu >= self.settings.cpu_percent else 0
        if self.busy_checks >= self.settings.cpu_checks:
            self.busy_checks = 0
            return f"the app has used {cpu:.0f} % CPU for {self.settings.cpu_checks} checks in a row"
        return None
