"""The sandbox's own settings when its template was snapshotted with everything already running (E2B):
a snapshot cannot hold them, so the cloud writes them to ``$SHMASTRA_ENV_FILE`` (one JSON object of
strings) right after creating the sandbox, and the healer waits for that file before it reads its
settings (the app's server does the same: ``sandbox-env.mjs``). Without ``$SHMASTRA_ENV_FILE`` the
environment is used as it is."""

from __future__ import annotations

import json
import time
from collections.abc import MutableMapping
from pathlib import Path

POLL_SECONDS = 0.2


def load(env: MutableMapping[str, str]) -> None:
    """Merge the file's values into ``env``, waiting until the file exists (and is whole)."""
    path = env.get("SHMASTRA_ENV_FILE")
    if not path:
        return
    while True:
        try:
            values = json.loads(Path(path).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):  # not there yet, or still being written
            time.sleep(POLL_SECONDS)
            continue
        break
    env.update({name: value for name, value in values.items() if isinstance(value, str)})
