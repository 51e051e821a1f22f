"""Header rules every proxied request and response follows: hop-by-hop stripping and the forwarded chain.

Client-supplied ``X-Forwarded-*`` and ``Forwarded`` headers are believed only when the connection comes
from a configured trusted proxy; otherwise they are replaced by what this proxy saw itself.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Never copied from the client: the proxy sets these itself for the upstream hop.
_REQUEST_DROP = HOP_BY_HOP | {
    "host",
    "content-length",
    "expect",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "forwarded",
    "x-real-ip",
}
_RESPONSE_DROP_BYTES = frozenset(name.encode() for name in HOP_BY_HOP | {"content-length"})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# A host name or IP literal and an optional port, as nginx accepts them: no quotes, spaces, commas,
# semicolons or slashes, so a Host header can never add elements or parameters to ``Forwarded``.
_HOST = re.compile(r"(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


@lru_cache(maxsize=1024)
def valid_host(host: str) -> bool:
    """Whether ``host`` (a ``Host`` header value) is a host name or IP literal with an optional port."""
    return _HOST.fullmatch(host) is not None


def origin_form(request: web.BaseRequest) -> str:
    """The request target as path and query: an absolute-form target (``GET http://h/x``) loses its
    scheme and authority, so an upstream never sees where the client said it was going."""
    raw = request.raw_path
    if raw.startswith("/"):
        return raw
    return request.rel_url.raw_path_qs


def _connection_tokens(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> set[str]:
    tokens: set[str] = set()
    for value in headers.getall("Connection", ()):
        tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


def request_headers(request: web.BaseRequest, also_drop: frozenset[str] = frozenset()) -> CIMultiDict[str]:
    """The client's headers minus hop-by-hop ones, anything the proxy must set itself and the
    (lower-case) names in ``also_drop``."""
    source = request.headers
    headers = CIMultiDict(source)  # a C-level copy; then drop the few names present (cheaper than a filter)
    drop = _drop_set(also_drop) if also_drop else _REQUEST_DROP
    if "Connection" in source:
        drop = drop | _connection_tokens(source)
    for name in [name for name in headers if name.lower() in drop]:
        headers.popall(name, None)
    return headers


@lru_cache(maxsize=256)
def _drop_set(also: frozenset[str]) -> frozenset[str]:
    return _REQUEST_DROP | also


def response_header_items(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """Upstream response headers (raw, as parsed) minus hop-by-hop ones and Content-Length, as a list
    (a response built from it copies it only once)."""
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in response_header_raw(raw)]


def response_header_raw(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """:func:`response_header_items` still as bytes (for a head relayed as the upstream sent it)."""
    kept: list[tuple[bytes, bytes]] = []
    extra: set[bytes] | None = None
    for name, value in raw:
        lower = name.lower()
        if lower in _RESPONSE_DROP_BYTES:
            if lower == b"connection":
                # names the Connection header lists are hop-by-hop too ("keep-alive" is dropped anyway)
                tokens = {t.strip().lower() for t in value.split(b",")} - _RESPONSE_DROP_BYTES
                tokens.discard(b"")
                if tokens:
                    extra = tokens if extra is None else extra | tokens
            continue
        kept.append((name, value))
    if extra:
        kept = [(name, value) for name, value in kept if name.lower() not in extra]
    return kept


@dataclass(frozen=True, slots=True)
class ClientAddress:
    """Who the request really came from, after walking the trusted-proxy chain."""

    ip: str
    proto: str
    host: str
    forwarded_for: str  # the X-Forwarded-For value to send upstream (chain plus the direct peer)
    forwarded: str  # the Forwarded value to send upstream


class TrustedProxies:
    """The ``[server] trusted_proxies`` networks, with a small cache of per-address verdicts."""

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)
        self._trusts = lru_cache(maxsize=4096)(self._check)
        self._direct = lru_cache(maxsize=4096)(_direct_client)

    def trusts(self, address: str) -> bool:
        return bool(self.networks) and self._trusts(address)

    def _check(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def resolve(self, request: web.BaseRequest) -> ClientAddress:
        peer = _peer_ip(request)
        scheme = "https" if request.secure else "http"
        host = request.headers.get("Host", "")
        if not self.trusts(peer):
            return self._direct(peer, scheme, host)  # the same few values for every request of a client
        chain = [
            a.strip()
            for v in request.headers.getall("X-Forwarded-For", ())
            for a in v.split(",")
            if a.strip()
        ]
        client = peer
        for address in reversed(chain):
            client = address
            if not self.trusts(address):
                break
        proto = request.headers.get("X-Forwarded-Proto", scheme).split(",", 1)[0].strip().lower() or scheme
        forwarded_host = request.headers.get("X-Forwarded-Host", host).split(",", 1)[0].strip()
        if forwarded_host and valid_host(forwarded_host):
            host = forwarded_host
        xff = ", ".join([*chain, peer])
        earlier = ", ".join(request.headers.getall("Forwarded", ()))
        element = _forwarded_element(peer, proto, host)
        return ClientAddress(client, proto, host, xff, f"{earlier}, {element}" if earlier else element)


def _direct_client(peer: str, scheme: str, host: str) -> ClientAddress:
    return ClientAddress(peer, scheme, host, peer, _forwarded_element(peer, scheme, host))


def _peer_ip(request: web.BaseRequest) -> str:
    # the connection's peer, which aiohttp's protocol reads once per connection (not ``request.remote``,
    # which a stage's ``clone(remote=...)`` could change)
    peer = request.protocol.peername
    if isinstance(peer, tuple | list) and peer:
        return str(peer[0])
    return "unknown"


def _forwarded_element(ip: str, proto: str, host: str) -> str:
    node = f'"[{ip}]"' if ":" in ip else _token_or_quoted(ip)
    element = f"for={node};proto={_token_or_quoted(proto)}"
    return f"{element};host={_quoted(host)}" if host else element


_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


def _quoted(value: str) -> str:
    """An RFC 7239 quoted-string: backslash and double quote escaped, so the value stays one value."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _token_or_quoted(value: str) -> str:
    return value if _TOKEN.fullmatch(value) else _quoted(value)


def add_forwarded(headers: CIMultiDict[str], client: ClientAddress) -> None:
    headers["X-Forwarded-For"] = client.forwarded_for
    headers["X-Forwarded-Proto"] = client.proto
    if client.host:
        headers["X-Forwarded-Host"] = client.host
    headers["Forwarded"] = client.forwarded
