"""``shmastra-cloud template build``: the dry run lists the steps; the real build path runs the real
``e2b`` SDK against the template-build stand-in."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from plugins.sandbox_router.template import BUNDLED_TEMPLATE_DIR
from plugins.sandbox_router.template.definition import SHMASTRA_REF, SHMASTRA_REPO
from proxy_core.cli import main
from tests.standins.e2b_build import STATE, BuildState, e2b_build_app

API_KEY = "e2b_test_key"
VERSION = (BUNDLED_TEMPLATE_DIR / "VERSION").read_text().strip()


def test_dry_run_lists_the_steps_and_calls_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("E2B_API_URL", "http://127.0.0.1:9")  # nothing listens: a call would fail
    assert main(["template", "build", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"# template shmastra:{VERSION} (4 vCPU, 4096 MiB)")
    steps = lines[1:]
    assert steps[0] == "FROM node:22"
    expected_in_order = [
        "apt-get install -y git curl ca-certificates python3",
        "RUN npm install -g pnpm@",
        "COPY runtime/package-lock.json /home/user/runtime/",
        "RUN cd /home/user/runtime && npm ci",
        f"RUN git clone {SHMASTRA_REPO} /home/user/shmastra",
        f"git checkout --quiet --detach {SHMASTRA_REF}",
        "RUN pnpm install",
        "COPY env.sh /home/user/env.sh",
        "COPY start.sh /home/user/start.sh",
        "COPY pm2.sh /home/user/pm2.sh",
        "COPY ecosystem.config.js /home/user/ecosystem.config.js",
        "COPY healer /home/user/healer",
        "COPY sandbox-env.mjs /home/user/sandbox-env.mjs",
        f"RUN echo {VERSION} > /home/user/.template-version",
        "ENV MASTRA_TELEMETRY_DISABLED=1",
    ]
    positions = [
        next(i for i, step in enumerate(steps) if fragment in step) for fragment in expected_in_order
    ]
    assert positions == sorted(positions)


def test_dry_run_with_a_tag_and_a_bad_template_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["template", "build", "--dry-run", "--tag", "2.0.0-rc1"]) == 0
    assert capsys.readouterr().out.startswith("# template shmastra:2.0.0-rc1 ")
    assert main(["template", "build", "--dry-run", "--template-dir", str(tmp_path)]) == 1
    assert f"{tmp_path / 'VERSION'}: cannot read the template version" in capsys.readouterr().err


def test_a_real_build_needs_the_api_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    assert main(["template", "build"]) == 1
    assert "E2B_API_KEY is not set" in capsys.readouterr().err


async def _build(monkeypatch: pytest.MonkeyPatch, url: str, key: str, *args: str) -> int:
    monkeypatch.setenv("E2B_API_URL", url)
    monkeypatch.setenv("E2B_API_KEY", key)
    return await asyncio.to_thread(main, ["template", "build", *args])


async def test_the_build_uploads_the_files_and_runs_the_steps_on_e2b(
    aiohttp_server: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await aiohttp_server(e2b_build_app(API_KEY))
    state: BuildState = server.app[STATE]

    assert await _build(monkeypatch, str(server.make_url("")).rstrip("/"), API_KEY, "--tag", "t1") == 0

    (build,) = state.builds.values()
    assert (build.name, build.tags, build.cpu_count, build.memory_mb) == ("shmastra", ["t1"], 4, 4096)
    assert build.status == "ready"
    started = build.started or {}
    assert started["fromImage"] == "node:22"
    # the app is started at build time and snapshotted running; its server waits for the sandbox's
    # own environment (the ready check), which the e2b provider writes after create
    assert (started["startCmd"], started["readyCmd"]) == (
        "/home/user/start.sh",
        "[ -f /home/user/.sandbox-env.json.waiting ]",
    )
    copies = {step["args"][0]: step["filesHash"] for step in started["steps"] if step["type"] == "COPY"}
    assert set(copies) == {
        "runtime/package.json",
        "runtime/package-lock.json",
        "env.sh",
        "start.sh",
        "pm2.sh",
        "ecosystem.config.js",
        "healer",
        "sandbox-env.mjs",
    }
    healer = state.uploaded_names(copies["healer"])
    assert "healer/main.py" in healer and "healer/tools.py" in healer
    assert not any("__pycache__" in name for name in healer)
    out = capsys.readouterr().out
    assert f"built shmastra:t1: template {build.template_id}, build {build.build_id}" in out
    assert "step 1: RUN apt-get update" in out

    # a second build finds every file already uploaded and sends none again
    uploads = dict(state.uploads)
    assert await _build(monkeypatch, str(server.make_url("")).rstrip("/"), API_KEY, "--tag", "t2") == 0
    assert state.uploads == uploads
    assert "already cached" in capsys.readouterr().out


async def test_a_refused_key_fails_the_build_with_a_message(
    aiohttp_server: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await aiohttp_server(e2b_build_app(API_KEY))
    assert await _build(monkeypatch, str(server.make_url("")).rstrip("/"), "wrong") == 1
    err = capsys.readouterr().err
    assert f"the E2B build of shmastra:{VERSION} failed" in err
    assert "wrong" not in err
    assert server.app[STATE].builds == {}
