"""Chromium's own WebSocket (Debian's Chromium through Playwright) against a ``websockets`` upstream,
directly and through the proxy: ``onclose`` reports the same code, reason and ``wasClean`` both ways,
and the upstream sees the same close."""

from __future__ import annotations

import uuid
from typing import Any

from tests.browser import chromium

from .ws_peers import PythonServer, proxy_to

SCRIPT = """([url, action]) => new Promise((resolve) => {
  const ws = new WebSocket(url);
  ws.onopen = () => {
    if (action === "close_empty") ws.close();
    else if (action === "close_4002") ws.close(4002, "bye");
    else ws.send("go");
  };
  ws.onclose = (event) => resolve([event.code, event.reason, event.wasClean]);
})"""
CASES = [  # (what the browser does, what the upstream does)
    ("close_empty", "wait"),  # a plain ws.close(): an empty close frame
    ("close_4002", "wait"),
    ("wait", "close_4001"),
    ("wait", "close_empty"),
    ("wait", "drop"),
]


async def test_chromium_sees_the_same_ends_through_the_proxy_as_directly() -> None:
    server = PythonServer()
    async with server.running(), proxy_to(server.url) as (proxy_url, _), chromium() as browser:
        page = await browser.new_page()
        seen: dict[tuple[str, str], list[Any]] = {}
        for browser_does, server_does in CASES:
            for base in (server.url, str(proxy_url)):
                key = uuid.uuid4().hex
                end = await page.evaluate(SCRIPT, [f"{base}/case/{server_does}/{key}", browser_does])
                seen.setdefault((browser_does, server_does), []).append((end, await server.result(key)))
    for case, (direct, proxied) in seen.items():
        assert proxied == direct, case
    assert seen[("close_empty", "wait")][0][1] == (1005, "")  # the upstream saw an empty close
    assert seen[("close_4002", "wait")][0][1] == (4002, "bye")
    assert seen[("wait", "close_4001")][0][0] == [4001, "server bye", True]
    assert seen[("wait", "drop")][0][0] == [1006, "", False]  # abnormal, never a clean close
