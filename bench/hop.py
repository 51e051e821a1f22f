"""What one forwarding hop costs here: ``python -m bench.hop [--seconds S] [--rounds N]``.

The gateway's latency goal is an overhead over calling the provider directly; this measures the floor
any proxy meets on this machine. A chat-completion POST (the body of ``shared/bench/gateway_anchor.sh``)
to ``bench.gateway``'s provider stand-in, at concurrency 1 and 20 (``wrk`` on CPU 0 with the stand-in,
each proxy alone on CPU 1): direct, through nginx (forwarding only, keep-alive upstream), through
ours (the bare ``upstream`` stage), configurable-http-proxy, the naive aiohttp proxy and the vkey
gateway (the real store on a fresh SQLite file, key check, usage tap and row). Rounds alternate the
order; per row the median p50, p99, requests/s and the proxy's CPU time per request (all processes of
its group: nginx's worker, the gateway's SQLite thread) are printed, with p50 over direct.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uvloop

from . import env, procs
from .gateway.__main__ import pinned, process
from .gateway.servers import REAL_KEY, prepare_store
from .report import table
from .throughput import LOAD_CPU, PROXY_CPU

BODY = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", re.M)
_SCALE = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


@dataclass
class Row:
    name: str
    url: str
    script: Path  # wrk's Lua script: the POST with this row's key
    pgid: int | None  # the proxy's process (and group, if it leads one); None: direct
    p50: dict[int, list[float]] = field(default_factory=lambda: {1: [], 20: []})
    p99: dict[int, list[float]] = field(default_factory=lambda: {1: [], 20: []})
    rps: dict[int, list[float]] = field(default_factory=lambda: {1: [], 20: []})
    cpu_us: dict[int, list[float]] = field(default_factory=lambda: {1: [], 20: []})

    def add(self, connections: int, burst: Burst) -> None:
        self.p50[connections].append(burst.p50)
        self.p99[connections].append(burst.p99)
        self.rps[connections].append(burst.rps)
        self.cpu_us[connections].append(burst.cpu_us)


@dataclass(frozen=True)
class Burst:
    p50: float
    p99: float
    rps: float
    cpu_us: float


def _script(path: Path, key: str) -> Path:
    """wrk's Lua script for the chat-completion POST with ``key``, written to ``path``."""
    path.write_text(
        f'wrk.method = "POST"\nwrk.body = \'{BODY}\'\nwrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n'
    )
    return path


def _burst(row: Row, connections: int, seconds: int) -> Burst:
    # the proxy's process group (nginx's worker), or the process alone when it leads none
    pids = [] if row.pgid is None else procs.group_members(row.pgid) or [row.pgid]
    before = procs.cpu_seconds(pids)
    cmd = [*procs.pin(LOAD_CPU), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    out = subprocess.run([*cmd, "-s", str(row.script), row.url], capture_output=True, text=True).stdout
    spent = procs.cpu_seconds(pids) - before
    requests = re.search(r"(\d+) requests in", out)
    if requests is None or "Non-2xx" in out:
        raise RuntimeError(f"{row.name}: wrk did not get clean answers:\n{out}")
    count = int(requests.group(1))
    latency = {q: float(v) * _SCALE[unit] for q, v, unit in _LATENCY.findall(out)}
    if len(latency) != 2:
        raise RuntimeError(f"{row.name}: no latency distribution in wrk's output:\n{out}")
    return Burst(latency["50"], latency["99"], count / seconds, spent / count * 1e6)


@contextmanager
def _proxies(standin: str) -> Iterator[list[tuple[str, str, int | None, str]]]:
    """(name, chat-completions URL, process group, key) of every proxy, started in front of ``standin``."""
    port = procs.free_port()
    starters: list[tuple[str, Callable[[], AbstractContextManager[procs.Service]]]] = [
        ("nginx (forwarding only)", lambda: procs.nginx_proxy(standin, cpus=PROXY_CPU)),
        ("ours: bare upstream", lambda: procs.ours(standin, cpus=PROXY_CPU)),
        ("configurable-http-proxy", lambda: procs.chp(standin, cpus=PROXY_CPU)),
        ("naive aiohttp +uvloop", lambda: procs.naive(standin, cpus=PROXY_CPU)),
    ]
    path = "/v1/chat/completions"
    gateway_cmd = [*pinned(1), sys.executable, "-m", "bench.gateway.servers", "gateway", str(port)]
    upstream_port = standin.rsplit(":", 1)[1]
    started: list[tuple[str, str, int | None, str]] = []
    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="shmastra-bench-hop-"))
        store = f"sqlite:///{folder}/gateway.db"
        virtual_key = uvloop.run(prepare_store(store))
        for name, start in starters:
            service = stack.enter_context(start())
            started.append((name, service.url + path, service.pid, REAL_KEY))
        url = f"http://127.0.0.1:{port}"
        gateway = stack.enter_context(process([*gateway_cmd, upstream_port, store], url + "/healthz"))
        started.append(
            ("vkey gateway", f"{url}/api/gateway/openai/chat/completions", gateway.pid, virtual_key)
        )
        yield started


def run(seconds: int, rounds: int) -> None:
    env.ensure_tools()
    standin_port = procs.free_port()
    standin = f"http://127.0.0.1:{standin_port}"
    standin_cmd = [
        *pinned(0),
        sys.executable,
        "-m",
        "bench.gateway.servers",
        "standin",
        str(standin_port),
        "0",
    ]
    with (
        tempfile.TemporaryDirectory(prefix="shmastra-bench-hop-") as scripts,
        process(standin_cmd, standin + "/v1"),
        _proxies(standin) as proxies,
    ):
        paths = [("direct to the stand-in", standin + "/v1/chat/completions", None, REAL_KEY), *proxies]
        rows = [
            Row(name, url, _script(Path(scripts) / f"{n}.lua", key), pid)
            for n, (name, url, pid, key) in enumerate(paths)
        ]
        for row in rows:
            _burst(row, 20, 1)  # a warm-up, not kept
        for round_ in range(rounds):
            for row in rows if round_ % 2 == 0 else rows[::-1]:
                for connections in (1, 20):
                    row.add(connections, _burst(row, connections, seconds))
    direct = rows[0]
    lines = []
    for row in rows:
        p50 = statistics.median(row.p50[1])
        over = "-" if row is direct else f"+{p50 - statistics.median(direct.p50[1]):.3f}"
        cpu = "-"
        if row.pgid is not None:
            cpu = f"{statistics.median(row.cpu_us[1]):.0f} / {statistics.median(row.cpu_us[20]):.0f}"
        lines.append(
            (
                row.name,
                f"{p50:.3f}",
                over,
                f"{statistics.median(row.p99[1]):.3f}",
                f"{statistics.median(row.rps[20]):,.0f}",
                f"{statistics.median(row.rps[20]) / statistics.median(direct.rps[20]):.2f}x",
                cpu,
            )
        )
    table(
        f"one hop, chat-completion POST, {rounds} alternating rounds of wrk {seconds} s at c=1 and c=20; "
        "stand-in + wrk on CPU 0, each proxy on CPU 1",
        (
            "path",
            "c=1 p50 ms",
            "over direct",
            "c=1 p99 ms",
            "c=20 req/s",
            "vs direct",
            "CPU µs/req c=1 / c=20",
        ),
        lines,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.hop", description=__doc__)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    run(args.seconds, args.rounds)
