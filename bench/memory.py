"""Benchmark 2: a 1 GiB streamed upload and a 1 GiB streamed download through each proxy.

The aiohttp upstream generates and consumes the bytes without buffering; the client streams too. The
proxy's VmRSS is sampled every 20 ms from a thread; growth = peak - RSS just before the transfer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from . import procs
from .clients import RssSampler, run_async, session
from .report import table, verdict

MIB = 1024 * 1024
PIECE = b"u" * (256 * 1024)


@dataclass(frozen=True)
class Transfer:
    seconds: float
    size: int
    growth_mb: float | None  # None: not measured (direct)

    @property
    def mb_s(self) -> float:
        return self.size / MIB / self.seconds


async def _body(size: int) -> AsyncIterator[bytes]:
    left = size
    while left > 0:
        piece = PIECE if left >= len(PIECE) else PIECE[:left]
        left -= len(piece)
        yield piece


async def upload(url: str, size: int) -> None:
    async with session() as s, s.post(url + "/upload", data=_body(size)) as r:
        received = (await r.json())["received"]
        if received != size:
            raise RuntimeError(f"upload through {url}: upstream received {received} of {size} bytes")


async def download(url: str, size: int) -> None:
    got = 0
    async with session() as s, s.get(f"{url}/download?size={size}") as r:
        async for chunk in r.content.iter_any():
            got += len(chunk)
    if got != size:
        raise RuntimeError(f"download through {url}: got {got} of {size} bytes")


def _timed(run: Callable[[], None], size: int, pid: int | None) -> Transfer:
    if pid is None:
        started = time.monotonic()
        run()
        return Transfer(time.monotonic() - started, size, None)
    with RssSampler(pid) as sampler:
        started = time.monotonic()
        run()
        seconds = time.monotonic() - started
    return Transfer(seconds, size, sampler.growth_mb)


def _both(url: str, size: int, pid: int | None) -> tuple[float, Transfer, Transfer]:
    run_async(download(url, MIB))  # warm-up: pools, first-use allocations
    run_async(upload(url, MIB))
    baseline = procs.rss_kb(pid) / 1024 if pid is not None else 0.0
    up = _timed(lambda: run_async(upload(url, size)), size, pid)
    down = _timed(lambda: run_async(download(url, size)), size, pid)
    return baseline, up, down


def run(size_mib: int = 1024) -> None:
    size = size_mib * MIB
    with procs.aiohttp_upstream(cpus="0") as up:
        rows = []
        results: dict[str, tuple[float, Transfer, Transfer]] = {"direct": _both(up.url, size, None)}
        for start in (lambda: procs.ours(up.url, cpus="1"), lambda: procs.chp(up.url, cpus="1")):
            with start() as proxy:
                results[proxy.name] = _both(proxy.url, size, proxy.pid)
        for name, (baseline, u, d) in results.items():
            growth = [f"{t.growth_mb:.1f}" if t.growth_mb is not None else "-" for t in (u, d)]
            rows.append((name, f"{baseline:.1f}" if baseline else "-", growth[0], u.mb_s, growth[1], d.mb_s))
        table(
            f"memory: {size_mib} MiB streamed upload and download (proxy on CPU 1, client+upstream on CPU 0)",
            ("path", "base RSS MB", "upload +MB", "upload MB/s", "download +MB", "download MB/s"),
            rows,
        )
        _, u, d = results["ours (workers=1)"]
        worst = max(u.growth_mb or 0.0, d.growth_mb or 0.0)
        verdict("ours peak RSS growth (MB)", worst, "< 50", worst < 50)
