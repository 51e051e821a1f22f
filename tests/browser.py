"""A real browser for tests: Debian's Chromium through Playwright (never a browser download), headless
(the ``browser`` fixture in ``tests/conftest.py`` gives each test one), and a person's sign-in through
the email-code pages."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable

from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Headless Chromium from Debian's package, closed at the end."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


async def enter_code(page: Page, email: str, code: Callable[[], str | Awaitable[str]]) -> None:
    """On the sign-in page: asks for a code for ``email``, waits for the code field, enters what
    ``code`` returns or awaits (where the test reads the code it was sent) and signs in."""
    await page.get_by_label("Email address").fill(email)
    await page.get_by_role("button", name="Email me a sign-in code").click()
    await page.get_by_label("Sign-in code").wait_for()
    sent = code()
    await page.get_by_label("Sign-in code").fill(await sent if inspect.isawaitable(sent) else sent)
    await page.get_by_role("button", name="Sign in").click()
