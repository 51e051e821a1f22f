"""Studio's ``index.html`` names the server the browser should call (``window.MASTRA_SERVER_HOST``,
port, protocol, API prefix). Served through the cloud, those must name the cloud's public origin, or
the browser would try the sandbox's own port. This tap rewrites them as the page streams through, and
serves the script (offered to pages through ``proxy_core.inject``) that pings while the tab is visible
and adds the "Download my project" link.
"""

from __future__ import annotations

import re

from multidict import CIMultiDict
from yarl import URL

from proxy_core import ResponseTap

_ASSIGNMENT = re.compile(
    rb"""(window\.(MASTRA_SERVER_HOST|MASTRA_SERVER_PORT|MASTRA_SERVER_PROTOCOL|MASTRA_API_PREFIX|"""
    rb"""MASTRA_STUDIO_BASE_PATH)\s*=\s*)(['"])(.*?)\3"""
)
_MAX_PAGE = 4 << 20

CLOUD_SCRIPT = """(function () {
  function ping() {
    if (document.visibilityState === "visible") {
      fetch("/api/sandbox/ping", {method: "POST", credentials: "same-origin"}).catch(function () {});
    }
  }
  setInterval(ping, 60000);
  document.addEventListener("visibilitychange", ping);
  function addLink() {
    if (document.getElementById("shmastra-cloud-export")) { return; }
    var link = document.createElement("a");
    link.id = "shmastra-cloud-export";
    link.href = "/api/sandbox/export";
    link.textContent = "Download my project";
    link.style.cssText = "position:fixed;left:12px;bottom:12px;z-index:2147483646;font:12px sans-serif;" +
      "background:#111;color:#fff;padding:6px 10px;border-radius:6px;text-decoration:none;opacity:.8";
    document.body.appendChild(link);
  }
  if (document.body) { addLink(); } else { document.addEventListener("DOMContentLoaded", addLink); }
})();
"""
"""Offered to Studio's pages (``proxy_core.inject``): keeps the sandbox awake while the tab is visible
(one ping a minute, as the original's page does) and adds "Download my project"."""


def rewrite_index(html: bytes, public: URL, api_prefix: str, studio_path: str) -> bytes:
    """``html`` with the server settings pointing at ``public``."""
    port = public.port or (443 if public.scheme == "https" else 80)
    values = {
        b"MASTRA_SERVER_HOST": (public.raw_host or "").encode(),
        b"MASTRA_SERVER_PORT": str(port).encode(),
        b"MASTRA_SERVER_PROTOCOL": public.scheme.encode(),
        b"MASTRA_API_PREFIX": api_prefix.encode(),
        b"MASTRA_STUDIO_BASE_PATH": studio_path.encode(),
    }

    def replace(match: re.Match[bytes]) -> bytes:
        quote = match.group(3)
        return match.group(1) + quote + values[match.group(2)] + quote

    return _ASSIGNMENT.sub(replace, html)


class ChainedTaps:
    """Two taps in a row: what ``first`` lets through is what ``second`` sees."""

    def __init__(self, first: ResponseTap, second: ResponseTap) -> None:
        self.first, self.second = first, second

    def on_head(self, status: int, headers: CIMultiDict[str]) -> None:
        self.first.on_head(status, headers)
        self.second.on_head(status, headers)

    def on_chunk(self, data: bytes) -> bytes:
        passed = self.first.on_chunk(data)
        return self.second.on_chunk(passed) if passed else b""

    def on_end(self) -> bytes:
        tail = self.first.on_end()
        return (self.second.on_chunk(tail) if tail else b"") + self.second.on_end()

    def on_failure(self, kind: str) -> bytes:
        return b""  # cut the client's connection: a page cut short must not look complete


class StudioTap:
    """A :class:`~proxy_core.ResponseTap`: HTML answers are collected and rewritten; anything else
    (and a page too large to be Studio's) streams through untouched."""

    def __init__(self, public: URL, api_prefix: str, studio_path: str) -> None:
        self.public, self.api_prefix, self.studio_path = public, api_prefix, studio_path
        self._html = False
        self._chunks: list[bytes] = []
        self._size = 0

    def on_head(self, status: int, headers: CIMultiDict[str]) -> None:
        kind = headers.get("Content-Type", "")
        self._html = status == 200 and kind.startswith("text/html") and "Content-Encoding" not in headers
        if self._html:
            headers.popall("ETag", None)
            headers["Cache-Control"] = "no-store"

    def on_chunk(self, data: bytes) -> bytes:
        if not self._html:
            return data
        self._chunks.append(data)
        self._size += len(data)
        if self._size > _MAX_PAGE:  # not Studio's index: give up rewriting, send what we hold
            self._html = False
            held, self._chunks = b"".join(self._chunks), []
            return held
        return b""

    def on_end(self) -> bytes:
        if not self._html:
            return b""
        return rewrite_index(b"".join(self._chunks), self.public, self.api_prefix, self.studio_path)

    def on_failure(self, kind: str) -> bytes:
        return b""  # cut the client's connection: a page cut short must not look complete
