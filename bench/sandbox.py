"""The sandbox router's cost: ``python -m bench.sandbox [--rounds N] [--seconds S] [--starts N]``.

1. Overhead once running: the signed-in pipeline (``auth`` then ``upstream``) against the same pipeline
   with ``sandbox_router`` (``auth`` then ``sandbox_router``, local provider), both forwarding small GETs
   to the same kind of app. Each proxy is a ``shmastra-cloud serve`` process; A/B runs are interleaved
   and the median requests/s of each is reported with their ratio (goal: the router costs <= 10 %).
2. Paused -> first byte with the local provider (``pause = "stop"``): pause the sandbox, then time
   the first request until the app's answer arrives (the 503, the start, ``/health``, the forwarded
   request), against the same template started directly and polled for ``/health`` (the process
   start + health part). The difference is the router's own share (goal: <= 100 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from . import procs, signin

APP = """
import os
from aiohttp import web

async def health(request):
    return web.json_response({"success": True})

async def small(request):
    return web.Response(text="x" * 64)

app = web.Application()
app.router.add_get("/health", health)
app.router.add_get("/{tail:.*}", small)
web.run_app(app, host="127.0.0.1", port=int(os.environ["PORT"]), print=None, access_log=None)
"""


def write_template(folder: Path) -> Path:
    template = folder / "template"
    template.mkdir()
    (template / "VERSION").write_text("bench-1\n")
    (template / "app.py").write_text(APP)
    (template / "start.sh").write_text(f'cd "$SANDBOX_HOME"\nexec {sys.executable} app.py\n')
    return template


def write_config(folder: Path, port: int, last_stage: str) -> Path:
    config = folder / "proxy.toml"
    config.write_text(
        f'[server]\nport = {port}\naccess_log = false\nlog_level = "warning"\n\n'
        f'[database]\nurl = "sqlite:///{folder}/store.db"\n\n'
        '[[pipeline]]\nstage = "auth"\nallowed_domains = ["example.com"]\n'
        f'data_dir = "{folder}/auth"\npublic_paths = ["/api/sandbox/heal"]\n'
        f'[pipeline.email_code]\ndelivery = "mailbox"\nmailbox_dir = "{folder}/mail"\n\n' + last_stage
    )
    return config


def serve(config: Path, port: int) -> subprocess.Popen[bytes]:
    program = Path(sys.executable).parent / "shmastra-cloud"
    proc = subprocess.Popen([str(program), "serve", "--config", str(config)], start_new_session=True)
    procs.wait_for_port(port, proc=proc)
    return proc


async def until_ready(http: aiohttp.ClientSession, base: str) -> None:
    async with http.get(base + "/api/sandbox/events") as answer:
        async for line in answer.content:
            if line.startswith(b"event: ready"):
                return
            if line.startswith(b"event: failed"):
                raise RuntimeError("the sandbox failed to start")


async def load(http: aiohttp.ClientSession, url: str, seconds: float, concurrency: int) -> tuple[float, int]:
    """Requests per second of ``concurrency`` keep-alive clients asking ``url`` for ``seconds``, and
    how many were made."""
    done = 0
    deadline = time.monotonic() + seconds

    async def client() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            async with http.get(url, headers={"Accept": "application/json"}) as answer:
                await answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"{url} answered {answer.status}")
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return done / (time.monotonic() - started), done


async def direct_start(template: Path, folder: Path) -> float:
    """Seconds from starting the template's start.sh to its first healthy answer."""
    port = procs.free_port()
    home = folder / "direct-home"
    home.mkdir(exist_ok=True)
    (home / "app.py").write_text(APP)
    env = {"PATH": "/usr/bin:/bin", "PORT": str(port), "SANDBOX_HOME": str(home)}
    started = time.monotonic()
    proc = subprocess.Popen(["bash", str(template / "start.sh")], env=env, start_new_session=True)
    try:
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/health") as answer:
                        if answer.status == 200:
                            return time.monotonic() - started
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.005)
    finally:
        proc.terminate()
        proc.wait()


async def main(rounds: int, seconds: float, starts: int, concurrency: int, bwrap: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        template = write_template(root)
        app_port = procs.free_port()
        app_home = root / "upstream-home"
        app_home.mkdir()
        (app_home / "app.py").write_text(APP)
        upstream = subprocess.Popen(
            [sys.executable, "app.py"], cwd=app_home, env={"PORT": str(app_port)}, start_new_session=True
        )
        procs.wait_for_port(app_port, proc=upstream)
        folders = {name: root / name for name in ("upstream", "router")}
        for folder in folders.values():
            folder.mkdir()
        ports = {name: procs.free_port() for name in folders}
        stages = {
            "upstream": f'[[pipeline]]\nstage = "upstream"\nurl = "http://127.0.0.1:{app_port}"\n',
            "router": (
                f'[[pipeline]]\nstage = "sandbox_router"\ntemplate_dir = "{template}"\n'
                "health_interval = 0.01\n"
                f'[pipeline.local]\nroot = "{folders["router"]}/sandboxes"\n'
                f'cache_dir = "{folders["router"]}/cache"\nhidden_paths = []\nbwrap = "{bwrap}"\n'
                # a stopped sandbox, to compare with starting the template directly (a frozen one's
                # resume is a thaw: ``bench.starttime`` measures that)
                'pause = "stop"\n'
            ),
        }
        servers = {
            name: serve(write_config(folders[name], ports[name], stages[name]), ports[name])
            for name in folders
        }
        try:
            clients = {}
            for name in folders:
                clients[name] = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.CookieJar(unsafe=True)
                )
                base = f"http://127.0.0.1:{ports[name]}"
                await signin.enter_code(clients[name], base, folders[name] / "mail")
            router = f"http://127.0.0.1:{ports['router']}"
            async with clients["router"].get(
                router + "/api/mastra/x", headers={"Accept": "application/json"}
            ):
                pass
            await until_ready(clients["router"], router)

            results: dict[str, list[float]] = {name: [] for name in folders}
            cpu: dict[str, list[float]] = {name: [] for name in folders}
            for _ in range(rounds):
                for name in folders:
                    url = f"http://127.0.0.1:{ports[name]}/api/mastra/small"
                    before = procs.cpu_seconds([servers[name].pid])
                    rate, count = await load(clients[name], url, seconds, concurrency)
                    results[name].append(rate)
                    cpu[name].append((procs.cpu_seconds([servers[name].pid]) - before) / count * 1e6)
            medians = {name: statistics.median(values) for name, values in results.items()}
            per_request = {name: statistics.median(values) for name, values in cpu.items()}
            print(f"signed-in small GET, {concurrency} clients, {rounds} interleaved rounds of {seconds:g} s")
            for name in folders:
                rounds_text = ", ".join(f"{v:.0f}" for v in results[name])
                print(
                    f"  auth + {name:<8} {medians[name]:7.0f} req/s, {per_request[name]:6.1f} us CPU/request"
                    f"   (req/s by round: {rounds_text})"
                )
            print(
                f"  router / upstream: {medians['router'] / medians['upstream']:.3f} x req/s, "
                f"{per_request['router'] / per_request['upstream']:.3f} x CPU per request"
            )

            cli = Path(sys.executable).parent / "shmastra-cloud"
            router_config = folders["router"] / "proxy.toml"
            through, direct = [], []
            for _ in range(starts):
                subprocess.run(
                    [str(cli), "sandboxes", "pause", signin.EMAIL, "--config", str(router_config)],
                    check=True,
                    capture_output=True,
                )
                direct.append(await direct_start(template, root))
                http = clients["router"]
                started = time.monotonic()
                while True:
                    async with http.get(
                        router + "/api/mastra/small", headers={"Accept": "application/json"}
                    ) as r:
                        await r.read()
                        if r.status == 200:
                            break
                    await until_ready(http, router)
                through.append(time.monotonic() - started)
            d, t = statistics.median(direct), statistics.median(through)
            share = statistics.median(b - a for a, b in zip(direct, through, strict=True))
            print(f"paused -> first byte, local provider (bwrap: {bwrap}), median of {starts}")
            print(f"  process start + health (direct): {d * 1000:7.1f} ms")
            print(f"  through the cloud:               {t * 1000:7.1f} ms")
            print(f"  the router's share (median of the paired differences): {share * 1000:7.1f} ms")
            for session in clients.values():
                await session.close()
        finally:
            for proc in [*servers.values(), upstream]:
                proc.terminate()
                proc.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument(
        "--bwrap", choices=["never", "auto"], default="never", help="run the sandbox under bubblewrap (auto)"
    )
    options = parser.parse_args()
    asyncio.run(main(options.rounds, options.seconds, options.starts, options.concurrency, options.bwrap))
