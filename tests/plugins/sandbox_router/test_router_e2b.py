"""The router with the ``e2b`` provider: the real SDK against the E2B stand-in, whose sandboxes run
the stand-in template; the same first visit, forwarding, pause/resume and export as with ``local``."""

from __future__ import annotations

import io
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from plugins.sandbox_router import reprovision_sandbox
from tests.plugins.sandbox_router.conftest import JSON, CloudFactory
from tests.standins.e2b import E2BStandin, running_e2b_standin


@pytest.fixture
async def standin(tmp_path: Path, template: Path) -> AsyncIterator[E2BStandin]:
    (template / ".template-version").write_text("standin-1\n")  # E2B's template build writes it
    async with running_e2b_standin(tmp_path / "e2b", templates={"shmastra": template}) as running:
        yield running


async def test_e2b_sandbox_end_to_end(make_cloud: CloudFactory, standin: E2BStandin) -> None:
    settings = {**standin.settings, "start_command": "bash start.sh", "app_check_command": "false"}
    cloud = await make_cloud(provider="e2b", e2b=settings)
    ada = await cloud.sign_in("ada@example.com")
    final = await cloud.until_running(ada)
    assert final["event"] == "ready", final
    user_id = await cloud.user_id(ada)
    row = await cloud.sandbox(user_id)
    assert row.provider == "e2b" and row.template_version == "standin-1"
    assert row.sandbox_id in standin.sandboxes

    async with ada.get(cloud.at("/studio/")) as answer:
        html = await answer.text()
    assert f"window.MASTRA_SERVER_PORT = '{cloud.url.port}'" in html
    async with ada.post(cloud.at("/api/mastra/files?name=kept.txt"), data=b"e2b", headers=JSON) as answer:
        assert answer.status == 204
    async with ada.get(cloud.at("/api/mastra/x"), headers=JSON) as answer:
        sent = {k.lower(): v for k, v in (await answer.json())["headers"].items()}
    assert sent["x-mastra-auth-token"] == row.app_token and "cookie" not in sent

    assert await cloud.router.lifecycle.pause(user_id, "test")
    assert standin.sandboxes[row.sandbox_id or ""].state == "paused"
    async with ada.get(cloud.at("/api/mastra/files?name=kept.txt"), headers=JSON) as answer:
        assert answer.status == 503
    assert (await cloud.until_running(ada))["event"] == "ready"
    async with ada.get(cloud.at("/api/mastra/files?name=kept.txt"), headers=JSON) as answer:
        assert await answer.read() == b"e2b"

    async with ada.get(cloud.at("/api/sandbox/export"), headers=JSON) as answer:
        assert answer.status == 200, await answer.text()
        archive = await answer.read()
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        names = tar.getnames()
    assert "shmastra/kept.txt" in names and not any("node_modules" in n for n in names)


async def test_reprovision_carries_the_users_files_into_a_new_e2b_sandbox(
    make_cloud: CloudFactory, standin: E2BStandin
) -> None:
    settings = {**standin.settings, "start_command": "bash start.sh", "app_check_command": "false"}
    cloud = await make_cloud(provider="e2b", e2b=settings)
    ada = await cloud.sign_in("ada@example.com")
    assert (await cloud.until_running(ada))["event"] == "ready"
    user_id = await cloud.user_id(ada)
    async with ada.post(cloud.at("/api/mastra/files?name=kept.txt"), data=b"e2b", headers=JSON) as answer:
        assert answer.status == 204
    old = (await cloud.sandbox(user_id)).sandbox_id or ""
    (standin.sandboxes[old].home / "shmastra" / "node_modules").mkdir(exist_ok=True)
    (standin.sandboxes[old].home / "shmastra" / "node_modules" / "dep.js").write_text("dependency")
    assert await cloud.router.lifecycle.pause(user_id, "test")  # packed after a resume: E2B runs no
    # commands in a paused sandbox

    done = await reprovision_sandbox(cloud.router.lifecycle, user_id, keep_files=True, limit=30)
    assert done.kept_files and done.archive_bytes > 0
    row = await cloud.sandbox(user_id)
    assert row.state == "running" and row.sandbox_id not in (None, old)
    assert old not in standin.sandboxes  # the old one is removed at E2B
    home = standin.sandboxes[row.sandbox_id or ""].home
    assert (home / "shmastra" / "kept.txt").read_bytes() == b"e2b"
    assert not (home / "shmastra" / "node_modules" / "dep.js").exists()  # the new template's
    assert not (home / ".reprovision").exists()
    async with ada.get(cloud.at("/api/mastra/files?name=kept.txt"), headers=JSON) as answer:
        assert answer.status == 200 and await answer.read() == b"e2b"
