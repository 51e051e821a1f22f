"""Benchmark 1: small GETs with keep-alive through each proxy (wrk -c50), as ``shared/bench/anchor_bench.sh``.

The upstream (nginx) and wrk share CPU 0, each proxy runs alone on CPU 1. Then ours with 2 workers vs
1 worker, nothing pinned: throughput should grow with cores.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import procs
from .report import table, verdict

LOAD_CPU, PROXY_CPU = "0", "1"


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: str


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def wrk(
    url: str, duration: str, connections: int, threads: int = 1, cpus: str | None = LOAD_CPU
) -> WrkResult:
    cmd = [*procs.pin(cpus), "wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}", "--latency", url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    errors = re.search(r"Socket errors: (.*)|Non-2xx or 3xx responses: (\d+)", out)
    return WrkResult(
        float(rps.group(1)) if rps else 0.0,
        _ms(p50.group(1)) if p50 else float("nan"),
        _ms(p99.group(1)) if p99 else float("nan"),
        errors.group(0) if errors else "",
    )


def _measure(
    start: Callable[[], procs.Service],
    duration: str,
    connections: int,
    *,
    pinned: bool = True,
    threads: int = 1,
) -> tuple[str, WrkResult]:
    with start() as service:
        time.sleep(1.0)
        wrk(service.url + "/", "2s", connections, threads, LOAD_CPU if pinned else None)  # warm-up
        return service.name, wrk(
            service.url + "/", duration, connections, threads, LOAD_CPU if pinned else None
        )


def run(duration: str = "10s", connections: int = 50) -> None:
    with procs.nginx_upstream(cpus=LOAD_CPU) as up:
        time.sleep(0.5)
        u = up.url
        results = [("direct (nginx upstream)", wrk(u + "/", duration, connections))]
        for start in (
            lambda: procs.nginx_proxy(u, cpus=PROXY_CPU),
            lambda: procs.chp(u, cpus=PROXY_CPU),
            lambda: procs.naive(u, cpus=PROXY_CPU, uvloop=True),
            lambda: procs.ours(u, cpus=PROXY_CPU),
            lambda: procs.ours(u, cpus=PROXY_CPU, access_log=True),
        ):
            results.append(_measure(start, duration, connections))
        by_name = dict(results)
        chp, ours = by_name["configurable-http-proxy"], by_name["ours (workers=1)"]
        rows = [(name, r.rps, r.p50_ms, r.p99_ms, f"{r.rps / chp.rps:.2f}x", r.errors) for name, r in results]
        table(
            f"throughput: small GET, keep-alive, wrk -c{connections} {duration}; "
            "upstream+wrk on CPU 0, proxy on CPU 1",
            ("path", "req/s", "p50 ms", "p99 ms", "rps vs CHP", "errors"),
            rows,
        )
        verdict("ours/CHP requests/s", ours.rps / chp.rps, ">= 2.0", ours.rps >= 2 * chp.rps)
        verdict("ours/CHP p99", ours.p99_ms / chp.p99_ms, "<= 0.5", ours.p99_ms <= 0.5 * chp.p99_ms)

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
