"""Part (d): memory per idle user on the proxy side. ``users`` teammates sign in (emailed codes), each
opens their own sandbox (the idle template: socat, one cheap listener per sandbox) and holds one
event stream open through the signed-in pipeline to it; the cloud process's RSS and descriptors are
read before (one warm-up user done), with every sandbox running, and with every stream held. Beside
it, configurable-http-proxy with one route per sandbox (added through its REST API) holding the same
streams to the same sandboxes: CHP knows nothing of users, so it is the floor of what routing costs.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from .. import procs
from ..clients import batched, run_async, session
from ..procs import Snapshot
from . import apps, cloud

SETTLE = 2.0
EVENTS = "/api/mastra/events"


@dataclass(frozen=True)
class Result:
    users: int
    ours: tuple[Snapshot, Snapshot, Snapshot]  # before, every sandbox running, every stream held
    chp: tuple[Snapshot, Snapshot]  # before, every route added and stream held

    @property
    def ours_kb_per_user(self) -> float:
        return (self.ours[2].rss_kb - self.ours[0].rss_kb) / self.users

    @property
    def ours_kb_per_stream(self) -> float:
        return (self.ours[2].rss_kb - self.ours[1].rss_kb) / self.users

    @property
    def chp_kb_per_user(self) -> float:
        return (self.chp[1].rss_kb - self.chp[0].rss_kb) / self.users


async def _stream(http: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
    """Open an event stream and read its first line: established end to end."""
    answer = await http.get(url, headers={"Accept": "text/event-stream"})
    line = await answer.content.readline()
    if answer.status != 200 or not line.startswith(b": connected"):
        raise RuntimeError(f"{url} answered {answer.status} {line[:80]!r}")
    return answer


async def _ours(the_cloud: cloud.Cloud, users: int) -> tuple[Snapshot, Snapshot, Snapshot]:
    pid = the_cloud.service.pid
    sessions: list[aiohttp.ClientSession] = []
    streams: list[aiohttp.ClientResponse] = []
    try:
        warm = await cloud.signed_in(the_cloud, "warm@example.com")
        sessions.append(warm)
        await cloud.open_sandbox(warm, the_cloud.url)
        (await _stream(warm, the_cloud.url + EVENTS)).close()
        await asyncio.sleep(SETTLE)
        before = Snapshot.of(pid)
        emails = [f"user{n}@example.com" for n in range(users)]
        signed = await batched(emails, 25, lambda e: cloud.signed_in(the_cloud, e))
        sessions += signed
        await batched(sessions[1:], 10, lambda s: cloud.open_sandbox(s, the_cloud.url))
        await asyncio.sleep(SETTLE)
        running = Snapshot.of(pid)
        streams = await batched(sessions[1:], 50, lambda s: _stream(s, the_cloud.url + EVENTS))
        await asyncio.sleep(SETTLE)
        return before, running, Snapshot.of(pid)
    finally:
        for stream in streams:
            stream.close()
        for http in sessions:
            await http.close()


async def _chp(ports: Sequence[int]) -> tuple[Snapshot, Snapshot]:
    token, api = secrets.token_hex(16), procs.free_port()
    auth = {"Authorization": f"token {token}"}
    with procs.chp(f"http://{procs.HOST}:{ports[0]}", api=api, token=token) as chp:
        async with session() as http:

            async def route(n: int) -> None:
                target = {"target": f"http://{procs.HOST}:{ports[n]}"}
                url = f"http://{procs.HOST}:{api}/api/routes/u{n}"
                async with http.post(url, json=target, headers=auth) as r:
                    if r.status != 201:
                        raise RuntimeError(f"CHP's API answered {r.status} adding a route")

            (await _stream(http, f"{chp.url}/warm{EVENTS}")).close()
            await asyncio.sleep(SETTLE)
            before = Snapshot.of(chp.pid)
            numbers = list(range(1, len(ports)))
            await batched(numbers, 50, route)
            held = await batched(numbers, 50, lambda n: _stream(http, f"{chp.url}/u{n}{EVENTS}"))
            await asyncio.sleep(SETTLE)
            after = Snapshot.of(chp.pid)
            for stream in held:
                stream.close()
    return before, after


def run(users: int) -> Result:
    with tempfile.TemporaryDirectory(prefix="shmastra-bench-template-") as scratch:
        return _run(apps.idle_template(Path(scratch) / "idle"), users)


def _run(template: Path, users: int) -> Result:
    with cloud.start(template, users=users + 1) as the_cloud:
        ours = run_async(_ours(the_cloud, users))
        ports = [port for _, port in the_cloud.sandboxes().values()]
        chp = run_async(_chp(ports))
    return Result(users, ours, chp)
