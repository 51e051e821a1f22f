"""The default pipeline a teammate's browser goes through (``vkey``, ``auth``, then the forwarding
stage, as in ``proxy.toml``), and a signed-in session cookie for it, obtained the way a browser gets
one: the sign-in page, an emailed code (``delivery = "mailbox"``, read from its file), its check."""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path

import aiohttp

from . import procs
from .env import REPO

EMAIL = "bench@example.com"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_CODE = re.compile(r"code is (\d{6})")


def pipeline(data_dir: Path, forwarding: str, auth_options: str = "", email_options: str = "") -> str:
    """``[database]`` and the ``vkey`` and ``auth`` tables in front of ``forwarding`` (its TOML);
    ``auth_options`` and ``email_options`` are more lines of ``auth``'s table and its ``email_code``."""
    return (
        f'[database]\nurl = "sqlite:///{data_dir}/shmastra.db"\n'
        '[[pipeline]]\nstage = "vkey"\n'
        "[pipeline.limits]\nrequests_per_minute = 120\n"
        f'[[pipeline]]\nstage = "auth"\nprovider = "email_code"\nadmins = ["{EMAIL}"]\n'
        f'data_dir = "{data_dir}"\n{auth_options}'
        f'[pipeline.email_code]\ndelivery = "mailbox"\nmailbox_dir = "{data_dir}/mailbox"\n{email_options}'
        f"{forwarding}"
    )


def ours(
    upstream: str, data: Path, *, cpus: str, name: str, forwarding: str = "", repo: Path = REPO
) -> procs.Service:
    """Ours as a teammate's browser meets it, in front of ``upstream``: :func:`pipeline` (its data in
    ``data``) before the forwarding stage, the access log on and the cloud menu injected into pages."""
    return procs.ours(
        upstream,
        cpus=cpus,
        access_log=True,
        extra_pipeline=pipeline(data, forwarding),
        upstream_options="inject_html = true\n",
        repo=repo,
        name=name,
    )


def data_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="shmastra-bench-auth-"))


async def enter_code(http: aiohttp.ClientSession, base: str, mailbox: Path, email: str = EMAIL) -> None:
    """Sign ``http`` in as ``email`` on the proxy at ``base`` the way a browser does: the sign-in page,
    the code sent to the mailbox folder, its check."""
    async with http.get(f"{base}/auth/sign-in") as page:
        csrf = _CSRF.search(await page.text())
    assert csrf, "no CSRF field on the sign-in page"
    form = {"email": email, "csrf_token": csrf.group(1), "next": "/"}
    async with http.post(f"{base}/auth/code", data=form) as sent:
        csrf = _CSRF.search(await sent.text())
    assert sent.status == 200 and csrf, f"sending the code answered {sent.status}"
    for _ in range(200):  # the mailbox delivery may land just after the answer
        if (mailbox / email).is_file():
            break
        await asyncio.sleep(0.025)
    code = _CODE.search((mailbox / email).read_text())
    assert code, "no code in the mailbox"
    form = {"code": code.group(1), "csrf_token": csrf.group(1)}
    async with http.post(f"{base}/auth/code/verify", data=form, allow_redirects=False) as done:
        assert done.status == 303, f"checking the code answered {done.status}"


async def _sign_in(base: str, mailbox: Path) -> str:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        await enter_code(http, base, mailbox)
        cookie = next((c for c in jar if c.key == "auth_session"), None)
        assert cookie is not None, "no session cookie after signing in"
        return f"{cookie.key}={cookie.value}"


def sign_in(base: str, data: Path) -> str:
    """A ``Cookie`` header value carrying a live session on the proxy at ``base``."""
    return asyncio.run(_sign_in(base, data / "mailbox"))
