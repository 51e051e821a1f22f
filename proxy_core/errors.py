"""Error answers in the shape the caller expects: a small HTML page for browsers, JSON for everyone else."""

from __future__ import annotations

import html
from http import HTTPStatus

import orjson
from aiohttp import web

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{status} {title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}
h1{{font-size:1.4rem}}p.code{{color:#666}}</style></head>
<body><main><h1>{title}</h1><p>{message}</p><p class="code">Error {status}</p></main></body></html>
"""


def wants_html(request: web.BaseRequest) -> bool:
    """A browser navigation (not XHR/fetch of an API) that prefers an HTML page."""
    accept = request.headers.get("Accept", "")
    if "text/html" not in accept:
        return False
    return request.headers.get("X-Requested-With", "").lower() != "xmlhttprequest"


def error_response(
    request: web.BaseRequest, status: int, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    extra = {"Cache-Control": "no-store", **(headers or {})}
    if wants_html(request):
        page = _PAGE.format(status=status, title=html.escape(title), message=html.escape(message))
        return web.Response(status=status, text=page, content_type="text/html", headers=extra)
    body = orjson.dumps({"error": {"status": status, "title": title, "message": message}})
    return web.Response(status=status, body=body, content_type="application/json", headers=extra)
