"""The database as a shared resource of a real proxy app: opened before stages serve, part of
``/readyz``, and a batch writer registered after it is flushed before it closes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from proxy_core import STAGES, Next, Stage, StageContext
from proxy_core.db import BatchWriter, Database, database
from proxy_core.testing import make_app, stage

WRITER = "tests.db.visits"


class VisitStage(Stage[Any]):
    """Counts every request with one queued row: never a write per request."""

    name = "visits"

    def __init__(self, config: Any, context: StageContext) -> None:
        super().__init__(config, context)
        self.db = database(context)
        self.visits = context.resource(
            WRITER, lambda: BatchWriter(self.db, "visits", ("path",), interval=3600)
        )

    async def lifespan(self, app: web.Application) -> Any:
        await self.db.execute("CREATE TABLE IF NOT EXISTS visits (path text)")
        yield

    async def __call__(self, request: web.Request, next: Next) -> web.StreamResponse:
        self.visits.add((request.path,))
        return web.Response(text=str(len(self.visits)))


async def test_database_resource_in_an_app(aiohttp_client: Any, db_url: str) -> None:
    app = make_app([stage(VisitStage)], f'[database]\nurl = "{db_url}"\n')
    client = await aiohttp_client(app)
    ready = await client.get("/readyz")
    assert ready.status == 200, await ready.text()
    assert (await client.get("/a")).status == 200
    assert await (await client.get("/b")).text() == "2"

    visit_stage = app[STAGES][0]
    assert isinstance(visit_stage, VisitStage)
    stage_db = visit_stage.db
    await client.close()  # app shutdown: the writer flushes, then the database closes
    assert not (await stage_db.readiness()).ready

    reopened = Database(stage_db.config)
    await reopened.connect()
    try:
        assert sorted(r["path"] for r in await reopened.fetch("SELECT path FROM visits")) == ["/a", "/b"]
    finally:
        await reopened.close()
