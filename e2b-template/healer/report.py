"""Tells the cloud how the sandbox is: `POST $SHMASTRA_CLOUD_URL/api/sandbox/heal` with the sandbox's
virtual key, `{"status": "healing"|"ready"|"broken", "message": ...}`. A cloud that cannot be reached
never stops the healer: the failure is logged, and `last` keeps the last status the cloud DID receive,
so the healer's next check sends the current one again."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from log import log
from redact import redact
from settings import Settings

MAX_MESSAGE = 2000


class Reporter:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.last: tuple[str, str] | None = None

    def report(self, status: str, message: str) -> None:
        message = redact(message, self.settings.virtual_key)[:MAX_MESSAGE]
        log(f"report {status}: {message}")
        if not self.settings.cloud_url or self._send(status, message):
            self.last = (status, message)

    def _send(self, status: str, message: str) -> bool:
        body = json.dumps({"status": status, "message": message}).encode()
        request = urllib.request.Request(
            f"{self.settings.cloud_url}/api/sandbox/heal",
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self.settings.virtual_key}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
            return True
        except urllib.error.HTTPError as error:
            log(f"the cloud refused the report: HTTP {error.code}")
        except (OSError, ValueError) as error:
            log(f"the cloud could not be reached: {type(error).__name__}")
        return False
