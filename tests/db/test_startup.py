"""An unreachable database never stops the proxy from starting: it says why and keeps trying."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from proxy_core.db import Database, DatabaseConfig, Unavailable
from tests.servers import free_port


@asynccontextmanager
async def relay(port: int, target: int) -> AsyncIterator[None]:
    """A TCP relay on ``port`` to Postgres on ``target``: the database "coming back"."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(
            pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True
        )

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()


async def wait_ready(db: Database, seconds: float) -> bool:
    for _ in range(int(seconds / 0.05)):
        if (await db.readiness()).ready:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_unreachable_postgres_at_start(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    db = Database(
        DatabaseConfig(url=f"postgresql://postgres@127.0.0.1:{port}/test", retry_initial=0.05, retry_max=0.1)
    )
    await asyncio.wait_for(db.open(), 10)  # returns although nothing listens
    readiness = await db.readiness()
    assert not readiness.ready
    assert f"127.0.0.1:{port}/test is unreachable" in readiness.detail
    with pytest.raises(Unavailable, match=f"127.0.0.1:{port}"):
        await db.fetchval("SELECT 1")
    await asyncio.sleep(0.3)  # several retries, each failing cleanly
    assert not (await db.readiness()).ready
    assert f"127.0.0.1:{port}/test is unreachable" in caplog.text and "retrying in" in caplog.text
    await db.close()


async def test_becomes_ready_when_postgres_comes_back(pg_url: str) -> None:
    port = free_port()
    url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{port}")
    db = Database(DatabaseConfig(url=url, retry_initial=0.05, retry_max=0.2))
    await db.open()
    assert not (await db.readiness()).ready
    async with relay(port, 5432):
        try:
            assert await wait_ready(db, 10)
            assert await db.fetchval("SELECT count(*) FROM schema_migrations") > 0  # migrated on connect
        finally:
            await db.close()


async def test_sqlite_file_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    db = Database(DatabaseConfig(url=f"sqlite:///{tmp_path}/file/store.db", retry_initial=0.05))
    await db.open()
    readiness = await db.readiness()
    assert not readiness.ready and f"{tmp_path}/file/store.db" in readiness.detail
    await db.close()


async def test_close_stops_retrying() -> None:
    db = Database(
        DatabaseConfig(url=f"postgresql://postgres@127.0.0.1:{free_port()}/test", retry_initial=0.05)
    )
    await db.open()
    assert [task.get_name() for task in asyncio.all_tasks()].count("database:reconnect") == 1
    await db.close()
    assert not (await db.readiness()).ready
    assert "database:reconnect" not in [task.get_name() for task in asyncio.all_tasks()]
