"""The cloud menu in a real browser (Debian's Chromium through Playwright): signed in through the
email-code pages, a Studio-shaped page (a ``<base>``, inline head scripts, a module script in the
body) served by ``upstream`` gets the menu, keeps working, raises no policy violation or script
error, and the menu signs the user out. Pages with a Content-Security-Policy get the menu with
their nonce, or, when their policy would block it, no menu and no violation."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page

from plugins.auth import AuthStage
from proxy_core.stages.upstream import UpstreamStage
from proxy_core.testing import make_app, run_proxy, stage
from tests.browser import enter_code

from .kit import SECRET, mailbox_code

NONCE = "bm9uY2UtZm9yLXN0dWRpbw=="
HEAD_SCRIPT = (
    "window.STUDIO_BASE_PATH = '/studio'; window.headScriptsRan = true;"
    " window.addEventListener('securitypolicyviolation', e => window.violations.push(e.violatedDirective));"
)
BODY_SCRIPT = "document.getElementById('root').textContent = 'Studio is running';"


def studio_page(nonce: str | None) -> str:
    attribute = f' nonce="{nonce}"' if nonce else ""
    return (
        '<!doctype html>\n<html lang="en">\n  <head>\n    <meta charset="UTF-8" />\n'
        '    <base href="/studio/" />\n    <meta name="viewport" content="width=device-width" />\n'
        f"    <title>Mastra Studio</title>\n    <script{attribute}>{HEAD_SCRIPT}</script>\n  </head>\n\n"
        f'  <body class="overflow-hidden">\n    <div id="root" class="dark"></div>\n'
        f'    <script type="module"{attribute}>{BODY_SCRIPT}</script>\n  </body>\n</html>\n'
    )


def _hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


POLICIES: dict[str, tuple[str | None, str | None, bool]] = {
    # name: (Content-Security-Policy, nonce on the page's scripts, menu expected)
    "no policy": (None, None, True),
    "self and nonce": (f"default-src 'self'; script-src 'self' 'nonce-{NONCE}'", NONCE, True),
    "strict-dynamic": (f"script-src 'nonce-{NONCE}' 'strict-dynamic'; object-src 'none'", NONCE, True),
    "hashes only": (f"script-src {_hash(HEAD_SCRIPT)} {_hash(BODY_SCRIPT)}", None, False),
}


def studio_app(policy: str | None, nonce: str | None) -> web.Application:
    async def index(request: web.Request) -> web.Response:
        headers = {"Content-Security-Policy": policy} if policy else {}
        return web.Response(text=studio_page(nonce), content_type="text/html", headers=headers)

    app = web.Application()
    app.router.add_get("/studio/", index)
    return app


def on_console(kind: str, text: str, errors: list[str]) -> None:
    if kind == "error" and not text.startswith("Failed to load resource"):  # statuses: on_response
        errors.append(text)


def on_response(status: int, url: str, errors: list[str]) -> None:
    if status >= 400 and not url.endswith("/favicon.ico"):  # no stand-in serves an icon
        errors.append(f"{status} {url}")


async def sign_in(page: Page, base: str, mailbox: Path, email: str) -> None:
    await page.goto(base + "/studio/")
    assert "/auth/sign-in" in page.url
    await enter_code(page, email, lambda: mailbox_code(mailbox, email))
    await page.wait_for_url(base + "/studio/")


@pytest.mark.parametrize("name", list(POLICIES))
async def test_the_menu_on_a_studio_page(
    name: str, browser: Browser, aiohttp_server: Any, sqlite_url: str, tmp_path: Path
) -> None:
    policy, nonce, menu_expected = POLICIES[name]
    upstream = await aiohttp_server(studio_app(policy, nonce))
    mailbox = tmp_path / "mail"
    app = make_app(
        [
            stage(
                AuthStage,
                cookie_secret=SECRET,
                email_code={"delivery": "mailbox", "mailbox_dir": str(mailbox)},
                allowed_domains=["example.com"],
                data_dir=str(tmp_path),
            ),
            stage(UpstreamStage, url=str(upstream.make_url("/")), inject_html=True),
        ],
        f'[server]\naccess_log = false\n[database]\nurl = "{sqlite_url}"\n',
    )
    async with run_proxy(app) as url:
        base = str(url).rstrip("/")
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: on_console(message.type, message.text, errors))
        page.on("response", lambda response: on_response(response.status, response.url, errors))
        await page.add_init_script("window.violations = [];")
        await sign_in(page, base, mailbox, "ann@example.com")

        await page.wait_for_function("document.getElementById('root').textContent === 'Studio is running'")
        assert await page.evaluate("window.headScriptsRan === true && window.STUDIO_BASE_PATH === '/studio'")
        if not menu_expected:
            await page.wait_for_load_state("load")
            assert await page.locator("#shmastra-cloud-menu").count() == 0
            assert await page.evaluate("window.violations") == []
            assert errors == []
            return

        toggle = page.get_by_role("button", name="Cloud")
        await toggle.click()
        await page.get_by_text("Signed in as ann@example.com").wait_for()
        assert await page.evaluate("window.violations") == []
        assert errors == []
        styles = await page.evaluate("getComputedStyle(document.body).overflow")
        assert styles == "visible"  # the menu's styles stay in its shadow root

        await page.get_by_role("menuitem", name="Sign out").click()
        await page.wait_for_url(base + "/auth/sign-out")
        await page.get_by_role("button", name="Sign out").click()
        await page.wait_for_url("**/auth/sign-in")
        await page.goto(base + "/studio/")
        assert "/auth/sign-in" in page.url  # signed out for real
        await page.close()


async def test_the_menu_script_is_empty_for_strangers(
    aiohttp_client: Any, sqlite_url: str, tmp_path: Path
) -> None:
    app = make_app(
        [stage(AuthStage, cookie_secret=SECRET, data_dir=str(tmp_path))],
        f'[server]\naccess_log = false\n[database]\nurl = "{sqlite_url}"\n',
    )
    client = await aiohttp_client(app)
    response = await client.get("/auth/menu.js")
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store, private"
    assert response.headers["Content-Type"].startswith("text/javascript")
    assert await response.text() == "/* not signed in */\n"
