"""Adding the proxy's own scripts to HTML pages served from an upstream, without breaking them.

A stage that wants something on every page (the cloud menu, say) calls :func:`offer_script` with
the URL of a script it serves from the proxy's own origin. A forwarding stage that allows it (its
own switch) passes ``tap=page_tap(request, outgoing)`` to :meth:`Forwarder.send`; the
:class:`HtmlInjector` then puts ``<script src=… defer>`` before ``</head>`` of an HTML answer.

The page stays intact: only plain (not compressed) ``200 text/html`` answers are touched, and only
when the page's ``Content-Security-Policy`` lets the script run: allowed by ``'self'``, or carried by
the page's own nonce (copied onto the tag). A page whose policy allows neither, or that sets its
policy in a ``<meta>`` tag, or whose ``</head>`` does not come within the first 256 KiB, passes
unchanged. The script itself is external and ``defer``: it runs after the page's own head scripts
and cannot delay them.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict

from .forward import UpstreamRequest

SCRIPTS: web.RequestKey[list[str]] = web.RequestKey("proxy_core.page_scripts")
"""Same-origin script URLs offered for the HTML pages answering this request."""

_HEAD_LIMIT = 256 * 1024
_NONCE = re.compile(r"'nonce-([A-Za-z0-9+/=_-]+)'")
_META_CSP = re.compile(rb"<meta[^>]+http-equiv\s*=\s*[\"']?content-security-policy", re.IGNORECASE)
_HEAD_END = re.compile(rb"</head\s*>|<body[\s>]", re.IGNORECASE)
_OPAQUE = re.compile(rb"<script\b|<!--", re.IGNORECASE)  # text inside them is not markup
_CLOSERS = {b"<!": re.compile(rb"-->"), b"<s": re.compile(rb"</script\s*>", re.IGNORECASE)}


def offer_script(request: web.Request, src: str) -> None:
    """Ask that pages answering ``request`` load ``src`` (a path on the proxy's own origin)."""
    offered = request.get(SCRIPTS)
    if offered is None:
        request[SCRIPTS] = [src]
    elif src not in offered:
        offered.append(src)


def page_tap(request: web.Request, outgoing: UpstreamRequest) -> HtmlInjector | None:
    """The injector for a page navigation that has scripts offered, else ``None``. Asks the upstream
    for an uncompressed answer, which is the only kind that can be changed."""
    scripts = request.get(SCRIPTS)
    if not scripts or request.method != "GET" or "text/html" not in request.headers.get("Accept", ""):
        return None
    outgoing.headers["Accept-Encoding"] = "identity"
    return HtmlInjector(tuple(scripts))


@dataclass
class HtmlInjector:
    """A :class:`~proxy_core.ResponseTap` putting ``scripts`` into the head of an HTML page."""

    scripts: tuple[str, ...]
    _tags: bytes | None = None  # set once the head says the page may be changed
    _buffer: bytes = b""
    _done: bool = True

    def on_head(self, status: int, headers: CIMultiDict[str]) -> None:
        encoding = headers.get("Content-Encoding", "identity").strip().lower()
        kind = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if status != 200 or kind != "text/html" or encoding != "identity":
            return
        nonce = _allowed_nonce(headers.getall("Content-Security-Policy", ()))
        if nonce is None:
            return
        attribute = f' nonce="{nonce}"' if nonce else ""
        tags = "".join(f'<script src="{html.escape(src)}" defer{attribute}></script>' for src in self.scripts)
        self._tags = tags.encode()
        self._done = False
        headers.popall("ETag", None)  # the body differs from the upstream's

    def on_chunk(self, data: bytes) -> bytes:
        if self._done:
            return data
        self._buffer += data
        at = _head_end(self._buffer)
        if at is None and len(self._buffer) < _HEAD_LIMIT:
            return b""  # keep reading until the end of the head
        page, self._buffer, self._done = self._buffer, b"", True
        if at is None or _META_CSP.search(page, 0, at) or self._tags is None:
            return page
        return page[:at] + self._tags + page[at:]

    def on_end(self) -> bytes:
        page, self._buffer, self._done = self._buffer, b"", True
        return page

    def on_failure(self, kind: str) -> bytes:
        return b""  # half a page: the client's connection is cut


def _head_end(page: bytes) -> int | None:
    """Where the head ends (``</head>``, or a ``<body>`` that ends it implicitly), skipping scripts and
    comments, which may hold those words as text; ``None`` until it has arrived."""
    position = 0
    while (end := _HEAD_END.search(page, position)) is not None:
        opaque = _OPAQUE.search(page, position, end.start())
        if opaque is None:
            return end.start()
        closer = _CLOSERS[page[opaque.start() : opaque.start() + 2].lower()].search(page, opaque.end())
        if closer is None:
            return None
        position = closer.end()
    return None


def _allowed_nonce(policies: tuple[str, ...] | list[str]) -> str | None:
    """``""`` when a same-origin script may run as is, the nonce to carry when one is needed and
    offered, ``None`` when the page's policy would block it."""
    needed: set[str] = set()
    for policy in policies:
        directives: dict[str, list[str]] = {}
        for part in policy.split(";"):
            words = part.split()
            if words:
                directives.setdefault(words[0].lower(), words[1:])
        sources = next(
            (
                directives[name]
                for name in ("script-src-elem", "script-src", "default-src")
                if name in directives
            ),
            None,
        )
        if sources is None:
            continue  # this policy does not restrict scripts
        lowered = [s.lower() for s in sources]
        nonces = {m.group(1) for s in sources if (m := _NONCE.fullmatch(s))}
        if "'strict-dynamic'" not in lowered and ("'self'" in lowered or "*" in lowered):
            continue
        if not nonces:
            return None
        needed.add(sorted(nonces)[0])
    if len(needed) > 1:
        return None  # one tag carries one nonce
    return needed.pop() if needed else ""
