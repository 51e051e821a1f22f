"""The healer's own log lines (stdout, which pm2 keeps), always redacted."""

from __future__ import annotations

import os
import sys
import time

from redact import redact


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    line = redact(message, os.environ.get("SHMASTRA_VIRTUAL_KEY", ""))
    print(f"{stamp} healer: {line}", file=sys.stdout, flush=True)
