"""Keeps the virtual key (and any other `vk_…` key) out of everything the healer prints or sends."""

from __future__ import annotations

import re

_VIRTUAL_KEY = re.compile(r"vk_[A-Za-z0-9_-]{6,}")


def redact(text: str, *secrets: str) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return _VIRTUAL_KEY.sub("vk_[redacted]", text)
