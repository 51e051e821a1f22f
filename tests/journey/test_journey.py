"""The whole journey in headless Chromium against the real server process (``shmastra-cloud serve``:
SQLite, ``local`` sandboxes from the bundled Mastra template, email codes in its log, a short idle
timeout, the gateway's OpenAI at a stand-in streaming chat answers in OpenAI's wire format):

open the cloud → sign in with the code from the log → the progress page while the sandbox starts →
Studio through the proxy → the agent answers in Studio (its model call goes through the gateway to the
stand-in, which sees the team's real key; the sandbox's virtual key never reaches the browser) → the
user's file in the workspace → idle → paused (``sandboxes list``) → back: resumed, the file still in
"Download my project" → signed out from the cloud menu. A second user, signed in at the same time in
another browser context, gets their own Studio and sandbox, and their requests for the same paths
never reach the first user's sandbox (it stays paused while they browse).

A screenshot of each step lands in ``build/journey/`` (see the README)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import shutil
import tarfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Request
from playwright.async_api import TimeoutError as PlaywrightTimeout

from tests.browser import enter_code
from tests.npm_cache import cache_root
from tests.standins.llm_providers import STATE, WORDS, standin_app

from .cloud import REPO, Cloud, serving

pytestmark = pytest.mark.slow

SHOTS = REPO / "build" / "journey"
REAL_KEY = "sk-team-real-openai-key-journey-0123456789"
ANSWER = "".join(WORDS)  # "Hello from the stand-in provider."
IDLE_TIMEOUT = 90  # seconds: an open Studio tab pings every 60 s and stays awake; a closed one sleeps
START = 900_000  # ms: a first start installs nothing (the template is prepared) but boots `mastra dev`
NOTE = "shmastra/notes/journey.md"


@pytest.fixture
def shots() -> Callable[[Page, str], Awaitable[None]]:
    """Saves a full-page screenshot of a step as ``build/journey/NN-<step>.png``."""
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    taken: list[str] = []

    async def shoot(page: Page, step: str) -> None:
        taken.append(step)
        path = str(SHOTS / f"{len(taken):02d}-{step}.png")
        try:
            await page.screenshot(path=path, full_page=True)
        except PlaywrightTimeout:
            # the page moved on while it was being taken (a frozen sandbox resumes in milliseconds and
            # the progress page hands over to Studio): once more, on the page it moved to
            await page.wait_for_load_state("domcontentloaded")
            await page.screenshot(path=path, full_page=True)

    return shoot


async def until(condition: Callable[[], Awaitable[bool]], what: str, limit: float) -> None:
    """Polls ``condition`` until it holds; fails naming ``what`` if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"never happened within {limit:g} s: {what}")
        await asyncio.sleep(0.5)


class Seen:
    """Everything a browser context received: header values and finished bodies."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.reads: list[asyncio.Task[None]] = []

    def watch(self, context: BrowserContext) -> None:
        context.on(
            "requestfinished", lambda request: self.reads.append(asyncio.create_task(self._read(request)))
        )

    async def _read(self, request: Request) -> None:
        response = await request.response()
        if response is None:
            return
        self.texts.append(request.url + " " + " ".join((await response.all_headers()).values()))
        with contextlib.suppress(Exception):  # bodies of pages navigated away from may be gone
            self.texts.append((await response.body()).decode(errors="replace"))

    async def contain(self, secret: str) -> bool:
        await asyncio.gather(*self.reads, return_exceptions=True)
        return any(secret in text for text in self.texts)


async def sign_in(
    cloud: Cloud, page: Page, email: str, shoot: Callable[[Page, str], Awaitable[None]]
) -> None:
    """Opens the cloud, asks for a code, reads it from the server's log and enters it."""
    await page.goto(cloud.url + "/")
    await page.wait_for_url("**/auth/sign-in**")
    before = len(cloud.codes(email))

    async def logged_code() -> str:
        await until(lambda: _more(cloud.codes(email), before), f"a sign-in code for {email} in the log", 60)
        await shoot(page, f"code-asked-{email.split('@')[0]}")
        return cloud.codes(email)[-1]

    await enter_code(page, email, logged_code)


async def first_visit(
    cloud: Cloud, page: Page, email: str, shoot: Callable[[Page, str], Awaitable[None]]
) -> str:
    """``email`` signs in; the progress page while their sandbox starts, then Studio through the proxy,
    reached by the progress page on its own (a screenshot of each). Their sandbox's id."""
    name = email.split("@")[0]
    await sign_in(cloud, page, email, shoot)
    await page.locator("#title").filter(has_text="Starting your sandbox").wait_for(timeout=60_000)
    await shoot(page, f"progress-page-{name}")
    await studio_shown(cloud, page)
    await shoot(page, f"studio-{name}")
    return (await cloud.sandboxes())[email][1]


async def _more(codes: list[str], before: int) -> bool:
    return len(codes) > before


async def studio_shown(cloud: Cloud, page: Page) -> None:
    """Studio's own UI is on screen, served through the proxy (and told to call the cloud, not the
    sandbox's own port)."""
    await page.wait_for_url(re.compile(r".*/studio/.*"), timeout=START)
    failure = page.locator("#failure")
    await page.get_by_text("Assistant").or_(failure).first.wait_for(timeout=START)
    if await failure.is_visible():  # the progress page gave up: say why at once, not after START
        await page.screenshot(path=str(SHOTS / "failed-start.png"))
        raise AssertionError("the sandbox did not start: " + await page.inner_text("main"))
    server = await page.evaluate("window.MASTRA_SERVER_HOST + ':' + window.MASTRA_SERVER_PORT")
    assert cloud.url == f"http://{server}"


async def state_of(cloud: Cloud, email: str) -> str:
    return (await cloud.sandboxes())[email][0]


async def exported(page: Page) -> set[str]:
    """The names in "Download my project"'s archive, downloaded by clicking the link."""
    async with page.expect_download(timeout=300_000) as download_info:
        await page.locator("#shmastra-cloud-export").click()
    download = await download_info.value
    path = await download.path()
    with tarfile.open(fileobj=io.BytesIO(Path(path).read_bytes())) as archive:
        return set(archive.getnames())


async def test_the_whole_journey(
    aiohttp_server: Any, browser: Browser, shots: Callable[[Page, str], Awaitable[None]]
) -> None:
    provider = await aiohttp_server(standin_app({"openai": REAL_KEY}, event_delay=0.4))
    received = provider.app[STATE].received
    llm_url = str(provider.make_url("")).rstrip("/")
    async with serving(llm_url, REAL_KEY, cache_root(), IDLE_TIMEOUT) as cloud:
        ann_context, bob_context = await browser.new_context(), await browser.new_context()
        ann_seen = Seen()
        ann_seen.watch(ann_context)
        ann, bob = await ann_context.new_page(), await bob_context.new_page()

        # Ann opens the cloud and signs in; the progress page while her sandbox starts, then Studio
        # through the proxy, reached by the progress page on its own.
        ann_id = await first_visit(cloud, ann, "ann@example.com", shots)

        # The agent, run in Studio's chat: the answer streams in word by word from the stand-in.
        await ann.goto(cloud.url + "/studio/agents/assistant")
        composer = ann.get_by_placeholder("Enter your message...")
        await composer.fill("Say hello")
        await composer.press("Enter")
        # seen mid-stream (checked in the page, at once): the words arrive one by one
        await ann.wait_for_function(
            "([part, whole]) => document.body.innerText.includes(part) && !document.body.innerText.includes(whole)",
            arg=["Hello from the stand", ANSWER],
            polling=50,
            timeout=300_000,
        )
        await shots(ann, "agent-streaming")
        await ann.get_by_text(ANSWER).first.wait_for(timeout=120_000)
        await shots(ann, "agent-answered")
        calls = [r for r in received if r.path == "/v1/chat/completions" and b"Say hello" in r.body]
        assert calls, "the agent's model call reached the stand-in"
        # every call the stand-in saw (the agent's, and the healer's if it asked) carried the real key
        assert {r.headers["authorization"] for r in received} == {f"Bearer {REAL_KEY}"}
        environment = cloud.sandbox_environment(ann_id)
        virtual = environment["OPENAI_API_KEY"]
        assert virtual.startswith("vk_") and environment["OPENAI_BASE_URL"].startswith(cloud.url)
        assert REAL_KEY not in environment.values()  # the real key never reaches the sandbox
        assert not await ann_seen.contain(virtual)  # nor the virtual key the browser
        assert not await ann_seen.contain(REAL_KEY)

        # A file of ann's own in her workspace.
        note = cloud.workspace(ann_id) / NOTE
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text("written before the sandbox slept\n")

        # Ann leaves (her tab's keep-alive stops); meanwhile bob signs in, in another browser.
        await ann.close()
        bob_id = await first_visit(cloud, bob, "bob@example.com", shots)
        assert bob_id != ann_id

        # Idle, ann's sandbox is paused (marked at once, frozen once the activity records are in).
        async def ann_asleep() -> bool:
            return await state_of(cloud, "ann@example.com") == "paused" and not cloud.runs(ann_id)

        await until(ann_asleep, "ann's idle sandbox is paused and frozen", 600)

        # Meanwhile bob, signed in all along, asks for the same paths: they reach his own sandbox only
        # (ann's would have been resumed by any request routed to it).
        await bob.goto(cloud.url + "/studio/agents/assistant")
        await bob.get_by_placeholder("Enter your message...").wait_for(timeout=START)
        answer = await bob.request.get(cloud.url + "/api/mastra/agents")
        assert answer.status == 200 and "assistant" in await answer.json()
        bob_files = await exported(bob)
        assert "shmastra/package.json" in bob_files and f"{NOTE}" not in bob_files
        await bob.get_by_role("button", name="Cloud").click()
        await bob.get_by_text("Signed in as bob@example.com").wait_for()
        await shots(bob, "studio-bob-while-ann-sleeps")
        assert await state_of(cloud, "ann@example.com") == "paused"
        assert not cloud.runs(ann_id)

        # Ann comes back: the progress page while it resumes, then Studio with her file still there.
        ann = await ann_context.new_page()
        await ann.goto(cloud.url + "/studio/")
        await shots(ann, "back-resuming")
        await studio_shown(cloud, ann)
        assert await state_of(cloud, "ann@example.com") == "running" and cloud.runs(ann_id)
        assert NOTE in await exported(ann)
        await shots(ann, "back-resumed")

        # Sign out from the cloud menu.
        await ann.get_by_role("button", name="Cloud").click()
        await ann.get_by_text("Signed in as ann@example.com").wait_for()
        await shots(ann, "cloud-menu")
        await ann.get_by_role("menuitem", name="Sign out").click()
        await ann.wait_for_url(cloud.url + "/auth/sign-out")
        await ann.get_by_role("button", name="Sign out").click()
        await ann.wait_for_url("**/auth/sign-in**")
        await shots(ann, "signed-out")
        await ann.goto(cloud.url + "/studio/")
        assert "/auth/sign-in" in ann.url  # signed out for real

        # Bob is still signed in.
        await bob.goto(cloud.url + "/studio/")
        await studio_shown(cloud, bob)
        await ann_context.close()
        await bob_context.close()
