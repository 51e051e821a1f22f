"""Fixtures for the Manage tests."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from proxy_core.testing import echo_app
from tests.db.backends import db_url, pg_url, sqlite_url

__all__ = ["db_url", "pg_url", "sqlite_url"]


@pytest.fixture(autouse=True)
def provider_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-openai-0123456789")


@pytest.fixture
async def upstream(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(echo_app())
    return server
