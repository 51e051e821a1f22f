"""``python -m bench.gateway [--c1-seconds S] [--seconds S]``: one run, side by side against the same
provider stand-in (an OpenAI chat completion, non-streaming, and a streamed one for time to first token):

* direct to the stand-in,
* through the vkey gateway (one process, the production runner, uvloop),
* through LiteLLM's proxy (``/tmp/litellm``: ``python3 -m venv /tmp/litellm &&
  /tmp/litellm/bin/pip install 'litellm[proxy]'``; one worker, master key, no database).

Figures: p50 latency and overhead at concurrency 1, requests/s at concurrency 1 and 20, and time to
first streamed token (p50). The stand-in gets CPU 0, each proxy CPU 1 (when the machine has two).
The gateway runs on the real store (a fresh SQLite file), so key checks, limits and usage rows
cost what they cost in production. The stand-in spaces streamed events ``--event-delay`` apart, so
time to first token shows whether anything on the way holds the first event back until later ones.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp
import uvloop

from .servers import REAL_KEY, prepare_store

ROOT = Path(__file__).resolve().parents[2]
LITELLM = Path(os.environ.get("LITELLM_VENV", "/tmp/litellm")) / "bin" / "litellm"
MASTER_KEY = "sk-litellm-master"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if (os.cpu_count() or 1) > 1 and _has("taskset") else []


def _has(tool: str) -> bool:
    return any((Path(d) / tool).exists() for d in os.environ.get("PATH", "").split(":"))


@contextmanager
def process(
    args: list[str], ready_url: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=log)
        yield from _running(proc, log, args, ready_url)


def _running(
    proc: subprocess.Popen[bytes], log: IO[bytes], args: list[str], ready_url: str
) -> Iterator[subprocess.Popen[bytes]]:
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(_address(ready_url), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    sys.exit(f"{args[0]} did not start:\n{log.read().decode(errors='replace')[-3000:]}")
                time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _address(url: str) -> tuple[str, int]:
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    return host, int(port)


@dataclass
class Row:
    name: str
    p50_ms: float
    p99_ms: float
    rps_c1: float
    rps_c20: float
    ttft_ms: float
    own_overhead_ms: float | None = None
    requests: int = 0  # every request made (warm-up, both runs, streamed)


async def measure(
    name: str, base: str, key: str, c1_seconds: float, seconds: float, warmup: int = 200, streams: int = 100
) -> Row:
    url = f"{base}/chat/completions"
    headers = {"Authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        for _ in range(warmup):
            async with http.post(url, json=BODY, headers=headers) as resp:
                assert resp.status == 200, (name, resp.status, await resp.text())
                await resp.read()
        latencies, overheads = [], []
        started = time.perf_counter()
        until = started + c1_seconds
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            async with http.post(url, json=BODY, headers=headers) as resp:
                await resp.read()
                if "x-gateway-overhead-ms" in resp.headers:
                    overheads.append(float(resp.headers["x-gateway-overhead-ms"]))
            latencies.append(time.perf_counter() - t0)
        rps_c1 = len(latencies) / (time.perf_counter() - started)

        done = 0
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                async with http.post(url, json=BODY, headers=headers) as resp:
                    await resp.read()
                done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(20)))
        rps_c20 = done / (time.perf_counter() - t0)

        ttfts = []
        for _ in range(streams):
            t0 = time.perf_counter()
            async with http.post(url, json={**BODY, "stream": True}, headers=headers) as resp:
                async for chunk in resp.content.iter_any():
                    if b'"content":"H' in chunk:  # the first token ("Hello")
                        ttfts.append(time.perf_counter() - t0)
                        break
                await resp.read()
    own = statistics.median(overheads) if overheads else None
    p99 = statistics.quantiles(latencies, n=100)[98]
    return Row(
        name,
        statistics.median(latencies) * 1000,
        p99 * 1000,
        rps_c1,
        rps_c20,
        statistics.median(ttfts) * 1000,
        own,
        warmup + len(latencies) + done + streams,
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__)
    parser.add_argument("--c1-seconds", type=float, default=10.0, help="duration of the c=1 run per path")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the c=20 run per path")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM")
    parser.add_argument(
        "--event-delay", type=float, default=0.005, help="seconds between the stand-in's streamed events"
    )
    args = parser.parse_args()
    py = sys.executable
    standin_port, gateway_port, litellm_port = free_port(), free_port(), free_port()
    standin = f"http://127.0.0.1:{standin_port}/v1"
    gateway = f"http://127.0.0.1:{gateway_port}/api/gateway/openai"
    rows: list[Row] = []
    run = uvloop.run
    store = f"sqlite:///{tempfile.mkdtemp()}/gateway.db"
    virtual_key = run(prepare_store(store))
    standin_cmd = [*pinned(0), py, "-m", "bench.gateway.servers", "standin", str(standin_port)]
    with process([*standin_cmd, str(args.event_delay)], standin):
        rows.append(run(measure("direct to the stand-in", standin, REAL_KEY, args.c1_seconds, args.seconds)))
        gateway_cmd = [*pinned(1), py, "-m", "bench.gateway.servers", "gateway", str(gateway_port)]
        with process([*gateway_cmd, str(standin_port), store], gateway):
            rows.append(run(measure("vkey gateway", gateway, virtual_key, args.c1_seconds, args.seconds)))
        if not args.no_litellm:
            if not LITELLM.exists():
                sys.exit(
                    f"{LITELLM} is missing: python3 -m venv /tmp/litellm && "
                    "/tmp/litellm/bin/pip install 'litellm[proxy]'"
                )
            rows.append(run(litellm_row(standin, litellm_port, args)))
    report(rows)


LITELLM_VERSION = "1.108.7"  # pinned: the benchmark compares against one known release


def ensure_litellm() -> None:
    """Install LiteLLM's proxy into its own venv (``$LITELLM_VENV``, default ``/tmp/litellm``) once."""
    if LITELLM.exists():
        return
    venv = LITELLM.parent.parent
    print(f"installing litellm[proxy] into {venv}", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = str(venv / "bin" / "pip")
    subprocess.run([pip, "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"], check=True)


def litellm(standin: str, port: int) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """LiteLLM's proxy (one worker, master key, no database) on CPU 1 in front of ``standin``."""
    config = Path(tempfile.mkdtemp()) / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: gpt-4o-mini\n"
        "    litellm_params:\n"
        "      model: openai/gpt-4o-mini\n"
        f"      api_base: {standin}\n"
        f"      api_key: {REAL_KEY}\n"
        "general_settings:\n"
        f"  master_key: {MASTER_KEY}\n"
    )
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "DISABLE_SCHEMA_UPDATE": "true"}
    cmd = [*pinned(1), str(LITELLM), "--config", str(config), "--port", str(port), "--num_workers", "1"]
    return process(cmd, f"http://127.0.0.1:{port}/v1", env)


async def litellm_row(standin: str, port: int, args: argparse.Namespace) -> Row:
    with litellm(standin, port):
        base = f"http://127.0.0.1:{port}/v1"
        return await measure("LiteLLM proxy", base, MASTER_KEY, args.c1_seconds, args.seconds)


def report(rows: list[Row]) -> None:
    direct = rows[0]
    print()
    print("| path | c=1 p50 | c=1 p99 | overhead p50 | c=1 req/s | c=20 req/s | c=20 vs direct | TTFT p50 |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        overhead = "-" if row is direct else f"{row.p50_ms - direct.p50_ms:.3f} ms"
        if row.own_overhead_ms is not None:
            overhead += f" (own: {row.own_overhead_ms:.3f} ms)"
        print(
            f"| {row.name} | {row.p50_ms:.3f} ms | {row.p99_ms:.3f} ms | {overhead} | {row.rps_c1:,.0f} |"
            f" {row.rps_c20:,.0f} | {row.rps_c20 / direct.rps_c20:.2f}x | {row.ttft_ms:.3f} ms |"
        )
    if len(rows) == 3:
        print(f"\ngateway / LiteLLM requests/s at c=20: {rows[1].rps_c20 / rows[2].rps_c20:.1f}x")


if __name__ == "__main__":
    main()
