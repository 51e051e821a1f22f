"""Client helpers shared by the streaming benchmarks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, TypeVar

import aiohttp

from . import procs

T = TypeVar("T")
R = TypeVar("R")


def session(**kwargs: object) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, force_close=bool(kwargs.pop("force_close", False))),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60),
        auto_decompress=False,
        **kwargs,  # type: ignore[arg-type]
    )


async def gauges(base_url: str) -> dict[str, float]:
    """``proxy_open_streams`` and ``proxy_open_websockets`` from our ``/metrics`` (summed over labels)."""
    wanted = {"proxy_open_streams": 0.0, "proxy_open_websockets": 0.0}
    async with session() as s, s.get(base_url + "/metrics") as r:
        text = await r.text()
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in wanted:
            wanted[name] += float(line.rsplit(" ", 1)[1])
    return wanted


async def batched(items: Sequence[T], size: int, each: Callable[[T], Awaitable[R]]) -> list[R]:
    """``each`` of ``items``, ``size`` at a time concurrently (a batch after the other), results in order."""
    done: list[R] = []
    for start in range(0, len(items), size):
        done += await asyncio.gather(*(each(item) for item in items[start : start + size]))
    return done


class RssSampler:
    """Samples a process's VmRSS from a thread every ``interval`` seconds while in the ``with`` block."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid, self.interval = pid, interval
        self.baseline_kb = procs.rss_kb(pid)
        self.peak_kb = self.baseline_kb
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, procs.rss_kb(self.pid))
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, procs.rss_kb(self.pid))

    @property
    def growth_mb(self) -> float:
        return (self.peak_kb - self.baseline_kb) / 1024


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a fresh uvloop event loop (the client side should not be the bottleneck)."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
