"""Shared fixtures: real aiohttp servers on loopback (pytest-aiohttp) plus the proxy in front of them,
the Node clients some tests drive, and headless Chromium for the browser tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.async_api import Browser


@pytest.fixture(scope="session")
def node_clients() -> Path:
    """The installed Node clients (see :mod:`tests.node_clients`)."""
    from tests.node_clients import install

    return install()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium for one test (see :mod:`tests.browser`), closed after it."""
    from tests.browser import chromium

    async with chromium() as launched:
        yield launched
