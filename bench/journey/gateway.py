"""Part (b): the LLM gateway against direct calls and LiteLLM, with :mod:`bench.gateway`'s servers and
measurement (an OpenAI chat completion to the provider stand-in: c=1 latency, c=20 requests/s, time to
first streamed token). The stand-in (CPU 0), the gateway and LiteLLM (CPU 1) are started once and
measured in interleaved rounds; each round also records the proxy's CPU time per request.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import tempfile
from dataclasses import dataclass, field

import uvloop

from .. import procs
from ..gateway.__main__ import (
    MASTER_KEY,
    Row,
    ensure_litellm,
    free_port,
    litellm,
    measure,
    pinned,
    process,
)
from ..gateway.servers import REAL_KEY, prepare_store

DIRECT, GATEWAY, LITELLM = "direct to the stand-in", "vkey gateway", "LiteLLM proxy"


@dataclass
class Result:
    rows: dict[str, list[Row]] = field(default_factory=dict)
    cpu_us: dict[str, list[float]] = field(default_factory=dict)

    def median(self, name: str, attribute: str) -> float:
        return statistics.median(self.values(name, attribute))

    def values(self, name: str, attribute: str) -> list[float]:
        return [float(getattr(row, attribute)) for row in self.rows[name]]


def run(rounds: int, c1_seconds: float, seconds: float, warmup: int, streams: int) -> Result:
    ensure_litellm()
    py = sys.executable
    standin_port, gateway_port, litellm_port = free_port(), free_port(), free_port()
    standin = f"http://127.0.0.1:{standin_port}/v1"
    gateway = f"http://127.0.0.1:{gateway_port}/api/gateway/openai"
    standin_cmd = [*pinned(0), py, "-m", "bench.gateway.servers", "standin", str(standin_port), "0.005"]
    gateway_cmd = [*pinned(1), py, "-m", "bench.gateway.servers", "gateway", str(gateway_port)]
    result = Result()
    with contextlib.ExitStack() as stack:
        store = f"sqlite:///{stack.enter_context(tempfile.TemporaryDirectory())}/gateway.db"
        virtual_key = uvloop.run(prepare_store(store))
        stack.enter_context(process(standin_cmd, standin))
        gateway_proc = stack.enter_context(process([*gateway_cmd, str(standin_port), store], gateway))
        litellm_proc = stack.enter_context(litellm(standin, litellm_port))
        targets = {
            DIRECT: (standin, REAL_KEY, None),
            GATEWAY: (gateway, virtual_key, gateway_proc.pid),
            LITELLM: (f"http://127.0.0.1:{litellm_port}/v1", MASTER_KEY, litellm_proc.pid),
        }
        names = list(targets)
        for n in range(rounds):
            for name in names[n % len(names) :] + names[: n % len(names)]:
                base, key, pid = targets[name]
                before = procs.cpu_seconds([pid]) if pid else 0.0
                row = uvloop.run(measure(name, base, key, c1_seconds, seconds, warmup, streams))
                result.rows.setdefault(name, []).append(row)
                if pid:
                    used = procs.cpu_seconds([pid]) - before
                    result.cpu_us.setdefault(name, []).append(used / row.requests * 1e6)
    return result
