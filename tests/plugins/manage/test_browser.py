"""Manage in Debian's Chromium: an admin signs in and works the users page (role change, key
rotation shown once, a disable that asks first), the audit log and usage render on a laptop screen,
every page passes the accessibility checks (contrast, labels, visible focus), and a member gets the
plain "not allowed" page."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp.test_utils import TestServer
from playwright.async_api import Browser

from plugins.auth import UserDirectory
from plugins.vkey import USAGE_WRITER, KeyService, UsageRow

from .browser import assert_accessible, no_horizontal_scroll, shoot, sign_in
from .kit import Cloud, cloud


async def seed_usage(c: Cloud, user_id: uuid.UUID) -> None:
    """A few days of gateway calls, recorded through vkey's writer (for the charts)."""
    key = (await KeyService(c.db).keys_of(user_id))[-1]
    now = datetime.now(UTC)
    for days, (model, tokens, cost) in enumerate(
        [("gpt-4o", 12000, 0.42), ("claude-sonnet-4", 30000, 1.3)] * 3
    ):
        c.app[USAGE_WRITER].add(
            UsageRow(
                user_id=user_id,
                key_id=key.id,
                provider="openai",
                model=model,
                tokens_in=tokens,
                tokens_out=tokens // 3,
                cached_tokens=0,
                cache_write_tokens=0,
                reported=True,
                estimated=False,
                cost_usd=cost,
                status=200,
                latency_ms=9,
                created_at=now - timedelta(days=days),
            )
        )
    await c.app[USAGE_WRITER].flush()


async def test_admin_works_the_users_page_and_a_member_is_refused(
    upstream: TestServer, sqlite_url: str, tmp_path: Path, browser: Browser
) -> None:
    async with cloud(upstream, sqlite_url, tmp_path) as c:
        await c.user("ada@example.com", "admin")
        mia = await c.user("mia@example.com")
        base = str(c.url).rstrip("/")
        page = await sign_in(browser, base, c.mailbox, "ada@example.com", "/manage/users")
        await page.get_by_role("heading", name="Users and keys").wait_for()
        assert await no_horizontal_scroll(page)

        await page.get_by_label("Role of mia@example.com").select_option("admin")
        row = page.locator('tr[data-user="mia@example.com"]')
        await row.get_by_role("button", name="Set").click()
        await page.get_by_role("status").filter(has_text="mia@example.com is now admin.").wait_for()
        assert (await UserDirectory(c.db).get(mia.id)).role == "admin"
        await shoot(page, "users")
        await assert_accessible(page, "users")

        await page.get_by_role("button", name="Rotate key: mia@example.com").click()
        secret = page.get_by_label("The new key, shown only this once:")
        key = await secret.input_value()
        assert key.startswith(f"vk_{mia.id.hex}") or key.startswith("vk_")
        assert await c.gateway_status(key) == 200

        await page.get_by_role("button", name="Disable: mia@example.com").click()  # the dialog is accepted
        await page.get_by_role("status").filter(has_text="is disabled").wait_for()
        assert (await UserDirectory(c.db).get(mia.id)).disabled
        assert await c.gateway_status(key) == 401

        # keyboard: the skip link comes first and shows where focus is
        await page.keyboard.press("Tab")
        focused = page.locator(":focus")
        assert await focused.inner_text() == "Skip to content"
        outline = await focused.evaluate("e => getComputedStyle(e).outlineStyle")
        assert outline != "none"

        await page.get_by_role("link", name="Audit log").click()
        await page.get_by_role("heading", name="Audit log").wait_for()
        await page.get_by_label("Action").select_option("user.disable")
        await page.get_by_role("button", name="Filter").click()
        rows = page.locator("tbody tr")
        assert await rows.count() == 1
        assert "user.disable" in await rows.first.inner_text()
        await page.get_by_label("Action").select_option("")
        await page.get_by_role("button", name="Filter").click()
        await shoot(page, "audit")
        await assert_accessible(page, "audit")

        await seed_usage(c, mia.id)
        await page.get_by_role("link", name="Usage").click()
        await page.get_by_role("img", name="Cost per day (USD)").wait_for()
        assert await no_horizontal_scroll(page)
        await shoot(page, "usage")
        await assert_accessible(page, "usage")

        await page.get_by_role("link", name="Admin tokens").click()
        await page.get_by_label("Name").fill("deploy script")
        await page.get_by_role("button", name="Create token").click()
        token = await page.get_by_label("The new token, shown only this once:").input_value()
        assert token.startswith("smc_admin_")
        await page.reload()
        assert token not in await page.content()
        await shoot(page, "tokens")
        await assert_accessible(page, "tokens")
        assert page.errors == []  # type: ignore[attr-defined]

        await c.user("bob@example.com")
        member = await sign_in(browser, base, c.mailbox, "bob@example.com", "/manage/users")
        await member.get_by_role("heading", name="Not allowed").wait_for()
        assert "Users and keys" not in await member.content()
