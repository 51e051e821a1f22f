"""A template snapshotted with its app already running (E2B's start command + ready check): the app
never saw the create call's environment, so the e2b provider writes the sandbox's own environment to
the template's env file, and the app's server (held by the template's real ``sandbox-env.mjs``
preload, through the real ``env.sh``) starts with it. Real SDK, E2B stand-in, real Node."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from plugins.sandbox_router.providers.base import Handle, SandboxSpec
from plugins.sandbox_router.providers.e2b import E2BConfig, E2BProvider
from plugins.sandbox_router.template import node_runtime
from tests.standins.e2b import E2BStandin, StartCommand, running_e2b_standin

from .held_app import held_app_template

SPEC = SandboxSpec(
    user_id="user-1",
    env={"USER_ID": "user-1", "MASTRA_AUTH_TOKEN": "per-sandbox-token", "OPENAI_API_KEY": "vk_user-1_abc"},
)

START_SH = """#!/usr/bin/env bash
source "$(dirname "$0")/env.sh"
echo $$ > "$SANDBOX_HOME/app.pid"
cd "$SANDBOX_HOME/shmastra" && exec node .mastra/output/index.mjs
"""

ENV_FILE = "/home/user/.sandbox-env.json"


@pytest.fixture
def template(tmp_path: Path) -> Path:
    # what `mastra dev` runs, in miniature
    return held_app_template(tmp_path / "template", "shmastra/.mastra/output/index.mjs", START_SH)


@pytest.fixture
async def standin(tmp_path: Path, template: Path) -> AsyncIterator[E2BStandin]:
    # The template's own environment (its `set_envs`); a stand-in sandbox's home is a local folder.
    envs = {"PATH": f"{node_runtime().bin_dir}:/usr/bin:/bin"}
    start = StartCommand(
        command='SHMASTRA_ENV_FILE="$SANDBOX_HOME/.sandbox-env.json" exec ./start.sh',
        ready='test -e "$SANDBOX_HOME/.sandbox-env.json.waiting"',
        envs=envs,
    )
    async with running_e2b_standin(
        tmp_path / "e2b", templates={"shmastra": template}, start_commands={"shmastra": start}
    ) as running:
        yield running


def make_provider(standin: E2BStandin, **settings: str) -> E2BProvider:
    return E2BProvider(
        E2BConfig.model_validate(
            {
                **standin.settings,
                "request_timeout": 10,
                "app_check_command": 'kill -0 "$(cat app.pid)"',
                "start_command": "touch started-by-the-cloud",
                **settings,
            }
        )
    )


async def call(
    provider: E2BProvider, handle: Handle, path: str, token: str | None = None
) -> tuple[int, bytes]:
    endpoint = provider.endpoint(handle)
    headers = {**endpoint.headers, **({"x-mastra-auth-token": token} if token else {})}
    timeout = aiohttp.ClientTimeout(total=2)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(endpoint.base_url.with_path(path), headers=headers) as answer,
    ):
        return answer.status, await answer.read()


async def healthy_within(provider: E2BProvider, handle: Handle, seconds: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        try:
            if (await call(provider, handle, "/health"))[0] == 200:
                return True
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.05)
    return False


async def test_the_snapshots_app_starts_with_the_sandboxs_own_environment(standin: E2BStandin) -> None:
    provider = make_provider(standin)
    try:
        handle = await provider.create(SPEC, lambda _: None)
        sandbox = standin.sandboxes[handle.sandbox_id]
        assert await healthy_within(provider, handle, 20)
        assert not (sandbox.home / "started-by-the-cloud").exists()  # it ran already: nothing started
        status, body = await call(provider, handle, "/api/mastra/agents", "per-sandbox-token")
        assert (status, orjson.loads(body)["user"]) == (200, "user-1")
        assert (await call(provider, handle, "/api/mastra/agents"))[0] == 401
        assert (await call(provider, handle, "/api/mastra/agents", "guess"))[0] == 401
        assert not (sandbox.home / ".sandbox-env.json.waiting").exists()
    finally:
        await provider.close()


async def test_without_the_env_file_the_snapshots_app_never_starts(standin: E2BStandin) -> None:
    """What a snapshot with the app running means when nobody hands it its environment (the provider
    before the env file): the app's server keeps waiting, nothing answers."""
    provider = make_provider(standin, env_file="")
    try:
        handle = await provider.create(SPEC, lambda _: None)
        assert not await healthy_within(provider, handle, 1.5)
        assert (standin.sandboxes[handle.sandbox_id].home / ".sandbox-env.json.waiting").exists()
    finally:
        await provider.close()
