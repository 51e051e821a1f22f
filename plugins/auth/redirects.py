"""Where a browser may be sent after sign-in (same-site paths only), and who gets a redirect at all."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from aiohttp import web

from proxy_core import wants_html

HOME = "/"


def safe_next(target: str | None, avoid_prefix: str = "") -> str:
    """``target`` if it is a path on this site, else ``/``.

    Refused: anything with a scheme or host (``https://evil``), protocol-relative ``//evil``, any
    backslash (browsers read ``/\\evil`` as ``//evil``), control characters (browsers drop tabs and
    newlines, turning ``/\\t/evil`` into ``//evil``), and the same tricks percent-encoded once or more.
    Paths under ``avoid_prefix`` (the sign-in pages) become ``/`` so sign-in cannot loop.
    """
    if not target or len(target) > 2048:
        return HOME
    decoded = target
    for _ in range(4):
        if not _plain_path(decoded):
            return HOME
        once = unquote(decoded)
        if once == decoded:
            break
        decoded = once
    else:
        return HOME  # still changing after four rounds of decoding: nobody needs that
    if avoid_prefix and (decoded == avoid_prefix or decoded.startswith(avoid_prefix + "/")):
        return HOME
    return target


def _plain_path(value: str) -> bool:
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return False
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return False
    parts = urlsplit(value)
    return not parts.scheme and not parts.netloc


def is_navigation(request: web.Request) -> bool:
    """A browser loading a page (answered with a redirect to sign-in), not an API call, XHR or
    WebSocket (answered with 401 JSON)."""
    if request.method not in ("GET", "HEAD"):
        return False
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return False
    mode = request.headers.get("Sec-Fetch-Mode")
    if mode is not None and mode != "navigate":
        return False
    return wants_html(request)
