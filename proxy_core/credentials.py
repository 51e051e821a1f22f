"""Credentials the proxy consumes itself never leave it.

A stage that authenticates clients with a cookie or a header (a session cookie, a sign-in flow
cookie, an API token) declares them with :meth:`Stage.owned_credentials`. The app merges every
stage's declaration into the shared :class:`Forwarder`, which removes them from every request it
builds for an upstream, plain HTTP and WebSocket handshakes alike. Other cookies and headers of the
application pass untouched (an upstream's own session cookie keeps working).

Upstream answers cannot set those cookies either: a ``Set-Cookie`` naming one is dropped.

Header names are compared case-insensitively and with ``_`` equal to ``-`` (some servers treat
``X_User`` as ``X-User``); a prefix such as ``X-Cloud-`` owns every header starting with it, which is
how identity headers the proxy sets for upstreams stay unforgeable by clients.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from multidict import CIMultiDict


def header_key(name: str) -> str:
    """The form header names are compared in: lower case, ``_`` read as ``-``."""
    return name.lower().replace("_", "-")


@dataclass(frozen=True, slots=True)
class OwnedCredentials:
    """Cookie names and header names (or name prefixes) that belong to the proxy, not to upstreams."""

    cookies: frozenset[str] = frozenset()
    headers: frozenset[str] = frozenset()
    header_prefixes: tuple[str, ...] = ()
    # compiled once: the hot path is one regex search over the joined header names, and one
    # substitution in the Cookie header
    _names: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    _cookie: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        def loose(name: str) -> str:
            return "[-_]".join(re.escape(part) for part in name.split("-"))

        names = [loose(h) + "$" for h in sorted(self.headers)] + [loose(p) for p in self.header_prefixes]
        if names:
            pattern = re.compile("^(?:" + "|".join(names) + ")", re.IGNORECASE | re.MULTILINE)
            object.__setattr__(self, "_names", pattern)
        if self.cookies:
            alternatives = "|".join(re.escape(c) for c in sorted(self.cookies, key=len, reverse=True))
            object.__setattr__(self, "_cookie", re.compile(rf"(?:^|(?<=;))\s*(?:{alternatives})=[^;]*;?"))

    @classmethod
    def of(
        cls,
        *,
        cookies: Iterable[str] = (),
        headers: Iterable[str] = (),
        header_prefixes: Iterable[str] = (),
    ) -> OwnedCredentials:
        return cls(
            frozenset(cookies),
            frozenset(header_key(h) for h in headers),
            tuple(sorted({header_key(p) for p in header_prefixes})),
        )

    def __or__(self, other: OwnedCredentials) -> OwnedCredentials:
        return OwnedCredentials(
            self.cookies | other.cookies,
            self.headers | other.headers,
            tuple(sorted(set(self.header_prefixes) | set(other.header_prefixes))),
        )

    def __bool__(self) -> bool:
        return bool(self.cookies or self.headers or self.header_prefixes)

    def owns_header(self, name: str) -> bool:
        return _owns(self, name)  # names repeat on every request: the verdicts are cached

    def strip(self, headers: CIMultiDict[str]) -> None:
        """Remove owned headers, and owned cookies from every ``Cookie`` header, in place."""
        if self._names is not None and _mentions(self._names, "\n".join(headers)):  # rare: a client sent one
            for name in [name for name in headers if _owns(self, name)]:
                headers.popall(name, None)
        if self._cookie is not None and "Cookie" in headers:
            values = headers.getall("Cookie")
            kept = [_without_owned(self, value) for value in values]
            if kept != values:
                headers.popall("Cookie")
                for value in kept:
                    if value:
                        headers.add("Cookie", value)

    def drop_set_cookies(self, items: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Response headers minus ``Set-Cookie`` of an owned cookie: an upstream (a sandbox running
        agent code) must not plant or overwrite the proxy's session (session fixation)."""
        if not self.cookies:
            return items
        return [
            (name, value)
            for name, value in items
            if name.lower() != "set-cookie" or value.split("=", 1)[0].strip() not in self.cookies
        ]

    def drop_raw_set_cookies(self, items: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """:meth:`drop_set_cookies` for headers still in bytes."""
        if not self.cookies:
            return items
        return [
            (name, value)
            for name, value in items
            if len(name) != 10
            or name.lower() != b"set-cookie"
            or value.split(b"=", 1)[0].strip().decode("latin-1") not in self.cookies
        ]


@lru_cache(maxsize=1024)
def _without_owned(owned: OwnedCredentials, value: str) -> str:
    """``value`` (a ``Cookie`` header) minus owned cookies; the others are kept byte for byte, in their
    order. Cached: a browser sends the same header on every request."""
    assert owned._cookie is not None
    stripped = owned._cookie.sub("", value)
    return value if stripped == value else stripped.strip().rstrip(";").rstrip()


@lru_cache(maxsize=1024)
def _mentions(names: re.Pattern[str], joined: str) -> bool:
    """Whether the joined header names of a request include an owned one. Cached: a client sends the
    same names on every request (a dict look-up beats the case-insensitive search)."""
    return names.search(joined) is not None


@lru_cache(maxsize=4096)
def _owns(owned: OwnedCredentials, name: str) -> bool:
    key = header_key(name)
    return key in owned.headers or key.startswith(owned.header_prefixes)
