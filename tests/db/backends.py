"""Fixtures for the contract suite: a real SQLite file and a real Postgres schema per test.

Postgres is 127.0.0.1:5432 (trust auth). Each test gets a fresh schema reached through
``search_path`` in the URL, dropped afterwards. If Postgres is down these fixtures fail loudly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from proxy_core.db import Database, DatabaseConfig
from proxy_core.testing import postgres_schema

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/test"

MakeDatabase = Callable[..., Database]


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with postgres_schema(PG_SERVER) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/store.db"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """The same test on both backends."""
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    return url


@pytest.fixture
async def make_db(db_url: str) -> AsyncIterator[MakeDatabase]:
    """``make_db(**config)``: an unopened Database on this test's backend, closed at the end."""
    made: list[Database] = []

    def make(**options: Any) -> Database:
        options.setdefault("retry_initial", 0.05)
        db = Database(DatabaseConfig(url=db_url, **options))
        made.append(db)
        return db

    yield make
    for db in made:
        await db.close()


@pytest.fixture
async def db(make_db: MakeDatabase) -> Database:
    """An opened, migrated database."""
    database = make_db()
    await database.open()
    readiness = await database.readiness()
    assert readiness.ready, readiness.detail
    return database


def write_config(path: Path, url: str, **database: Any) -> Path:
    """A proxy.toml whose [database] points at ``url``."""
    lines = ["[database]", f'url = "{url}"']
    lines += [
        f"{key} = {str(value).lower() if isinstance(value, bool) else value!r}"
        for key, value in database.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path
