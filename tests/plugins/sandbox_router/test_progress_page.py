"""The progress page in a real browser (Debian's Chromium through Playwright): it shows steps and
moves on to Studio by itself; a failed start shows the reason and a "Try again" button that works."""

from __future__ import annotations

from playwright.async_api import Browser, BrowserContext

from tests.plugins.sandbox_router.conftest import Cloud, CloudFactory


async def _signed_in(browser: Browser, cloud: Cloud, email: str) -> BrowserContext:
    session = await cloud.sign_in(email)
    context = await browser.new_context()
    await context.add_cookies(
        [{"name": m.key, "value": m.value, "url": str(cloud.url)} for m in session.cookie_jar]
    )
    return context


async def test_progress_page_moves_on_to_studio(make_cloud: CloudFactory, browser: Browser) -> None:
    cloud = await make_cloud()
    context = await _signed_in(browser, cloud, "ada@example.com")
    page = await context.new_page()
    seen: list[str] = []
    page.on("response", lambda response: seen.append(response.url))

    await page.goto(str(cloud.url) + "/")
    await page.wait_for_selector("#studio", timeout=30_000)  # Studio, reached without a click
    assert page.url == str(cloud.url) + "/studio/"
    assert any(url.endswith("/api/sandbox/events") for url in seen), "the progress page streamed events"
    assert "Studio of" in await page.inner_text("#studio")
    host = await page.evaluate("window.MASTRA_SERVER_HOST + ':' + window.MASTRA_SERVER_PORT")
    assert host == f"{cloud.url.host}:{cloud.url.port}"
    assert await page.inner_text("#shmastra-cloud-export") == "Download my project"
    await context.close()


async def test_failed_start_shows_reason_and_try_again_works(
    make_cloud: CloudFactory, browser: Browser
) -> None:
    cloud = await make_cloud(health_timeout=1)
    template = cloud.router.provider.template_dir  # type: ignore[attr-defined]
    (template / "NEVER_HEALTHY").write_text("")
    context = await _signed_in(browser, cloud, "ada@example.com")
    page = await context.new_page()

    await page.goto(str(cloud.url) + "/studio/")
    await page.wait_for_selector("#failure", state="visible", timeout=30_000)
    assert "did not become healthy" in await page.inner_text("#reason")
    assert await page.is_visible("#retry")

    for workspace in cloud.root.iterdir():
        (workspace / "home" / "NEVER_HEALTHY").unlink()
    await page.click("#retry")
    await page.wait_for_selector("#studio", timeout=30_000)
    await context.close()
