"""Scripts offered by a stage reach the head of HTML pages a forwarding stage serves, only when that
stage allows it, and never at the cost of the page: compressed, non-HTML, non-200 answers and pages
whose Content-Security-Policy would block the script pass byte for byte."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from proxy_core import Next, Stage, StageConfig
from proxy_core.inject import HtmlInjector, offer_script
from proxy_core.stages.upstream import UpstreamStage
from proxy_core.testing import make_app, stage

PAGE = (
    b'<!doctype html>\n<html lang="en">\n  <head>\n    <meta charset="UTF-8" />\n'
    b'    <base href="/studio/" />\n    <title>Studio</title>\n'
    b"    <script>\n      window.BOOT = '</head><body>';\n    </script>\n    <!-- </head> -->\n  </head>\n"
    b'  <body class="overflow-hidden">\n    <div id="root"></div>\n  </body>\n</html>\n'
)
TAG = b'<script src="/cloud/menu.js" defer></script>'


def run_tap(tap: HtmlInjector, headers: dict[str, str], chunks: list[bytes], status: int = 200) -> bytes:
    tap.on_head(status, CIMultiDict(headers))
    return b"".join(tap.on_chunk(chunk) for chunk in chunks) + tap.on_end()


def injected(page: bytes, tag: bytes = TAG) -> bytes:
    at = page.rindex(b"</head>")  # the real one: the others are in a script and a comment
    return page[:at] + tag + page[at:]


@pytest.mark.parametrize("size", [1, 3, 7, 64, len(PAGE)])
def test_the_tag_goes_before_the_end_of_the_head_whatever_the_chunks(size: int) -> None:
    chunks = [PAGE[i : i + size] for i in range(0, len(PAGE), size)]
    out = run_tap(HtmlInjector(("/cloud/menu.js",)), {"Content-Type": "text/html; charset=utf-8"}, chunks)
    assert out == injected(PAGE)


def test_a_page_without_a_head_gets_it_before_the_body() -> None:
    page = b"<!doctype html><title>x</title><body><p>hi</p></body>"
    out = run_tap(HtmlInjector(("/cloud/menu.js",)), {"Content-Type": "text/html"}, [page])
    assert out == page.replace(b"<body>", TAG + b"<body>")


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (200, {"Content-Type": "text/html", "Content-Encoding": "gzip"}),
        (200, {"Content-Type": "application/json"}),
        (200, {"Content-Type": "text/plain"}),
        (404, {"Content-Type": "text/html"}),
        (304, {"Content-Type": "text/html"}),
        (200, {"Content-Type": "text/html", "Content-Security-Policy": "script-src 'none'"}),
        (200, {"Content-Type": "text/html", "Content-Security-Policy": "default-src https://cdn.example"}),
        (200, {"Content-Type": "text/html", "Content-Security-Policy": "script-src 'strict-dynamic' 'self'"}),
    ],
)
def test_pages_that_must_not_change_pass_byte_for_byte(status: int, headers: dict[str, str]) -> None:
    tap = HtmlInjector(("/cloud/menu.js",))
    assert run_tap(tap, headers, [PAGE[:10], PAGE[10:]], status) == PAGE


def test_two_policies_asking_for_different_nonces_leave_the_page_alone() -> None:
    tap = HtmlInjector(("/cloud/menu.js",))
    policies = [
        ("Content-Security-Policy", "script-src 'nonce-a'"),
        ("Content-Security-Policy", "script-src 'nonce-b'"),
    ]
    tap.on_head(200, CIMultiDict([("Content-Type", "text/html"), *policies]))
    assert tap.on_chunk(PAGE) + tap.on_end() == PAGE


@pytest.mark.parametrize(
    ("policy", "tag"),
    [
        ("default-src 'self'", TAG),
        ("script-src 'self' 'unsafe-inline'; style-src *", TAG),
        (
            "script-src 'nonce-r4nd0m+/=' 'strict-dynamic'",
            b'<script src="/cloud/menu.js" defer nonce="r4nd0m+/="></script>',
        ),
        (
            "default-src 'none'; script-src-elem 'nonce-abc'",
            b'<script src="/cloud/menu.js" defer nonce="abc"></script>',
        ),
        ("img-src *", TAG),  # scripts not restricted
    ],
)
def test_the_pages_policy_is_respected(policy: str, tag: bytes) -> None:
    headers = {"Content-Type": "text/html", "Content-Security-Policy": policy}
    assert run_tap(HtmlInjector(("/cloud/menu.js",)), headers, [PAGE]) == injected(PAGE, tag)


def test_a_policy_in_a_meta_tag_leaves_the_page_alone() -> None:
    page = PAGE.replace(
        b"<title>", b"<meta http-equiv='Content-Security-Policy' content=\"script-src 'none'\"><title>"
    )
    assert run_tap(HtmlInjector(("/cloud/menu.js",)), {"Content-Type": "text/html"}, [page]) == page


def test_a_head_that_never_ends_is_passed_on_unchanged() -> None:
    page = b"<html><head>" + b"<!-- padding -->" * 20_000
    chunks = [page[i : i + 4096] for i in range(0, len(page), 4096)]
    assert run_tap(HtmlInjector(("/cloud/menu.js",)), {"Content-Type": "text/html"}, chunks) == page


def test_the_etag_of_a_changed_page_is_dropped() -> None:
    headers = CIMultiDict({"Content-Type": "text/html", "ETag": '"abc"'})
    HtmlInjector(("/x.js",)).on_head(200, headers)
    assert "ETag" not in headers


class OfferMenu(Stage[StageConfig]):
    name = "offer_menu"

    async def __call__(self, request: web.Request, next: Next) -> web.StreamResponse:
        offer_script(request, "/cloud/menu.js")
        offer_script(request, "/cloud/menu.js")  # offered twice, added once
        return await next(request)


def studio(seen: list[str]) -> web.Application:
    async def index(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Accept-Encoding", ""))
        return web.Response(body=PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/studio/", index)
    return app


@pytest.mark.parametrize("allowed", [True, False])
async def test_the_forwarding_stage_decides(aiohttp_server: Any, aiohttp_client: Any, allowed: bool) -> None:
    seen: list[str] = []
    upstream = await aiohttp_server(studio(seen))
    app = make_app(
        [stage(OfferMenu), stage(UpstreamStage, url=str(upstream.make_url("/")), inject_html=allowed)]
    )
    client = await aiohttp_client(app)
    page = await client.get("/studio/", headers={"Accept": "text/html", "Accept-Encoding": "gzip, br"})
    body = await page.read()
    assert body == (injected(PAGE) if allowed else PAGE)
    assert seen == (["identity"] if allowed else ["gzip, br"])
    api = await client.get("/studio/", headers={"Accept": "application/json"})  # not a page load
    assert await api.read() == PAGE
