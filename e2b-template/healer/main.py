"""The healer: runs beside the app under pm2, watches it, and heals it.

A problem (see detect.py) is first met with a restart; if that does not bring `/health` back (or the
last restart-heal was recent), up to `HEALER_MAX_ATTEMPTS` (3) repair attempts follow, each a model
conversation through the cloud gateway whose changes are committed in the project's git history. After
the last failed attempt the healer reports `broken` with a summary and turns passive: it only reports
health from then on. `pm2 restart healer` (what the cloud runs for "retry") starts a fresh healer.
Python standard library only.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from types import FrameType

import gitrepo
import repair
import sandbox_env
from app import App
from detect import Detector
from log import log
from redact import redact
from report import Reporter
from settings import Settings
from tools import Toolbox


class Healer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = App(settings)
        self.detector = Detector(settings, self.app)
        self.reporter = Reporter(settings)
        self.toolbox = Toolbox(settings, self.app)
        self.passive = False
        self.last_restart_heal = float("-inf")

    def run(self) -> None:
        log(f"watching {self.settings.app_name} on port {self.settings.port}")
        if self.settings.project.is_dir():
            gitrepo.ensure_repository(self.settings.project)
        while True:
            try:
                self.step()
            except Exception as error:  # one failed check must not end the watch (or reset attempts)
                log(f"a check failed: {type(error).__name__}: {error}")
            time.sleep(self.settings.interval)

    def step(self) -> None:
        problem, healthy = self.detector.check()
        if self.passive:
            self._report_health(healthy)
        elif problem is not None:
            self.heal(problem)
        elif healthy and (self.reporter.last is None or self.reporter.last[0] != "ready"):
            self.reporter.report("ready", "the app answers /health")

    def _report_health(self, healthy: bool) -> None:
        status = "ready" if healthy else "broken"
        if self.reporter.last is None or self.reporter.last[0] != status:
            message = (
                "the app answers /health"
                if healthy
                else "the app does not answer /health (the healer gave up; retry to try again)"
            )
            self.reporter.report(status, message)

    def heal(self, problem: str) -> None:
        if time.monotonic() - self.last_restart_heal > self.settings.stable:
            self.reporter.report("healing", f"{problem}; restarting the app")
            if self._restart_and_wait():
                self.last_restart_heal = time.monotonic()
                self.reporter.report("ready", f"restarted after: {problem}")
                return
            problem = f"{problem}; a restart did not help"
        tried: list[str] = []
        for number in range(1, self.settings.max_attempts + 1):
            self.reporter.report(
                "healing", f"repair attempt {number} of {self.settings.max_attempts}: {problem}"
            )
            tail = self.app.log_tail()
            summary = redact(
                repair.attempt(self.settings, self.toolbox, problem, tail, number), self.settings.virtual_key
            )
            commit = gitrepo.commit(self.settings.project, f"healer: attempt {number}: {summary}"[:400])
            tried.append(f"attempt {number}: {summary}" + (f" (commit {commit[:10]})" if commit else ""))
            if self._restart_and_wait():
                self.last_restart_heal = time.monotonic()
                self.reporter.report("ready", f"repaired on attempt {number}: {summary}")
                return
            problem = f"the app is still not healthy after attempt {number}"
        self.passive = True
        self.reporter.report(
            "broken", "gave up after {} attempts. {}".format(self.settings.max_attempts, " | ".join(tried))
        )

    def _restart_and_wait(self) -> bool:
        log(self.app.restart())
        healthy = self.app.wait_healthy(self.settings.restart_wait)
        self.detector.reset()
        return healthy


def _stop(_signum: int, _frame: FrameType | None) -> None:
    sys.exit(0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    sandbox_env.load(os.environ)
    Healer(Settings.from_env()).run()
