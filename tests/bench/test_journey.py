"""``python -m bench.journey --quick`` runs the whole journey benchmark end to end (real cloud
processes, sandboxes, CHP, nginx, wrk, LiteLLM) and prints every figure it promises. It measures
nothing itself: speed is judged by reading the benchmark's output, never by a timed test."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NUMBER = r"-?[\d,]+\.?\d*"
SPREAD = rf"{NUMBER} \({NUMBER}-{NUMBER}\)"
RATIO = r"\d+\.\d\dx \(\d+\.\d\d-\d+\.\d\d\)"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def output() -> str:
    done = subprocess.run(
        [sys.executable, "-m", "bench.journey", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def row(text: str, label: str) -> str:
    found = [line for line in text.splitlines() if line.startswith(label)]
    assert len(found) == 1, f"no single row {label!r} in:\n{text}"
    return found[0]


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n== ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_signed_in_pipeline_against_chp_and_nginx(output: str) -> None:
    part = section(output, "== (a) signed-in pipeline")
    for label in ("ours: vkey, auth, sandbox_router", "configurable-http-proxy", "nginx"):
        line = row(part, label)
        assert len(re.findall(SPREAD, line)) == 3, line  # req/s, p99, CPU per request
        assert re.search(r"\d+\.\d\dx\s+-$", line), line  # the ratio to CHP, no errors
    assert len(re.findall(SPREAD, row(part, "direct"))) == 2
    for ratio in ("requests/s (per round)", "requests per CPU-second", "p99"):
        assert re.search(rf"ours / CHP {re.escape(ratio)}:\s+{RATIO}", part), ratio
    assert re.search(rf"ours / nginx requests/s:\s+{RATIO}", part)


def test_gateway_against_direct_and_litellm(output: str) -> None:
    part = section(output, "== (b) LLM gateway")
    assert len(re.findall(SPREAD, row(part, "direct to the stand-in"))) == 4
    for label in ("vkey gateway", "LiteLLM proxy"):
        assert len(re.findall(SPREAD, row(part, label))) == 6, label
    assert re.search(rf"gateway / LiteLLM c=20 requests/s:\s+{RATIO}", part)
    assert re.search(rf"gateway / LiteLLM requests per CPU-second:\s+{RATIO}", part)


def test_paused_to_first_byte(output: str) -> None:
    part = section(output, "== (c) paused -> first byte")
    assert len(re.findall(SPREAD, row(part, "resume"))) == 5  # total, provider, app, ours, share
    assert re.search(r"\d\.\d\d \(\d\.\d\d-\d\.\d\d\)$", row(part, "resume"))


def test_memory_per_idle_user_with_streams_held(output: str) -> None:
    part = section(output, "== (d) 10 idle users")
    ours = row(part, "ours: vkey, auth, sandbox_router")
    assert len(re.findall(r"\s-?\d+\.\d", ours)) == 5, ours  # three RSS figures, per user, per stream
    held = int(ours.split()[-1])
    before = int(ours.split()[-2])
    assert held >= before + 20, "each of the 10 users holds a client and a sandbox socket in the cloud"
    assert re.search(r"ours / CHP memory per idle user:\s+\d+\.\d\dx", part)
    assert not re.search(r"\b(nan|inf)\b", output)
