"""A small Prometheus registry built for the hot path: an observation is a dict look-up and an add.

Stages register their own series with :meth:`Metrics.counter` / :meth:`Metrics.gauge` /
:meth:`Metrics.histogram`. With several worker processes each worker writes a snapshot to a shared
directory and ``/metrics`` adds them up, so one scrape sees the whole server.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson

Labels = tuple[str, ...]

DEFAULT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _Series(ABC):
    kind = ""

    def __init__(self, name: str, help: str, labelnames: Iterable[str] = ()) -> None:
        self.name, self.help, self.labelnames = name, help, tuple(labelnames)

    @abstractmethod
    def samples(self) -> Iterator[tuple[str, Labels, float]]: ...

    @abstractmethod
    def dump(self) -> Any: ...

    @abstractmethod
    def merge(self, data: Any) -> None: ...


S = TypeVar("S", bound=_Series)


class Counter(_Series):
    kind = "counter"

    def __init__(self, name: str, help: str, labelnames: Iterable[str] = ()) -> None:
        super().__init__(name, help, labelnames)
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        values = self.values
        values[labels] = values.get(labels, 0.0) + amount

    def get(self, labels: Labels = ()) -> float:
        return self.values.get(labels, 0.0)

    def samples(self) -> Iterator[tuple[str, Labels, float]]:
        suffix = "" if self.name.endswith("_total") or self.kind == "gauge" else "_total"
        for labels, value in self.values.items():
            yield self.name + suffix, labels, value

    def dump(self) -> Any:
        return [[list(k), v] for k, v in self.values.items()]

    def merge(self, data: Any) -> None:
        for labels, value in data:
            self.inc(tuple(labels), value)


class Gauge(Counter):
    kind = "gauge"

    def dec(self, labels: Labels = (), amount: float = 1.0) -> None:
        self.inc(labels, -amount)

    def set(self, labels: Labels, value: float) -> None:
        self.values[labels] = value


class Histogram(_Series):
    kind = "histogram"

    def __init__(
        self, name: str, help: str, labelnames: Iterable[str] = (), buckets: Iterable[float] = DEFAULT_BUCKETS
    ) -> None:
        super().__init__(name, help, labelnames)
        self.bounds = tuple(sorted(buckets))
        self.counts: dict[Labels, list[float]] = {}  # per bucket (non-cumulative), then +Inf, then the sum

    def observe(self, value: float, labels: Labels = ()) -> None:
        counts = self.counts.get(labels)
        if counts is None:
            counts = self.counts[labels] = [0.0] * (len(self.bounds) + 2)
        counts[bisect_left(self.bounds, value)] += 1
        counts[-1] += value

    def count(self, labels: Labels = ()) -> float:
        counts = self.counts.get(labels)
        return sum(counts[:-1]) if counts else 0.0

    def samples(self) -> Iterator[tuple[str, Labels, float]]:
        for labels, counts in self.counts.items():
            running = 0.0
            for bound, n in zip((*self.bounds, math.inf), counts[:-1], strict=True):
                running += n
                le = "+Inf" if bound == math.inf else repr(bound)
                yield f"{self.name}_bucket", (*labels, le), running
            yield f"{self.name}_count", labels, running
            yield f"{self.name}_sum", labels, counts[-1]

    def label_names(self, sample: str) -> tuple[str, ...]:
        return (*self.labelnames, "le") if sample.endswith("_bucket") else self.labelnames

    def dump(self) -> Any:
        return [[list(k), v] for k, v in self.counts.items()]

    def merge(self, data: Any) -> None:
        for labels, counts in data:
            mine = self.counts.setdefault(tuple(labels), [0.0] * len(counts))
            for i, n in enumerate(counts):
                mine[i] += n


class Metrics:
    """The registry, with the series every proxy has already created."""

    def __init__(self, prefix: str = "proxy") -> None:
        self.prefix = prefix
        self._series: dict[str, _Series] = {}
        self.requests = self.counter(
            "requests_total", "Requests answered, by method and status.", ("method", "status")
        )
        self.latency = self.histogram("request_duration_seconds", "Time to answer, including the body.")
        self.upstream_errors = self.counter(
            "upstream_errors_total", "Upstream failures, by stage and kind.", ("stage", "kind")
        )
        self.open_streams = self.gauge("open_streams", "Streamed responses in flight, by stage.", ("stage",))
        self.open_websockets = self.gauge("open_websockets", "Proxied WebSockets open, by stage.", ("stage",))
        self.websocket_sessions = self.counter(
            "websocket_sessions_total",
            "Proxied WebSockets ended, by stage and how (clean, abnormal, too_big, shutdown, close_timeout).",
            ("stage", "ended"),
        )
        self.websocket_buffered = self.gauge(
            "websocket_buffered_bytes", "Bytes proxied WebSockets hold for receivers slower than senders."
        )
        self.websocket_refused = self.counter(
            "websocket_refused_total",
            "WebSocket upgrades refused (503) while the buffered bytes were over the limit, by stage.",
            ("stage",),
        )

    def counter(self, name: str, help: str, labelnames: Iterable[str] = ()) -> Counter:
        return self._add(Counter(f"{self.prefix}_{name}", help, labelnames))

    def gauge(self, name: str, help: str, labelnames: Iterable[str] = ()) -> Gauge:
        return self._add(Gauge(f"{self.prefix}_{name}", help, labelnames))

    def histogram(
        self, name: str, help: str, labelnames: Iterable[str] = (), buckets: Iterable[float] = DEFAULT_BUCKETS
    ) -> Histogram:
        return self._add(Histogram(f"{self.prefix}_{name}", help, labelnames, buckets))

    def _add(self, series: S) -> S:
        if series.name in self._series:
            existing = self._series[series.name]
            if type(existing) is not type(series):
                raise ValueError(f"metric {series.name} is already registered as a {existing.kind}")
            return existing
        self._series[series.name] = series
        return series

    def render(self, others: Iterable[Any] = ()) -> str:
        """The Prometheus text format, with ``others`` (snapshots of sibling workers) added in."""
        merged = self
        extra = list(others)
        if extra:
            merged = Metrics(self.prefix)
            for series in self._series.values():
                merged._add(type(series)(series.name, series.help, series.labelnames)).merge(series.dump())
            for snapshot in extra:
                for name, data in snapshot.items():
                    if name in merged._series:
                        merged._series[name].merge(data)
        lines: list[str] = []
        for series in merged._series.values():
            lines.append(f"# HELP {series.name} {series.help}")
            lines.append(f"# TYPE {series.name} {series.kind}")
            for sample, labels, value in series.samples():
                names = series.label_names(sample) if isinstance(series, Histogram) else series.labelnames
                text = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, labels, strict=True))
                lines.append(f"{sample}{{{text}}} {_number(value)}" if text else f"{sample} {_number(value)}")
        return "\n".join(lines) + "\n"

    def snapshot(self) -> dict[str, Any]:
        return {name: series.dump() for name, series in self._series.items()}

    def write_snapshot(self, directory: Path, worker: int) -> None:
        """Atomically publish this worker's numbers for its siblings' ``/metrics``."""
        target = directory / f"worker-{worker}.json"
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(self.snapshot()))
        os.replace(tmp, target)


def read_snapshots(directory: Path, skip_worker: int) -> list[dict[str, Any]]:
    snapshots = []
    for path in sorted(directory.glob("worker-*.json")):
        if path.name == f"worker-{skip_worker}.json":
            continue
        try:
            snapshots.append(orjson.loads(path.read_bytes()))
        except (OSError, orjson.JSONDecodeError):
            continue
    return snapshots


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)
