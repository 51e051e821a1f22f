"""Values that came from the environment stay out of messages.

``proxy.toml`` takes secrets from the environment (``${COOKIE_SECRET}``). Loading a config remembers
every such value here, and configuration errors, log lines and ``/readyz`` details pass through
:func:`redact`, which replaces each remembered value with ``***``, wherever it appears (whole, or as
part of a longer text such as a URL or an exception's message).

Public-looking values are not remembered, so the start-up banner can still say where the proxy
listens and who may sign in: numbers, ``true``/``false``, values shorter than :data:`MIN_LENGTH`,
plain email addresses, and ``http(s)`` URLs without credentials or query (a ``public_url``).
Anything else from the environment is treated as a secret. Configuration errors are stricter still:
they never echo a value that came from the environment, whatever its shape (see
:mod:`proxy_core.config`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

MIN_LENGTH = 6
"""Shorter values (a port, ``info``, ``json``) would redact ordinary words; they are no secrets."""

MASK = "***"

_EMAIL = re.compile(r"[^@\s:/]+@[^@\s:/]+\.[^@\s:/]+")
_remembered: set[str] = set()
_pattern: re.Pattern[str] | None = None


def remember(values: Iterable[str]) -> None:
    """Treat ``values`` (from the environment) as secrets in every later message."""
    global _pattern
    added = {v for v in values if _secret_like(v)} - _remembered
    if added:
        _remembered.update(added)
        # longest first, so a value that contains another is replaced whole
        alternatives = sorted(_remembered, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(v) for v in alternatives))


def redact(text: str) -> str:
    """``text`` with every remembered value replaced by ``***``."""
    if _pattern is None:
        return text
    return _pattern.sub(MASK, text)


def redact_values(text: str, values: Iterable[str]) -> str:
    """``text`` with each of ``values`` (whatever their length) replaced by ``***``, longest first."""
    for value in sorted({v for v in values if v}, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def _secret_like(value: str) -> bool:
    if len(value) < MIN_LENGTH or value.lower() in ("true", "false"):
        return False
    try:
        float(value)
    except ValueError:
        pass
    else:
        return False
    if _EMAIL.fullmatch(value):
        return False
    if value.startswith(("http://", "https://")):
        parts = urlsplit(value)
        return bool(parts.username or parts.password or parts.query or parts.fragment)
    return True
