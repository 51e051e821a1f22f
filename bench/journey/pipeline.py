"""Part (a): the full signed-in pipeline with ``sandbox_router`` against configurable-http-proxy (CHP)
and nginx, all forwarding small GETs to the same app: the nginx inside a running local sandbox.

A browser signs in (emailed code) and opens its sandbox; then ``wrk`` sends small GETs with the session
cookie through ours (``vkey``, ``auth``, ``sandbox_router``, access log on), and without one through CHP
and nginx pointed at the sandbox's port, and to the app directly. Each proxy runs alone on CPU 1; wrk
and the sandbox's app on CPU 0 (moved there after the cloud spawned it). The proxies are started once,
each gets one discarded warm-up run (CHP's first seconds, before node's JIT has compiled its hot path,
run at a third of its later speed), then they are measured in interleaved rounds (the order rotates
each round); each round records requests/s, p99 and the proxy's CPU time per request (its whole
process group), the figure other work on a shared machine disturbs least.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from .. import procs
from ..clients import run_async
from ..throughput import LOAD_CPU, PROXY_CPU, wrk
from . import apps, cloud

OURS, CHP, NGINX, DIRECT = "ours: vkey, auth, sandbox_router", "configurable-http-proxy", "nginx", "direct"
PATH = "/api/mastra/small"


@dataclass
class Series:
    rps: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    errors: set[str] = field(default_factory=set)


@dataclass
class Result:
    series: dict[str, Series]
    vs_chp_rps: list[float] = field(default_factory=list)  # ours / CHP requests/s, per round
    vs_chp_cpu: list[float] = field(default_factory=list)  # CHP's CPU per request / ours, per round
    vs_chp_p99: list[float] = field(default_factory=list)  # ours / CHP p99, per round
    vs_nginx_rps: list[float] = field(default_factory=list)  # ours / nginx requests/s, per round


async def _sign_in_and_open(sandbox_cloud: cloud.Cloud) -> str:
    """The session cookie of a user whose sandbox is running."""
    http = await cloud.signed_in(sandbox_cloud, "bench@example.com")
    try:
        await cloud.open_sandbox(http, sandbox_cloud.url)
        jar = {c.key: c.value for c in http.cookie_jar}
        return f"auth_session={jar['auth_session']}"
    finally:
        await http.close()


async def _check(url: str, cookie: str | None) -> None:
    headers = {"Cookie": cookie} if cookie else {}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as answer:
        body = await answer.text()
    if answer.status != 200 or body != procs.SMALL_BODY:
        raise RuntimeError(f"{url} answered {answer.status} {body[:80]!r}, not the app's body")


def run(rounds: int, duration: str, connections: int) -> Result:
    with tempfile.TemporaryDirectory(prefix="shmastra-bench-template-") as scratch:
        return _run(apps.fast_template(Path(scratch) / "fast"), rounds, duration, connections)


def _run(template: Path, rounds: int, duration: str, connections: int) -> Result:
    with cloud.start(template, cpus=PROXY_CPU) as ours:
        cookie = run_async(_sign_in_and_open(ours))
        [(pgid, port)] = ours.sandboxes().values()
        procs.pin_group(pgid, LOAD_CPU)
        app = f"http://{procs.HOST}:{port}"
        with procs.chp(app, cpus=PROXY_CPU) as chp, procs.nginx_proxy(app, cpus=PROXY_CPU) as nginx:
            targets: dict[str, tuple[str, procs.Service | None, tuple[str, ...]]] = {
                OURS: (ours.url, ours.service, (f"Cookie: {cookie}",)),
                CHP: (chp.url, chp, ()),
                NGINX: (nginx.url, nginx, ()),
                DIRECT: (app, None, ()),
            }
            for base, _, headers in targets.values():
                run_async(_check(base + PATH, headers[0].removeprefix("Cookie: ") if headers else None))
            time.sleep(1.0)
            for base, _, headers in targets.values():  # discarded: node's JIT, our pools and caches
                wrk(base + PATH, duration, connections, headers=headers)
            result = Result({name: Series() for name in targets})
            names = list(targets)
            for n in range(rounds):
                order = names[n % len(names) :] + names[: n % len(names)]
                got = {}
                for name in order:
                    base, service, headers = targets[name]
                    members = procs.group_members(service.pid) if service else []
                    before = procs.cpu_seconds(members)
                    measured = wrk(base + PATH, duration, connections, headers=headers)
                    used = procs.cpu_seconds(members) - before
                    series = result.series[name]
                    series.rps.append(measured.rps)
                    series.p99_ms.append(measured.p99_ms)
                    if service is not None and measured.requests:
                        series.cpu_us.append(used / measured.requests * 1e6)
                    if measured.errors:
                        series.errors.add(measured.errors)
                    got[name] = series
                result.vs_chp_rps.append(got[OURS].rps[-1] / got[CHP].rps[-1])
                result.vs_chp_p99.append(got[OURS].p99_ms[-1] / got[CHP].p99_ms[-1])
                result.vs_chp_cpu.append(got[CHP].cpu_us[-1] / got[OURS].cpu_us[-1])
                result.vs_nginx_rps.append(got[OURS].rps[-1] / got[NGINX].rps[-1])
    return result
