"""Driving Manage in a real browser: Debian's Chromium through Playwright (never a browser download),
signed in through the email-code pages like a person."""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.async_api import Browser, Page
from playwright.async_api import Error as PlaywrightError

from tests.browser import enter_code
from tests.plugins.auth.kit import mailbox_code

# Test artifacts go to build/screenshots (git-ignored); SHMASTRA_SCREENSHOTS=docs refreshes the README's.
SCREENSHOTS = Path(
    os.environ.get("SHMASTRA_SCREENSHOTS") or Path(__file__).parents[3] / "build" / "screenshots"
)
LAPTOP = {"width": 1366, "height": 768}


async def sign_in(browser: Browser, base: str, mailbox: Path, email: str, path: str) -> Page:
    """A new laptop-sized page signed in as ``email``, at ``path``; script errors fail the test."""
    page = await browser.new_page(viewport=LAPTOP)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept())
    await page.goto(base + path)
    await enter_code(page, email, lambda: mailbox_code(mailbox, email))
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


_CONTRAST = """() => {
  const channels = (text) => {
    const [r, g, b, a = 1] = (text.match(/[\\d.]+/g) || ["0", "0", "0", "0"]).map(Number);
    return [r, g, b, a];
  };
  const over = (top, below) => {  // top (with alpha) composited on an opaque colour
    const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + below[i] * (1 - a)).concat(1);
  };
  const background = (element) => {
    const layers = [];
    for (let e = element; e; e = e.parentElement) {
      const colour = channels(getComputedStyle(e).backgroundColor);
      if (colour[3] > 0) layers.push(colour);
      if (colour[3] >= 1) break;
    }
    return layers.reverse().reduce((below, top) => over(top, below), [255, 255, 255, 1]);
  };
  const luminance = (colour) => {
    const [r, g, b] = colour.slice(0, 3).map((v) => {
      const c = v / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const ratio = (a, b) => {
    const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
  const visible = (rect) =>
    rect.width > 1 && rect.height > 1 && rect.right > 0 && rect.bottom > 0 &&
    rect.left < document.documentElement.scrollWidth;
  const describe = (e) => `${e.tagName.toLowerCase()} "${(e.textContent || e.value || "").trim().slice(0, 40)}"`;
  const problems = [];
  const seen = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const elements = [...document.querySelectorAll("input:not([type=hidden]), select, textarea")];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!node.textContent.trim() || seen.has(node.parentElement)) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    if (!visible(range.getBoundingClientRect())) continue;
    seen.add(node.parentElement);
    elements.push(node.parentElement);
  }
  for (const e of elements) {
    const style = getComputedStyle(e);
    if (e.disabled || style.visibility !== "visible" || !visible(e.getBoundingClientRect())) continue;
    const back = background(e instanceof SVGElement ? e.closest("svg").parentElement : e);
    const text = over(channels(e instanceof SVGElement ? style.fill : style.color), back);
    const found = ratio(text, back);
    if (found < 4.5) problems.push(`${describe(e)}: contrast ${found.toFixed(2)}:1 (${style.color} on rgb(${back.slice(0, 3)}))`);
    if (e.placeholder && !e.value) {  // shown instead of the value: text like any other
      const hint = getComputedStyle(e, "::placeholder");
      const shown = over(channels(hint.color).map((v, i) => (i === 3 ? v * Number(hint.opacity) : v)), back);
      const contrast = ratio(shown, back);
      if (contrast < 4.5) problems.push(`${describe(e)} placeholder: contrast ${contrast.toFixed(2)}:1 (${hint.color})`);
    }
  }
  return problems;
}"""

_LABELS = """() => {
  const named = (e) => {
    if ((e.getAttribute("aria-label") || "").trim()) return true;
    const by = (e.getAttribute("aria-labelledby") || "").split(/\\s+/).filter(Boolean);
    if (by.some((id) => (document.getElementById(id)?.textContent || "").trim())) return true;
    if ([...(e.labels || [])].some((label) => label.textContent.trim())) return true;
    if (e.tagName === "BUTTON" && e.textContent.trim()) return true;
    if (e.tagName === "INPUT" && ["submit", "button", "reset"].includes(e.type) && e.value.trim()) return true;
    return Boolean((e.getAttribute("title") || "").trim());
  };
  return [...document.querySelectorAll("input:not([type=hidden]), select, textarea, button")]
    .filter((e) => !named(e))
    .map((e) => `${e.tagName.toLowerCase()} ${e.outerHTML.slice(0, 80)}: no accessible label`);
}"""

_FOCUSED = """() => {
  const e = document.activeElement;
  if (!e || e === document.body) return null;
  const style = getComputedStyle(e);
  const outline = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 1;
  const shown = outline || style.boxShadow !== "none";
  return {
    key: e.outerHTML.slice(0, 120),
    shown,
    what: `${e.tagName.toLowerCase()} "${(e.textContent || e.value || "").trim().slice(0, 40)}"`,
    outline: style.outlineColor,
    behind: (() => {
      for (let p = e.parentElement; p; p = p.parentElement) {
        const colour = getComputedStyle(p).backgroundColor;
        if (!/rgba\\(.*,\\s*0\\)$/.test(colour) && colour !== "transparent") return colour;
      }
      return "rgb(255, 255, 255)";
    })(),
  };
}"""


def _luminance(colour: str) -> float:
    parts = [float(v) / 255 for v in re.findall(r"[\d.]+", colour)[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in parts]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _ratio(one: str, two: str) -> float:
    high, low = sorted((_luminance(one), _luminance(two)), reverse=True)
    return (high + 0.05) / (low + 0.05)


async def accessibility_problems(page: Page, name: str) -> list[str]:
    """What fails on ``page`` (named ``name`` in the messages): visible text under 4.5:1 contrast
    against its effective background (WCAG 1.4.3), a form control without an accessible label, and
    an element reached with Tab that shows no focus indicator (an outline or a ring at least 3:1
    against what is behind it, WCAG 2.4.7 and 1.4.11). Every focusable element is tabbed to."""
    problems = [f"{name}: {p}" for p in await page.evaluate(_CONTRAST)]
    problems += [f"{name}: {p}" for p in await page.evaluate(_LABELS)]
    await page.evaluate("document.activeElement && document.activeElement.blur()")
    await page.locator("body").focus()
    first = None
    for _ in range(400):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(_FOCUSED)
        if focused is None:
            continue
        if focused["key"] == first:
            break
        first = first or focused["key"]
        if not focused["shown"]:
            problems.append(f"{name}: {focused['what']}: no visible focus indicator")
        elif _ratio(focused["outline"], focused["behind"]) < 3:
            ratio = _ratio(focused["outline"], focused["behind"])
            problems.append(f"{name}: {focused['what']}: focus outline {ratio:.2f}:1 against its background")
    else:
        problems.append(f"{name}: Tab never came back to the first element")
    return problems


async def assert_accessible(page: Page, name: str) -> None:
    """Fail with every problem :func:`accessibility_problems` finds on ``page``, one a line."""
    problems = await accessibility_problems(page, name)
    assert problems == [], "\n".join(problems)
