"""Once with the real bundled template (``e2b-template/``: the Mastra project, pm2, the healer), through
the whole cloud with the local provider: npm installs once into the shared test cache (slow, still run
by the default command), then a first visit reaches Studio and the Mastra API of the user's sandbox."""

from __future__ import annotations

import pytest

from plugins.sandbox_router.template import BUNDLED_TEMPLATE_DIR
from tests.npm_cache import cache_root
from tests.plugins.sandbox_router.conftest import JSON, CloudFactory


@pytest.mark.slow
async def test_first_visit_with_the_bundled_mastra_template(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud(
        template_dir=str(BUNDLED_TEMPLATE_DIR),
        health_timeout=240,
        start_timeout=900,
        healer={"startup_grace": 240, "build_stuck": 120},  # patient with a loaded machine
        local={"cache_dir": str(cache_root())},
    )
    ada = await cloud.sign_in("ada@example.com")
    final = await cloud.until_running(ada)
    assert final["event"] == "ready", final

    async with ada.get(cloud.at("/studio/")) as answer:
        assert answer.status == 200
        studio = await answer.text()
    assert f"window.MASTRA_SERVER_PORT = '{cloud.url.port}'" in studio
    assert "window.MASTRA_API_PREFIX = '/api/mastra'" in studio
    async with ada.get(cloud.at("/api/mastra/agents"), headers=JSON) as answer:
        assert answer.status == 200, await answer.text()  # the proxy added the app token
        assert "assistant" in await answer.json()
    user_id = await cloud.user_id(ada)
    assert await cloud.router.lifecycle.pause(user_id, "test")  # pm2-runtime and every child stop
    assert [s.state for s in await cloud.router.provider.list()] == ["paused"]
