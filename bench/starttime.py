"""What a teammate waits for, from "open the cloud" to a usable Studio: ``python -m bench.starttime``.

One run, side by side (each part bounded; a few minutes in all):

1. ``local``, the bundled Mastra template (``--no-real`` skips it; needs the npm registry): the first
   sandbox of the template version (a fresh template cache and a fresh npm cache: a registry install),
   a later user (the prepared copy shared; with ``--spares 1`` one arriving when a spare is waiting),
   and resumes (paused -> first byte of Studio) from a frozen
   sandbox (``pause = "freeze"``, the default) and from a stopped one (``pause = "stop"``). Each is
   split into the provider's part (prepare + workspace + spawn), the app's own start (its ``/health``
   probed every 10 ms from the spawn on, beside the router) and the rest: OUR share (lookup, lock,
   store writes, the health wait loop, the proxy). Then the resident memory of that running sandbox's
   process group and of the cloud.
2. ``local``, a tiny aiohttp app as template (what start costs without Mastra): resumes, split the
   same way (our share with a fast app), then a herd: ``--herd`` users open Studio at the same moment;
   every one must reach it; the p50/p95/max waits, the queue positions and "starting right now"
   messages their progress pages showed, and the cloud's memory per running sandbox.
3. ``e2b`` against the stand-in (``tests/standins/e2b.py``, every API call delayed by ``--latency``):
   create and resume through the real SDK; our share is the wait beyond the stand-in's simulated
   latency (calls x latency); a create also includes the tiny app's own start (shown beside it).

The cloud is served in this process by the production runner (``proxy_core.testing.run_proxy``) with
the ``vkey``, ``auth`` (emailed codes) and ``sandbox_router`` stages on SQLite; browsers are aiohttp
sessions. Medians of ``--rounds`` where a part repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from plugins.auth import AuthStage
from plugins.sandbox_router import SandboxRouterStage, sandbox_router
from plugins.sandbox_router.providers.base import Handle, ProgressCallback, SandboxProvider, SandboxSpec
from plugins.sandbox_router.template import BUNDLED_TEMPLATE_DIR
from plugins.vkey import VKeyStage
from proxy_core.db import DATABASE
from proxy_core.testing import make_app, run_proxy, stage

from . import signin
from .sandbox import write_template

HTML = {"Accept": "text/html"}
PAUSE_MODES = ("frozen", "stopped")  # [pipeline.local] pause = "freeze" (the default) and "stop"
PROGRESS_PAGE = b"<title>Starting your sandbox"


@dataclass
class Timing:
    """One user's wait, split: ``total`` from the first Studio request to Studio's 200."""

    total: float = 0.0
    provider: float = 0.0  # inside the provider's create/resume (prepare, workspace, spawn, API calls)
    app: float = 0.0  # from the spawn to the app's first healthy answer (the app's own start)
    steps: list[tuple[float, str, int]] = field(default_factory=list)
    positions: set[int] = field(default_factory=set)
    refusals: int = 0  # "many sandboxes are starting" messages seen

    @property
    def ours(self) -> float:
        return self.total - self.provider - self.app


class Probe:
    """Wraps a provider: times its create/resume and probes the spawned app's ``/health`` every 10 ms
    (what the app alone takes, measured beside the router's own, slower-paced polling)."""

    def __init__(self, inner: SandboxProvider, root: Path | None) -> None:
        self.inner, self.root = inner, root
        self.provider_seconds: dict[str, float] = {}
        self.app_seconds: dict[str, float] = {}
        self._probes: dict[str, asyncio.Task[None]] = {}

    def install(self, router: SandboxRouterStage) -> None:
        inner = self.inner
        probe = self

        class Timed(type(inner)):  # type: ignore[misc]
            async def create(self, spec: SandboxSpec, on_progress: ProgressCallback) -> Handle:
                return await probe._timed(spec.user_id, super().create(spec, on_progress))

            async def resume(self, handle: Handle, on_progress: ProgressCallback) -> Handle:
                user = await probe._owner(handle)
                return await probe._timed(user, super().resume(handle, on_progress))

        timed = Timed.__new__(Timed)
        timed.__dict__.update(inner.__dict__)
        router.provider = router.lifecycle.provider = timed

    async def _owner(self, handle: Handle) -> str:
        if self.root is None:
            return handle.sandbox_id
        record = orjson.loads((self.root / handle.sandbox_id / "sandbox.json").read_bytes())
        return str(record["user_id"])

    async def _timed(self, user: str, call: Any) -> Handle:
        started = time.monotonic()
        handle: Handle = await call
        spawned = time.monotonic()
        self.provider_seconds[user] = spawned - started
        if self.root is not None:  # local: the app was just spawned; time it alone
            env = orjson.loads((self.root / handle.sandbox_id / "sandbox.json").read_bytes())["env"]
            url = f"http://127.0.0.1:{handle.data['port']}/health"
            self._probes[user] = asyncio.create_task(
                self._probe(user, url, env["MASTRA_AUTH_TOKEN"], spawned)
            )
        return handle

    async def _probe(self, user: str, url: str, token: str, spawned: float) -> None:
        async with aiohttp.ClientSession() as http:
            while time.monotonic() - spawned < 300:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(url, headers={"x-mastra-auth-token": token}) as answer:
                        if answer.status == 200:
                            self.app_seconds[user] = time.monotonic() - spawned
                            return
                await asyncio.sleep(0.01)

    async def app_start(self, user: str) -> float:
        task = self._probes.pop(user, None)
        if task is not None:
            await task
        return self.app_seconds.pop(user, 0.0)


@contextlib.asynccontextmanager
async def cloud(folder: Path, template: Path, **router: Any) -> AsyncIterator[tuple[str, web.Application]]:
    """A cloud in this process: its base URL and app (``router``: the stage's options)."""
    local = {
        "root": str(folder / "sandboxes"),
        "cache_dir": str(folder / "cache"),
        "hidden_paths": [],
        "bwrap": "never",
        **router.pop("local", {}),
    }
    app = make_app(
        [
            stage(VKeyStage),
            stage(
                AuthStage,
                data_dir=str(folder / "auth"),
                email_code={
                    "delivery": "mailbox",
                    "mailbox_dir": str(folder / "mail"),
                    "sends_per_ip": 1000,  # every bench user signs in from 127.0.0.1
                    "verifies_per_ip": 1000,
                },
                allowed_domains=["example.com"],
                public_paths=["/api/sandbox/heal"],
            ),
            stage(SandboxRouterStage, local=local, template_dir=str(template), sweep_interval=3600, **router),
        ],
        f'[server]\naccess_log = false\nlog_level = "warning"\n[database]\nurl = "sqlite:///{folder}/store.db"\n',
    )
    async with run_proxy(app) as url:
        yield str(url), app


def browser() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=600),
    )


async def open_studio(http: aiohttp.ClientSession, base: str, timing: Timing) -> None:
    """Ask for Studio as a browser does, following the progress page's event stream, until Studio
    itself answers 200."""
    started = time.monotonic()
    while True:
        async with http.get(base + "/studio/", headers=HTML) as answer:
            page = await answer.read()
            if answer.status == 200 and PROGRESS_PAGE not in page:
                timing.total = time.monotonic() - started
                return
            if answer.status not in (200, 429, 503):
                raise RuntimeError(f"/studio/ answered {answer.status}")
        async with http.get(base + "/api/sandbox/events") as stream:
            event = ""
            async for raw in stream.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = orjson.loads(line[6:])
                    if event == "failed":
                        raise RuntimeError(f"the start failed: {data.get('message')}")
                    if data.get("position"):
                        timing.positions.add(int(data["position"]))
                    if "starting right now" in (data.get("message") or ""):
                        timing.refusals += 1
                    if data.get("step"):
                        step = (time.monotonic() - started, str(data["step"]), int(data.get("percent") or 0))
                        if not timing.steps or timing.steps[-1][1:] != step[1:]:
                            timing.steps.append(step)
                    if event == "ready":
                        break


def rss_kib(pid: int) -> int:
    """The process's proportional set size (shared pages split among their users, so a sum over
    processes does not count shared libraries twice); its RSS where PSS cannot be read."""
    for path, key in ((f"/proc/{pid}/smaps_rollup", "Pss:"), (f"/proc/{pid}/status", "VmRSS:")):
        with contextlib.suppress(OSError):
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return int(line.split()[1])
    return 0


def group_rss_kib(pid: int) -> tuple[int, int]:
    """Summed resident memory of ``pid``'s process group and every descendant (pm2 may start its apps
    in their own groups), and how many processes that is."""
    parents: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = (int(fields[1]), int(fields[2]))
    members = {p for p, (_, group) in parents.items() if group == pid} | {pid}
    grown = True
    while grown:
        found = {p for p, (parent, _) in parents.items() if parent in members} - members
        members |= found
        grown = bool(found)
    return sum(rss_kib(p) for p in members), len(members)


async def user_of(app: web.Application, email: str) -> uuid.UUID:
    row = await app[DATABASE].fetchrow("SELECT id FROM users WHERE email = $1", email)
    assert row is not None
    return uuid.UUID(str(row["id"]))


async def start_as(
    base: str, folder: Path, probe: Probe, email: str, users: dict[str, aiohttp.ClientSession]
) -> Timing:
    http = users.get(email)
    if http is None:
        http = users[email] = browser()
        await signin.enter_code(http, base, folder / "mail", email)
    timing = Timing()
    await open_studio(http, base, timing)
    return timing


def split(timing: Timing, probe: Probe, user: uuid.UUID) -> Timing:
    timing.provider = probe.provider_seconds.pop(str(user), 0.0)
    return timing


async def timed_start(
    base: str,
    app: web.Application,
    folder: Path,
    probe: Probe,
    users: dict[str, aiohttp.ClientSession],
    email: str,
) -> Timing:
    """``email`` (signed in first if new) opens Studio: the wait, split into provider, app start and
    our share."""
    timing = await start_as(base, folder, probe, email, users)
    user = await user_of(app, email)
    timing.app = await probe.app_start(str(user))
    return split(timing, probe, user)


def show(label: str, timing: Timing) -> None:
    print(
        f"  {label:<38} {timing.total:8.3f} s  = provider {timing.provider:7.3f} + app start "
        f"{timing.app:7.3f} + OURS {timing.ours * 1000:7.1f} ms"
    )


def show_steps(timing: Timing) -> None:
    print("    progress page: " + ", ".join(f"{s} {p}% @{t:.1f}s" for t, s, p in timing.steps))


async def spare_waiting(sandboxes: Path) -> float:
    """Seconds until a spare's app server waits for its environment (a later user who arrives then)."""
    started = time.monotonic()
    while not list(sandboxes.glob("*/home/.sandbox-env.json.waiting")):
        if time.monotonic() - started > 600:
            raise RuntimeError("no spare became ready within 600 s")
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def local_real(root: Path, rounds: int, spares: int) -> None:
    folder = root / "real"
    folder.mkdir()
    os.environ["NPM_CONFIG_CACHE"] = str(folder / "npm-cache")  # a true registry install
    users: dict[str, aiohttp.ClientSession] = {}
    print(f"local provider, the bundled Mastra template (bwrap off, spares = {spares})")
    local = {"spares": spares}
    async with cloud(folder, BUNDLED_TEMPLATE_DIR, health_timeout=300, local=local) as (base, app):
        router = sandbox_router(app)
        probe = Probe(router.provider, folder / "sandboxes")
        probe.install(router)
        try:
            for label, email in [("first sandbox of the version", "first@example.com")] + [
                (f"later user #{n + 1}", f"later{n}@example.com") for n in range(rounds)
            ]:
                if spares and label.startswith("later"):
                    waited = await spare_waiting(folder / "sandboxes")
                    print(f"  (a spare was waiting after {waited:.1f} s more; the user arrives now)")
                timing = await timed_start(base, app, folder, probe, users, email)
                show(label, timing)
                show_steps(timing)
            if spares:  # the same wait without a spare, in the same run
                router.provider.spares = 0  # type: ignore[attr-defined]
                timing = await timed_start(base, app, folder, probe, users, "cold@example.com")
                show("later user, no spare (cold start)", timing)
            lifecycle = router.lifecycle
            later = await user_of(app, "later0@example.com")
            for mode in PAUSE_MODES:
                router.provider.freeze = mode == "frozen"  # type: ignore[attr-defined]
                for n in range(rounds):
                    await lifecycle.pause(later, "bench")
                    timing = await timed_start(base, app, folder, probe, users, "later0@example.com")
                    show(f"resume {mode} #{n + 1} -> Studio", timing)
            row = await lifecycle.store.of_user(later)
            assert row is not None and row.sandbox_id is not None
            state = orjson.loads((folder / "sandboxes" / row.sandbox_id / "state.json").read_bytes())
            app_rss, members = group_rss_kib(int(state["pid"]))
            print(
                f"  memory: one running sandbox's processes {app_rss / 1024:.0f} MiB PSS "
                f"({members} processes); the cloud (this process, {len(users)} running) "
                f"{rss_kib(os.getpid()) / 1024:.0f} MiB PSS"
            )
        finally:
            for http in users.values():
                await http.close()
            os.environ.pop("NPM_CONFIG_CACHE", None)


async def resumes_of(
    base: str,
    app: web.Application,
    folder: Path,
    probe: Probe,
    users: dict[str, aiohttp.ClientSession],
    rounds: int,
    email: str,
) -> list[Timing]:
    """``rounds`` times: pause ``email``'s sandbox, and time paused -> Studio's first answer."""
    router = sandbox_router(app)
    user = await user_of(app, email)
    resumes = []
    for _ in range(rounds):
        await router.lifecycle.pause(user, "bench")
        resumes.append(await timed_start(base, app, folder, probe, users, email))
    return resumes


async def local_tiny(root: Path, rounds: int, herd: int) -> float:
    """The tiny-app part; returns the app's median own start (for the E2B part)."""
    folder = root / "tiny"
    folder.mkdir()
    template = write_template(folder)
    users: dict[str, aiohttp.ClientSession] = {}
    print("local provider, a tiny aiohttp app as template (bwrap off)")
    async with cloud(folder, template) as (base, app):
        router = sandbox_router(app)
        probe = Probe(router.provider, folder / "sandboxes")
        probe.install(router)
        try:
            router.provider.freeze = False  # type: ignore[attr-defined]
            first = await timed_start(base, app, folder, probe, users, "solo@example.com")
            resumes = await resumes_of(base, app, folder, probe, users, rounds, "solo@example.com")
            show("first sandbox -> Studio", first)
            app_start = statistics.median(t.app for t in resumes)  # the app's own start (for E2B)
            router.provider.freeze = True  # type: ignore[attr-defined]
            frozen = await resumes_of(base, app, folder, probe, users, rounds, "solo@example.com")
            for mode, timings in zip(reversed(PAUSE_MODES), (resumes, frozen), strict=True):
                middle = sorted(timings, key=lambda t: t.ours)[len(timings) // 2]
                show(f"resume {mode} -> Studio (median ours of {rounds})", middle)

            before = rss_kib(os.getpid())
            emails = [f"herd{n}@example.com" for n in range(herd)]
            for email in emails:
                users[email] = browser()
            await asyncio.gather(*(signin.enter_code(users[e], base, folder / "mail", e) for e in emails))
            timings = [Timing() for _ in emails]
            started = time.monotonic()
            results = await asyncio.gather(
                *(open_studio(users[e], base, t) for e, t in zip(emails, timings, strict=True)),
                return_exceptions=True,
            )
            wall = time.monotonic() - started
            failed = [r for r in results if isinstance(r, BaseException)]
            waits = sorted(t.total for t in timings if t.total)
            p95 = waits[max(0, int(len(waits) * 0.95 + 0.5) - 1)] if waits else 0.0
            positions = sorted(set().union(*(t.positions for t in timings)))
            print(
                f"  herd of {herd} at once: {len(waits)} reached Studio, {len(failed)} failed, "
                f"in {wall:.2f} s; wait p50 {statistics.median(waits):.3f} s, p95 {p95:.3f} s, "
                f"max {waits[-1]:.3f} s"
            )
            print(
                f"    queue positions shown: {positions or 'none'}; 'starting right now' messages: "
                f"{sum(t.refusals for t in timings)} (to {sum(1 for t in timings if t.refusals)} users)"
            )
            for failure in failed[:3]:
                print(f"    failure: {failure!r}")
            await asyncio.sleep(0.5)
            per = (rss_kib(os.getpid()) - before) / max(1, len(waits))
            print(f"  memory: the cloud grows {per:.0f} KiB PSS per running sandbox (herd, this process)")
        finally:
            for http in users.values():
                await http.close()
    return app_start


async def e2b(root: Path, rounds: int, latency: float, app_start: float) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.standins.e2b import running_e2b_standin

    folder = root / "e2b"
    folder.mkdir()
    template = write_template(folder)
    (template / ".template-version").write_text("bench-1\n")
    users: dict[str, aiohttp.ClientSession] = {}
    print(f"e2b provider against the stand-in ({latency * 1000:.0f} ms per API call), the tiny app")
    async with running_e2b_standin(
        folder / "standin", templates={"shmastra": template}, latency=latency
    ) as s:
        settings = {**s.settings, "start_command": "bash start.sh", "app_check_command": "false"}
        async with cloud(folder, template, provider="e2b", e2b=settings) as (base, app):
            router = sandbox_router(app)
            try:
                for label in ["create"] + [f"resume #{n + 1}" for n in range(rounds)]:
                    if label != "create":
                        await router.lifecycle.pause(await user_of(app, "e2b@example.com"), "bench")
                    calls = len(s.requests)
                    timing = await start_as(
                        base, folder, Probe(router.provider, None), "e2b@example.com", users
                    )
                    made = len(s.requests) - calls
                    simulated = made * latency
                    beyond = timing.total - simulated
                    note = (
                        f" (the app's own start, locally: {app_start * 1000:.0f} ms)"
                        if label == "create"
                        else ""
                    )
                    print(
                        f"  {label:<10} {timing.total * 1000:7.1f} ms = {made} API calls x latency "
                        f"{simulated * 1000:6.1f} ms + beyond the stand-in {beyond * 1000:6.1f} ms{note}"
                    )
            finally:
                for http in users.values():
                    await http.close()


async def main(options: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-starttime-"))
    try:
        if options.real:
            await local_real(root, options.rounds, options.spares)
        app_start = await local_tiny(root, options.rounds, options.herd)
        await e2b(root, options.rounds, options.latency, app_start)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="later users and resumes per part")
    parser.add_argument("--herd", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.05, help="the E2B stand-in's delay per API call")
    parser.add_argument("--spares", type=int, default=0, help="[pipeline.local] spares for the Mastra part")
    parser.add_argument("--no-real", dest="real", action="store_false", help="skip the Mastra template")
    asyncio.run(main(parser.parse_args()))
