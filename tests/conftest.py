"""Shared fixtures: real aiohttp servers on loopback (pytest-aiohttp) plus the proxy in front of them,
and the Node clients some tests drive."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def node_clients() -> Path:
    """The installed Node clients (see :mod:`tests.node_clients`)."""
    from tests.node_clients import install

    return install()
