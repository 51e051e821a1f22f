"""Spare local sandboxes: started in advance with nobody's environment, their app's server held by the
template's real ``sandbox-env.mjs`` (through the real ``env.sh``) until a create takes one and hands
it the user's environment. Real processes, real Node."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
import orjson
import pytest

from plugins.sandbox_router.providers.base import Handle, SandboxSpec
from plugins.sandbox_router.providers.local import LocalProvider

from .held_app import held_app_template

START_SH = """#!/usr/bin/env bash
source "$(dirname "$0")/env.sh"
cd "$SANDBOX_HOME/shmastra"
mkdir -p .mastra/output && cp server.mjs .mastra/output/index.mjs  # what `mastra dev` bundles
exec node .mastra/output/index.mjs
"""


@pytest.fixture
def node_template(tmp_path: Path) -> Path:
    folder = held_app_template(tmp_path / "template", "shmastra/server.mjs", START_SH)
    (folder / "VERSION").write_text("spare-1\n")
    return folder


def _spec(user: str) -> SandboxSpec:
    return SandboxSpec(user, {"USER_ID": user, "MASTRA_AUTH_TOKEN": f"token-of-{user}"})


async def _until(found: Callable[[], list[Path]], seconds: float = 30) -> Path:
    for _ in range(int(seconds / 0.05)):
        if paths := found():
            return paths[0]
        await asyncio.sleep(0.05)
    raise AssertionError("never appeared")


async def _get(provider: LocalProvider, handle: Handle, token: str | None) -> tuple[int, dict[str, object]]:
    url = provider.endpoint(handle).base_url / "api/mastra/agents"
    headers = {"x-mastra-auth-token": token} if token else {}
    async with aiohttp.ClientSession() as http:
        for _ in range(400):
            try:
                async with http.get(url, headers=headers) as answer:
                    return answer.status, orjson.loads(await answer.read())
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
    raise AssertionError("the app never answered")


async def test_a_new_sandbox_takes_a_spare_that_waited_for_its_environment(
    tmp_path: Path, node_template: Path
) -> None:
    root = tmp_path / "root"
    provider = LocalProvider(root, node_template, tmp_path / "cache", stop_grace=0.5, spares=1, spare_delay=0)
    try:
        first = await provider.create(_spec("u1"), lambda _: None)  # no spare yet: a start of its own
        assert (await _get(provider, first, "token-of-u1"))[1]["user"] == "u1"
        waiting = await _until(lambda: sorted(root.glob("*/home/.sandbox-env.json.waiting")))
        spare = waiting.parents[1]
        server_pid = int(waiting.read_text())
        assert [s.sandbox_id for s in await provider.list()] == [first.sandbox_id]  # spares are nobody's

        second = await provider.create(_spec("u2"), lambda _: None)
        assert second.sandbox_id == spare.name
        assert await _get(provider, second, "token-of-u2") == (200, {"user": "u2", "pid": server_pid})
        assert (await _get(provider, second, None))[0] == 401
        assert (await _get(provider, second, "token-of-u1"))[0] == 401
        assert oct((spare / "home" / ".sandbox-env.json").stat().st_mode & 0o777) == "0o600"
        listed = {s.sandbox_id: s.metadata["user_id"] for s in await provider.list()}
        assert listed == {first.sandbox_id: "u1", second.sandbox_id: "u2"}

        stale = (await _until(lambda: [p for p in root.glob("*/spare.json") if p.parent != spare])).parent

        (node_template / "VERSION").write_text("spare-2\n")  # a new template version: the spare is stale
        third = await provider.create(_spec("u3"), lambda _: None)
        assert third.sandbox_id != stale.name
        assert (await _get(provider, third, "token-of-u3"))[1]["user"] == "u3"
        await _until(lambda: [] if stale.exists() else [stale])  # discarded, and one of the new version made
        fresh = (await _until(lambda: sorted(root.glob("*/spare.json")))).read_bytes()
        assert orjson.loads(fresh)["key"].startswith("spare-2-")
    finally:
        await provider.close()
