"""``python -m bench [throughput|sse|memory|idle|soak|all] ...``: run benchmarks, print tables."""

from __future__ import annotations

import argparse
import time

from . import env

BENCHMARKS = ("throughput", "sse", "memory", "idle", "soak")


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("which", nargs="*", help=f"any of {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--duration", default="10s", help="wrk duration per row (throughput)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (throughput)")
    parser.add_argument("--events", type=int, default=250, help="SSE events per path (sse)")
    parser.add_argument("--size-mib", type=int, default=1024, help="upload/download size (memory)")
    parser.add_argument("--idle", type=int, default=2000, help="idle WebSockets / SSE streams (idle)")
    parser.add_argument("--no-chp", action="store_true", help="leave configurable-http-proxy out (idle)")
    parser.add_argument("--requests", type=int, default=100_000, help="requests in the soak (soak)")
    parser.add_argument("--soak-seconds", type=float, default=240.0, help="time cap of the soak (soak)")
    args = parser.parse_args()
    unknown = set(args.which) - {*BENCHMARKS, "all"}
    if unknown:
        parser.error(
            f"unknown benchmark {', '.join(sorted(unknown))}; choose from {', '.join(BENCHMARKS)}, all"
        )
    chosen = BENCHMARKS if not args.which or "all" in args.which else tuple(dict.fromkeys(args.which))

    env.raise_fd_limit()
    env.ensure_tools(
        need_wrk="throughput" in chosen,
        need_nginx="throughput" in chosen,
        need_chp=bool(set(chosen) - {"soak"}) and not (args.no_chp and set(chosen) == {"idle"}),
    )
    for name in chosen:
        started = time.monotonic()
        if name == "throughput":
            from . import throughput

            throughput.run(args.duration, args.connections)
        elif name == "sse":
            from . import sse

            sse.run(args.events)
        elif name == "memory":
            from . import memory

            memory.run(args.size_mib)
        elif name == "idle":
            from . import idle

            idle.run(args.idle, with_chp=not args.no_chp)
        elif name == "soak":
            from . import soak

            soak.run(args.requests, args.soak_seconds)
        print(f"  ({name}: {time.monotonic() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
