"""CPU per request, interleaved: ``python -m bench.cpu [--other PATH] [--rounds N] [--seconds S]``.

On a shared machine requests/s swings with whatever else runs; the proxy's own CPU time per request
does much less. Every proxy under test is started once and kept up (each on CPU 1, the nginx upstream
and wrk on CPU 0); each round sends every proxy one ``wrk -c50`` burst of small GETs, in an order
that alternates between rounds, and reads the proxy process's user+system CPU time before and after
(all its threads: the access log's writer counts). Proxies: configurable-http-proxy (CHP), ours bare
(``upstream`` only), bare with the access log, and the signed-in default pipeline (``vkey``, ``auth``
with a session cookie, ``upstream`` with ``inject_html``, access log on); with ``--other PATH``, the
same three of another checkout too (to compare two versions). Prints per proxy the median µs of CPU
per request with its quartiles, and per-round ratios: CHP's CPU per request over ours ("x CHP", the
figure to hold against the throughput goals when the proxy is CPU-bound), and this checkout's over
the other's.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import env, procs, signin
from .report import table
from .throughput import LOAD_CPU, PROXY_CPU

KINDS = ("bare", "bare +log", "signed-in")
_REQUESTS = re.compile(r"(\d+) requests in")


@dataclass
class Candidate:
    name: str
    start: Callable[[], procs.Service]
    signed_in: Path | None = None  # the auth stage's data folder (the mailbox the code goes to)
    headers: list[str] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)


def _burst(service: procs.Service, seconds: int, headers: Sequence[str]) -> tuple[float, int, float]:
    """CPU seconds the proxy spent, requests answered, wall seconds."""
    extra = [arg for header in headers for arg in ("-H", header)]
    cmd = [*procs.pin(LOAD_CPU), "wrk", "-t1", "-c50", f"-d{seconds}s", *extra, service.url + "/"]
    before, started = procs.cpu_seconds([service.pid]), time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    elapsed, spent = time.monotonic() - started, procs.cpu_seconds([service.pid]) - before
    found = _REQUESTS.search(out)
    if found is None or "Non-2xx" in out:
        raise RuntimeError(f"{service.name}: wrk did not get clean answers:\n{out}")
    return spent, int(found.group(1)), elapsed


def _ours(upstream: str, repo: Path, label: str, kinds: Sequence[str]) -> list[Candidate]:
    def bare(log: bool) -> Callable[[], procs.Service]:
        name = f"{label} bare" + (" +log" if log else "")
        return lambda: procs.ours(upstream, cpus=PROXY_CPU, access_log=log, repo=repo, name=name)

    data = signin.data_dir()

    def signed() -> procs.Service:
        return signin.ours(upstream, data, cpus=PROXY_CPU, name=f"{label} signed-in", repo=repo)

    every = {
        "bare": Candidate(f"{label} bare", bare(False)),
        "bare +log": Candidate(f"{label} bare +log", bare(True)),
        "signed-in": Candidate(f"{label} signed-in", signed, signed_in=data),
    }
    return [every[kind] for kind in kinds]


def _quartiles(values: list[float]) -> str:
    if len(values) < 2:
        return ""
    low, _, high = statistics.quantiles(values, n=4)
    return f"{low:.1f}-{high:.1f}"


def run(rounds: int = 8, seconds: int = 2, other: Path | None = None, kinds: Sequence[str] = KINDS) -> None:
    env.ensure_tools()
    with contextlib.ExitStack() as stack, procs.nginx_upstream(cpus=LOAD_CPU) as up:
        candidates = [Candidate("configurable-http-proxy", lambda: procs.chp(up.url, cpus=PROXY_CPU))]
        candidates += _ours(up.url, env.REPO, "this", kinds)
        if other is not None:
            candidates += _ours(up.url, other.resolve(), "other", kinds)
        services = {}
        for candidate in candidates:
            service = services[candidate.name] = stack.enter_context(candidate.start())
            if candidate.signed_in is not None:
                candidate.headers = [f"Cookie: {signin.sign_in(service.url, candidate.signed_in)}"]
        time.sleep(1.0)
        for candidate in candidates:  # a short warm-up each (JIT, pools, caches), not measured
            _burst(services[candidate.name], 1, candidate.headers)
        for round_ in range(rounds):
            order = candidates if round_ % 2 == 0 else candidates[::-1]
            for candidate in order:
                spent, count, elapsed = _burst(services[candidate.name], seconds, candidate.headers)
                candidate.cpu_us.append(spent / count * 1e6)
                candidate.rps.append(count / elapsed)
    chp = candidates[0]
    rows = []
    for c in candidates:
        vs_chp = statistics.median(a / b for a, b in zip(chp.cpu_us, c.cpu_us, strict=True))
        rows.append(
            (
                c.name,
                f"{statistics.median(c.cpu_us):.1f}",
                _quartiles(c.cpu_us),
                f"{statistics.median(c.rps):,.0f}",
                f"{vs_chp:.2f}x",
            )
        )
    table(
        f"CPU per request: {rounds} interleaved rounds of wrk -c50 {seconds} s per proxy; "
        "upstream+wrk on CPU 0, each proxy on CPU 1",
        ("proxy", "CPU µs/req (median)", "quartiles", "req/s (median)", "x CHP (CPU/req)"),
        rows,
    )
    by_name = {c.name: c for c in candidates}
    for label in ("this", "other") if other is not None else ("this",):
        if f"{label} bare" not in by_name or f"{label} bare +log" not in by_name:
            continue
        bare, logged = by_name[f"{label} bare"], by_name[f"{label} bare +log"]
        cost = statistics.median(b / a - 1 for a, b in zip(bare.cpu_us, logged.cpu_us, strict=True))
        print(f"  {label}: the access log adds {cost:.1%} CPU per request (median of rounds)")
    if other is not None:
        for kind in kinds:
            mine, theirs = by_name[f"this {kind}"].cpu_us, by_name[f"other {kind}"].cpu_us
            ratios = sorted(a / b for a, b in zip(mine, theirs, strict=True))
            print(
                f"  this/other CPU per request, {kind}: {statistics.median(ratios):.3f} "
                f"(quartiles {_quartiles(ratios)})"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench.cpu", description=__doc__)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=2)
    parser.add_argument("--other", type=Path, help="another checkout to compare with this one")
    parser.add_argument(
        "--only", action="append", choices=KINDS, help="measure only these of ours (repeatable)"
    )
    args = parser.parse_args()
    run(args.rounds, args.seconds, args.other, args.only or KINDS)
