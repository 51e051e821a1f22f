"""What the stage decides before it looks for a session: which paths are public, and which client
headers must go because they could pass for an identity."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from aiohttp import web
from multidict import CIMultiDict

from proxy_core.credentials import header_key


class PublicPaths:
    """Exact paths, and prefixes written with a trailing ``*``. A path with dot segments or empty
    segments is never public: the forwarder sends the raw path, and an upstream that normalises
    ``/static/../admin`` must not receive it unauthenticated."""

    def __init__(self, patterns: Iterable[str]) -> None:
        patterns = tuple(patterns)
        self._exact = frozenset(p for p in patterns if not p.endswith("*"))
        self._prefixes = tuple(p[:-1] for p in patterns if p.endswith("*"))

    def __contains__(self, path: str) -> bool:
        if path in self._exact:
            return _clean(path)
        return path.startswith(self._prefixes) and _clean(path)  # a tuple: one C-level call


def _clean(path: str) -> bool:
    segments = path.split("/")[1:]
    return all(s not in (".", "..") for s in segments) and "" not in segments[:-1]


class HeaderStripper:
    """Removes identity-looking headers (``X-Auth-*``, the usual ``X-Forwarded-User`` family, and every
    header under the prefix the cloud's own identity headers use). Names compare case-insensitively
    and with ``_`` equal to ``-``: ``X_Forwarded_User`` is ``X-Forwarded-User`` to many servers."""

    def __init__(self, patterns: Iterable[str]) -> None:
        patterns = tuple(header_key(p) for p in patterns)
        self._exact = frozenset(p for p in patterns if not p.endswith("*"))
        self._prefixes = tuple(p[:-1] for p in patterns if p.endswith("*"))
        self._matches = lru_cache(maxsize=4096)(self._match)  # names repeat on every request

    def _match(self, name: str) -> bool:
        name = header_key(name)
        return name in self._exact or name.startswith(self._prefixes)

    def __call__(self, request: web.Request) -> web.Request:
        """``request`` itself when it carries none (the common case), else a copy without them."""
        if not any(map(self._matches, request.headers)):
            return request
        kept = CIMultiDict((k, v) for k, v in request.headers.items() if not self._matches(k))
        return request.clone(headers=kept)
