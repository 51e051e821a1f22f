"""Driving Manage in a real browser: Debian's Chromium through Playwright (never a browser download),
signed in through the email-code pages like a person."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright
from playwright.async_api import Error as PlaywrightError

from tests.plugins.auth.kit import mailbox_code

CHROMIUM = "/usr/bin/chromium"
# Test artifacts go to build/screenshots (git-ignored); SHMASTRA_SCREENSHOTS=docs refreshes the README's.
SCREENSHOTS = Path(
    os.environ.get("SHMASTRA_SCREENSHOTS") or Path(__file__).parents[3] / "build" / "screenshots"
)
LAPTOP = {"width": 1366, "height": 768}


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


async def sign_in(browser: Browser, base: str, mailbox: Path, email: str, path: str) -> Page:
    """A new laptop-sized page signed in as ``email``, at ``path``; script errors fail the test."""
    page = await browser.new_page(viewport=LAPTOP)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept())
    await page.goto(base + path)
    await page.get_by_label("Email address").fill(email)
    await page.get_by_role("button", name="Email me a sign-in code").click()
    await page.get_by_label("Sign-in code").fill(mailbox_code(mailbox, email))
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(base + path)
    page.errors = errors  # type: ignore[attr-defined]
    return page


async def shoot(page: Page, name: str) -> None:
    """A screenshot of the page (``manage-<name>.png`` under :data:`SCREENSHOTS`)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):  # Chromium on a loaded machine sometimes misses a frame
        try:
            await page.screenshot(
                path=str(SCREENSHOTS / f"manage-{name}.png"), full_page=False, timeout=20_000
            )
            return
        except PlaywrightError:
            if attempt == 2:
                raise
            await page.wait_for_timeout(500)


async def no_horizontal_scroll(page: Page) -> bool:
    """Whether the page fits the laptop's width."""
    fits: bool = await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    return fits
