"""``python -m bench.journey [--quick] [options]``: the cloud as a teammate uses it, side by side, in one run.

(a) the full signed-in pipeline (``vkey``, ``auth`` with a session cookie, ``sandbox_router`` to a running
    local sandbox whose app is nginx) vs configurable-http-proxy (CHP) and nginx forwarding to the same
    app: requests/s, p99 and the proxy's CPU time per request, in interleaved rounds;
(b) the LLM gateway vs direct calls and LiteLLM (``bench.gateway``'s servers and measurement, interleaved
    rounds, plus CPU time per request);
(c) paused -> first byte through the cloud (``bench.starttime``'s measurement), split into the
    provider's part, the app's own start and our share;
(d) memory per idle user on the proxy side: ``--users`` teammates signed in, each with their own running
    sandbox (a socat app) and one event stream held through the pipeline; CHP with one route per sandbox
    holding the same streams beside it.

Repeated figures are given as ``median (min-max)``; ratios are taken within a round, then their median.
On a machine shared with other work, the CPU time per request is the steadier figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence

from .. import env
from ..report import spread, table
from ..starttime import Timing
from . import gateway, idle_users, pipeline, resume

PARTS = ("a", "b", "c", "d")


def _load() -> str:
    return "load average " + " ".join(f"{v:.1f}" for v in os.getloadavg())


def _ratio(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def report_pipeline(result: pipeline.Result, rounds: int, duration: str, connections: int) -> None:
    chp = result.series[pipeline.CHP]
    rows = []
    for name, series in result.series.items():
        rows.append(
            (
                name,
                spread(series.rps),
                spread(series.p99_ms, 2),
                spread(series.cpu_us, 1) if series.cpu_us else "-",
                f"{statistics.median(series.rps) / statistics.median(chp.rps):.2f}x",
                ", ".join(sorted(series.errors)) or "-",
            )
        )
    table(
        f"(a) signed-in pipeline: small GET to the sandbox's app, wrk -c{connections} {duration}, "
        f"{rounds} interleaved rounds; proxy on CPU 1, wrk and the app on CPU 0",
        ("path", "req/s", "p99 ms", "proxy CPU us/req", "req/s vs CHP", "errors"),
        rows,
    )
    print(f"  ours / CHP requests/s (per round):          {_ratio(result.vs_chp_rps)}")
    print(f"  ours / CHP requests per CPU-second:         {_ratio(result.vs_chp_cpu)}")
    print(f"  ours / CHP p99:                             {_ratio(result.vs_chp_p99)}")
    print(f"  ours / nginx requests/s:                    {_ratio(result.vs_nginx_rps)}")


def report_gateway(result: gateway.Result, rounds: int) -> None:
    direct = result.median(gateway.DIRECT, "p50_ms")
    direct_c20 = result.median(gateway.DIRECT, "rps_c20")
    rows = []
    for name in result.rows:
        overheads = [v - direct for v in result.values(name, "p50_ms")]
        rows.append(
            (
                name,
                spread(result.values(name, "p50_ms"), 3),
                "-" if name == gateway.DIRECT else spread(overheads, 3),
                spread(result.values(name, "p99_ms"), 2),
                spread(result.values(name, "rps_c20")),
                f"{result.median(name, 'rps_c20') / direct_c20:.2f}x",
                spread(result.values(name, "ttft_ms"), 2),
                spread(result.cpu_us[name], 0) if name in result.cpu_us else "-",
            )
        )
    table(
        f"(b) LLM gateway: chat completion to the provider stand-in, {rounds} interleaved rounds",
        (
            "path",
            "c=1 p50 ms",
            "overhead p50 ms",
            "c=1 p99 ms",
            "c=20 req/s",
            "vs direct",
            "TTFT p50 ms",
            "proxy CPU us/req",
        ),
        rows,
    )
    gw, lite = result.rows[gateway.GATEWAY], result.rows[gateway.LITELLM]
    c20 = [a.rps_c20 / b.rps_c20 for a, b in zip(gw, lite, strict=True)]
    print(f"  gateway / LiteLLM c=20 requests/s:          {_ratio(c20)}")
    cpu = [b / a for a, b in zip(result.cpu_us[gateway.GATEWAY], result.cpu_us[gateway.LITELLM], strict=True)]
    print(f"  gateway / LiteLLM requests per CPU-second:  {_ratio(cpu)}")


def _ms(seconds: Sequence[float]) -> str:
    return spread([v * 1000 for v in seconds], 1)


def _mb(kb: int) -> str:
    return f"{kb / 1024:.1f}"


def report_resume(timings: Sequence[Timing]) -> None:
    share = [t.ours / t.total for t in timings]
    table(
        f"(c) paused -> first byte of Studio through the cloud (local provider, nginx app), "
        f"{len(timings)} resumes",
        ("wait", "total ms", "provider ms", "app start ms", "ours ms", "ours / total"),
        [
            (
                "resume",
                _ms([t.total for t in timings]),
                _ms([t.provider for t in timings]),
                _ms([t.app for t in timings]),
                _ms([t.ours for t in timings]),
                f"{statistics.median(share):.2f} ({min(share):.2f}-{max(share):.2f})",
            )
        ],
    )


def report_idle(result: idle_users.Result) -> None:
    before, running, held = result.ours
    chp_before, chp_held = result.chp
    table(
        f"(d) {result.users} idle users, each with their own running sandbox and one SSE stream held "
        "(proxy process RSS in MB)",
        (
            "proxy",
            "RSS before",
            "RSS sandboxes up",
            "RSS streams held",
            "KB per user",
            "KB per stream",
            "fds before",
            "fds held",
        ),
        [
            (
                "ours: vkey, auth, sandbox_router",
                _mb(before.rss_kb),
                _mb(running.rss_kb),
                _mb(held.rss_kb),
                f"{result.ours_kb_per_user:.1f}",
                f"{result.ours_kb_per_stream:.1f}",
                before.fds,
                held.fds,
            ),
            (
                "configurable-http-proxy (a route per sandbox)",
                _mb(chp_before.rss_kb),
                "-",
                _mb(chp_held.rss_kb),
                f"{result.chp_kb_per_user:.1f}",
                "-",
                chp_before.fds,
                chp_held.fds,
            ),
        ],
    )
    ratio = result.ours_kb_per_user / result.chp_kb_per_user
    print(f"  ours / CHP memory per idle user:            {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.journey",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="short runs and 10 users: checks that it all works"
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds of (a) (default 5; quick 2)")
    parser.add_argument("--duration", help="wrk duration per row and round in (a) (default 5s; quick 1s)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections in (a)")
    parser.add_argument("--gateway-rounds", type=int, help="interleaved rounds of (b) (default 3; quick 1)")
    parser.add_argument("--gateway-seconds", type=float, help="c=1 and c=20 run per row in (b) (default 3)")
    parser.add_argument("--resumes", type=int, help="paused -> first byte repetitions (default 7; quick 2)")
    parser.add_argument("--users", type=int, help="idle users in (d) (default 500; quick 10)")
    parser.add_argument(
        "--only",
        action="append",
        choices=PARTS,
        help="run this part only (repeatable: --only a --only b); default all four",
    )
    args = parser.parse_args()
    quick = args.quick
    rounds = args.rounds or (2 if quick else 5)
    duration = args.duration or ("1s" if quick else "5s")
    gateway_rounds = args.gateway_rounds or (1 if quick else 3)
    gateway_seconds = args.gateway_seconds or (0.3 if quick else 3.0)
    resumes = args.resumes or (2 if quick else 7)
    users = args.users or (10 if quick else 500)

    env.raise_fd_limit()
    env.ensure_tools()
    started = time.monotonic()
    print(f"journey benchmark, {os.cpu_count()} CPUs, {_load()} at the start", flush=True)
    parts = set(args.only or PARTS)
    if "a" in parts:
        report_pipeline(pipeline.run(rounds, duration, args.connections), rounds, duration, args.connections)
    if "b" in parts:
        result_b = gateway.run(
            gateway_rounds, gateway_seconds, gateway_seconds, 20 if quick else 200, 10 if quick else 100
        )
        report_gateway(result_b, gateway_rounds)
    if "c" in parts:
        report_resume(resume.run(resumes))
    if "d" in parts:
        report_idle(idle_users.run(users))
    print(f"\n  (journey: {time.monotonic() - started:.0f} s; {_load()} at the end)", flush=True)


if __name__ == "__main__":
    main()
