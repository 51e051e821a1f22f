"""Benchmark 1: small GETs with keep-alive through each proxy (wrk -c50), as ``shared/bench/anchor_bench.sh``.

The upstream (nginx) and wrk share CPU 0, each proxy runs alone on CPU 1, and each proxy gets the
same treatment the anchor script gives it: started, one second to settle, then measured (no warm-up
run: node's JIT and our pools warm up within the first few thousand requests either way). Rows:
direct, nginx as a proxy, configurable-http-proxy (CHP), a naive aiohttp proxy, ours with the bare
``upstream`` stage (access log off, then on), and ours as a teammate's browser meets it: the default
pipeline of ``proxy.toml`` (``vkey``, ``auth`` with a signed-in session cookie, the forwarding stage,
access log on). Then ours with 2 workers vs 1, nothing pinned: throughput should grow with cores.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import procs, signin
from .env import node_version
from .report import table, verdict

LOAD_CPU, PROXY_CPU = "0", "1"
SIGNED_IN = "ours: vkey, auth (signed in), upstream; +access log"


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: str
    requests: int = 0


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def wrk(
    url: str,
    duration: str,
    connections: int,
    threads: int = 1,
    cpus: str | None = LOAD_CPU,
    headers: Sequence[str] = (),
) -> WrkResult:
    extra = [arg for header in headers for arg in ("-H", header)]
    cmd = [
        *procs.pin(cpus),
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}",
        "--latency",
        *extra,
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    errors = re.search(r"Socket errors: (.*)|Non-2xx or 3xx responses: (\d+)", out)
    count = re.search(r"(\d+) requests in", out)
    return WrkResult(
        float(rps.group(1)) if rps else 0.0,
        _ms(p50.group(1)) if p50 else float("nan"),
        _ms(p99.group(1)) if p99 else float("nan"),
        errors.group(0) if errors else "",
        int(count.group(1)) if count else 0,
    )


Prepare = Callable[[procs.Service], Sequence[str]]


def _measure(
    start: Callable[[], procs.Service],
    duration: str,
    connections: int,
    *,
    pinned: bool = True,
    threads: int = 1,
    prepare: Prepare | None = None,
) -> tuple[str, WrkResult]:
    with start() as service:
        headers = prepare(service) if prepare is not None else ()
        time.sleep(1.0)
        cpus = LOAD_CPU if pinned else None
        return service.name, wrk(service.url + "/", duration, connections, threads, cpus, headers)


Starter = Callable[[], procs.Service]


def signed_in(upstream: str, forwarding: str = "", name: str = SIGNED_IN) -> tuple[Starter, Prepare]:
    """Start ours with the default pipeline in front of ``upstream``; sign in (the session cookie)."""
    data = signin.data_dir()

    def start() -> procs.Service:
        return signin.ours(upstream, data, cpus=PROXY_CPU, name=name, forwarding=forwarding)

    def prepare(service: procs.Service) -> Sequence[str]:
        return [f"Cookie: {signin.sign_in(service.url, data)}"]

    return start, prepare


def run(duration: str = "10s", connections: int = 50) -> None:
    with procs.nginx_upstream(cpus=LOAD_CPU) as up:
        time.sleep(0.5)
        u = up.url
        results = [("direct (nginx upstream)", wrk(u + "/", duration, connections))]
        pipeline_start, pipeline_prepare = signed_in(u)
        runs: list[tuple[Starter, Prepare | None]] = [
            (lambda: procs.nginx_proxy(u, cpus=PROXY_CPU), None),
            (lambda: procs.chp(u, cpus=PROXY_CPU), None),
            (lambda: procs.naive(u, cpus=PROXY_CPU, uvloop=True), None),
            (lambda: procs.ours(u, cpus=PROXY_CPU), None),
            (lambda: procs.ours(u, cpus=PROXY_CPU, access_log=True), None),
            (pipeline_start, pipeline_prepare),
        ]
        for start, prepare in runs:
            results.append(_measure(start, duration, connections, prepare=prepare))
        by_name = dict(results)
        chp = by_name["configurable-http-proxy"]
        ours, logged = by_name["ours (workers=1)"], by_name["ours (workers=1) +access log"]
        pipeline = by_name[SIGNED_IN]
        rows = [(name, r.rps, r.p50_ms, r.p99_ms, f"{r.rps / chp.rps:.2f}x", r.errors) for name, r in results]
        table(
            f"throughput: small GET, keep-alive, wrk -c{connections} {duration}; "
            f"upstream+wrk on CPU 0, proxy on CPU 1; CHP on node {node_version()}",
            ("path", "req/s", "p50 ms", "p99 ms", "rps vs CHP", "errors"),
            rows,
        )
        verdict("ours/CHP requests/s", ours.rps / chp.rps, ">= 2.0", ours.rps >= 2 * chp.rps)
        verdict("ours/CHP p99", ours.p99_ms / chp.p99_ms, "<= 0.5", ours.p99_ms <= 0.5 * chp.p99_ms)
        share, p99 = pipeline.rps / chp.rps, pipeline.p99_ms / chp.p99_ms
        verdict("signed-in pipeline/CHP requests/s", share, ">= 1.5", share >= 1.5)
        verdict("signed-in pipeline/CHP p99", p99, "<= 0.5", p99 <= 0.5)
        cost = 1 - logged.rps / ours.rps
        verdict("access log cost (share of requests/s)", cost, "<= 0.05", cost <= 0.05)

        scaling = [
            _measure(lambda w=w: procs.ours(u, workers=w), duration, connections * 2, pinned=False, threads=2)
            for w in (1, 2)
        ]
        table(
            f"workers: nothing pinned, wrk -t2 -c{connections * 2} {duration} "
            "(wrk, nginx and the proxy share 2 cores)",
            ("path", "req/s", "p50 ms", "p99 ms"),
            [(name, r.rps, r.p50_ms, r.p99_ms) for name, r in scaling],
        )
        one, two = scaling[0][1], scaling[1][1]
        verdict("workers=2 / workers=1 requests/s", two.rps / one.rps, "> 1.0", two.rps > one.rps)
