"""Credentials the proxy consumes itself never leave it.

A stage that authenticates clients with a cookie or a header (a session cookie, a sign-in flow
cookie, an API token) declares them with :meth:`Stage.owned_credentials`. The app merges every
stage's declaration into the shared :class:`Forwarder`, which removes them from every request it
builds for an upstream, plain HTTP and WebSocket handshakes alike. Other cookies and headers of the
application pass untouched (an upstream's own session cookie keeps working).

Header names are compared case-insensitively and with ``_`` equal to ``-`` (some servers treat
``X_User`` as ``X-User``); a prefix such as ``X-Cloud-`` owns every header starting with it, which is
how identity headers the proxy sets for upstreams stay unforgeable by clients.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

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
        key = header_key(name)
        return key in self.headers or key.startswith(self.header_prefixes)

    def strip(self, headers: CIMultiDict[str]) -> None:
        """Remove owned headers, and owned cookies from every ``Cookie`` header, in place."""
        if self.headers or self.header_prefixes:
            for name in [name for name in headers if self.owns_header(name)]:
                headers.popall(name, None)
        if self.cookies and "Cookie" in headers:
            kept = [v for v in (self._without_owned(value) for value in headers.getall("Cookie")) if v]
            headers.popall("Cookie")
            for value in kept:
                headers.add("Cookie", value)

    def _without_owned(self, value: str) -> str:
        """``value`` minus owned cookies; the others are kept byte for byte, in their order."""
        pairs = value.split(";")
        kept = [pair for pair in pairs if pair.split("=", 1)[0].strip() not in self.cookies]
        if len(kept) == len(pairs):
            return value
        return "; ".join(pair.strip() for pair in kept if pair.strip())
