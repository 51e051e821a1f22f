"""Manage's live parts in Debian's Chromium against real local sandboxes: the sandbox list follows a
pause made elsewhere without a reload, a rollout where one sandbox fails shows it rolled back live,
and a broken sandbox is recovered from the Recovery page; each page passes the accessibility checks
(contrast, labels, visible focus)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from playwright.async_api import Browser

from .browser import assert_accessible, no_horizontal_scroll, shoot, sign_in
from .fleet import fleet, no_leftover_sandboxes
from .test_rollouts import new_template_version, run

__all__ = ["no_leftover_sandboxes"]


async def test_live_list_rollout_and_recovery_in_the_browser(
    tmp_path: Path, sqlite_url: str, browser: Browser
) -> None:
    async with fleet(tmp_path, sqlite_url) as f:
        admin = await f.token("ada@example.com")
        mia, _ = await f.sandbox_of("mia@example.com")
        bob, _ = await f.sandbox_of("bob@example.com")
        base = str(f.url).rstrip("/")
        page = await sign_in(browser, base, f.mailbox, "ada@example.com", "/manage/sandboxes")
        await page.get_by_text("Live", exact=True).wait_for()
        mia_state = page.locator('tr[data-user="mia@example.com"] [data-field="state"]')
        assert await mia_state.inner_text() == "running"
        assert await no_horizontal_scroll(page)
        await shoot(page, "sandboxes")
        await assert_accessible(page, "sandboxes")

        # paused elsewhere (the API, as the idle sweeper would): the open page follows, no reload
        marker = await page.evaluate("window.performance.timeOrigin")
        assert (await f.call(admin, "POST", f"/sandboxes/{mia}/pause"))[0] == 200
        await page.locator('tr[data-user="mia@example.com"][data-state="paused"]').wait_for()
        assert await page.evaluate("window.performance.timeOrigin") == marker  # the same document
        assert int(await page.locator("tbody[data-live]").get_attribute("data-updates") or "0") >= 1

        # resume from the page itself
        await page.get_by_role("button", name="Resume: mia@example.com").click()
        await page.locator('tr[data-user="mia@example.com"][data-state="running"]').wait_for(timeout=30_000)

        # a rollout where bob's update fails: rolled back and reported, live
        await run(f, admin, bob, 'touch "$SANDBOX_HOME/FAIL_UPDATE"')
        await new_template_version(f, "standin-2")
        await page.get_by_role("link", name="Updates").click()
        await page.get_by_label("At a time").fill("1")
        await shoot(page, "updates")
        await assert_accessible(page, "updates")
        await page.get_by_role("button", name="Update all outdated").click()
        await page.get_by_role("heading", name="Rollout of standin-2").wait_for()
        await page.locator("[data-rollout-state]").filter(has_text="done").wait_for(timeout=60_000)
        bob_row = page.locator('tr[data-user="bob@example.com"]')
        await bob_row.filter(has_text="rolled back").wait_for()
        assert "Failed at install (exit 1); rolled back to standin-1." in await bob_row.inner_text()
        await page.locator('tr[data-user="mia@example.com"]').filter(has_text="updated").wait_for()
        await shoot(page, "rollout")

        # bob's healer gives up: Recovery shows it with the healer's summary; one click restarts it
        key = await run(f, admin, bob, 'printf %s "$SHMASTRA_VIRTUAL_KEY"')
        async with aiohttp.ClientSession() as healer:
            report = {"status": "broken", "message": "The build fails: cannot find module './tools'"}
            async with healer.post(
                f.at("/api/sandbox/heal"), json=report, headers={"Authorization": f"Bearer {key}"}
            ) as answer:
                assert answer.status == 204
        await page.get_by_role("link", name="Recovery").click()
        broken = page.locator('tr[data-user="bob@example.com"]')
        await broken.filter(has_text="cannot find module './tools'").wait_for()
        await shoot(page, "recovery")
        await assert_accessible(page, "recovery")
        await broken.get_by_role("button", name="Restart app: bob@example.com").click()
        await page.get_by_role("status").filter(has_text="Restarted.").wait_for()
        assert (await run(f, admin, bob, 'cat "$SANDBOX_HOME/restarts"')).splitlines()[-1] == "app"

        # the healer reports ready: the row leaves the Recovery page by itself
        async with aiohttp.ClientSession() as healer:
            async with healer.post(
                f.at("/api/sandbox/heal"),
                json={"status": "ready", "message": "fixed"},
                headers={"Authorization": f"Bearer {key}"},
            ) as answer:
                assert answer.status == 204
        await page.get_by_text("Nothing needs attention.").wait_for()
        assert page.errors == []  # type: ignore[attr-defined]
