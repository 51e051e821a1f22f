"""The bundled Mastra project, installed from the npm registry by ``prepare()``, populated into a
workspace and started by the template's ``start.sh`` (pm2-runtime) with ``SANDBOX_HOME`` and ``PORT``,
as the local provider runs it: health, Studio, auth and an agent call reaching a provider stand-in
through an OpenAI-compatible endpoint. The healer runs beside it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession

from plugins.sandbox_router.template import PreparedTemplate
from tests.standins.llm_providers import STATE, WORDS, standin_app

from .conftest import VIRTUAL_KEY, CloudReports, StartSandbox, wait_for, wait_until

pytestmark = pytest.mark.slow

APP_TOKEN = "app-token-not-the-virtual-key"


async def _answers(url: str) -> bool:
    try:
        async with ClientSession() as session:
            async with session.get(url) as response:
                return response.status == 200
    except OSError:
        return False


def _app_tree(listing: list[dict[str, Any]]) -> list[int]:
    """The pids of the ``shmastra`` app's process tree (from /proc)."""
    pending = [next(entry["pid"] for entry in listing if entry["name"] == "shmastra")]
    found: list[int] = []
    while pending:
        pid = pending.pop()
        found.append(pid)
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            pending.extend(int(child) for child in children.read_text().split())
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def test_the_bundled_mastra_project_serves_studio_the_api_and_an_agent(
    aiohttp_server: Any, mastra_prepared: PreparedTemplate, start_sandbox: StartSandbox, cloud: CloudReports
) -> None:
    provider = await aiohttp_server(standin_app({"openai": VIRTUAL_KEY}))
    sandbox = await start_sandbox(
        mastra_prepared,
        {
            "MASTRA_AUTH_TOKEN": APP_TOKEN,
            "MASTRA_STUDIO_BASE_PATH": "/studio",
            "MASTRA_API_PREFIX": "/api/mastra",
            "OPENAI_BASE_URL": str(provider.make_url("/v1")),
            "OPENAI_API_KEY": VIRTUAL_KEY,
            "SHMASTRA_CLOUD_URL": cloud.url,
            "SHMASTRA_VIRTUAL_KEY": VIRTUAL_KEY,
            "USER_ID": "u1",
            "CORS_ORIGIN": "https://cloud.example.test",
            "HEALER_INTERVAL": "1",
            "HEALER_STARTUP_GRACE": "240",  # a loaded machine bundles slowly: no restarts of a good start
            "HEALER_BUILD_STUCK_SECONDS": "120",
        },
    )
    assert (sandbox.home / ".template-version").read_text() == f"{mastra_prepared.version}\n"
    assert os.path.islink(sandbox.project / "node_modules")
    base = f"http://127.0.0.1:{sandbox.port}"
    await wait_until(lambda: _answers(f"{base}/health"), "the Mastra dev server answers /health", 180)

    async with ClientSession() as session:
        async with session.get(f"{base}/health") as response:
            assert await response.json() == {"success": True}
        async with session.get(f"{base}/studio") as response:
            assert response.status == 200
            studio = await response.text()
        assert '<base href="/studio/"' in studio
        assert "window.MASTRA_API_PREFIX = '/api/mastra'" in studio
        # the browser is sent to the cloud's public origin, not to the sandbox's own address
        assert "window.MASTRA_SERVER_HOST = 'cloud.example.test'" in studio
        assert "window.MASTRA_SERVER_PORT = '443'" in studio
        assert "window.MASTRA_SERVER_PROTOCOL = 'https'" in studio

        async with session.get(f"{base}/api/mastra/agents") as response:
            assert response.status == 401
        async with session.get(
            f"{base}/api/mastra/agents", headers={"Authorization": "Bearer wrong"}
        ) as response:
            assert response.status == 401
        async with session.get(
            f"{base}/api/mastra/agents", headers={"x-mastra-auth-token": APP_TOKEN}
        ) as response:
            assert response.status == 200
            assert "assistant" in await response.json()

        auth = {"Authorization": f"Bearer {APP_TOKEN}"}
        ask = {"messages": [{"role": "user", "content": "Say hello"}]}
        async with session.post(
            f"{base}/api/mastra/agents/assistant/generate", json=ask, headers=auth
        ) as response:
            body = await response.text()
            assert response.status == 200, body
        assert json.loads(body)["text"] == "".join(WORDS)

    calls = [r for r in provider.app[STATE].received if r.path == "/v1/chat/completions"]
    assert calls and calls[-1].headers["authorization"] == f"Bearer {VIRTUAL_KEY}"
    assert json.loads(calls[-1].body)["messages"][-1]["content"] in (
        "Say hello",
        [{"type": "text", "text": "Say hello"}],
    )

    await wait_for(lambda: "ready" in cloud.statuses(), "the healer reports the app ready")

    # a restart reaches every process of the app (npm, the mastra CLI, the dev server below it)
    before = _app_tree(json.loads(await sandbox.pm2("jlist")))
    assert len(before) >= 2
    await sandbox.pm2("restart", "shmastra")
    await wait_until(lambda: _answers(f"{base}/health"), "the restarted dev server answers /health", 180)
    assert not any(_alive(pid) for pid in before)

    # stopping start.sh (pm2-runtime in the foreground) stops every process it started
    listing = json.loads(await sandbox.pm2("jlist"))
    pids = [entry["pid"] for entry in listing if entry["pid"]]
    assert {entry["name"] for entry in listing} == {"shmastra", "healer"} and len(pids) == 2
    await sandbox.stop()
    assert sandbox.process.returncode is not None
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not await _answers(f"{base}/health")
