"""A local stand-in for E2B's template-build API, the endpoints the ``e2b`` SDK's ``Template.build``
calls (point the SDK at it with ``E2B_API_URL``):

* ``POST /v3/templates`` ``{name, tags, cpuCount, memoryMB}`` → 202 ``{templateID, buildID, names, tags,
  aliases, public}``;
* ``GET /templates/{templateID}/files/{hash}`` → 201 ``{present, url}`` (``url`` where to PUT the
  files' tar archive, here on the stand-in itself);
* ``PUT /uploads/{templateID}/{hash}`` (the archive) → 200;
* ``POST /v2/templates/{templateID}/builds/{buildID}`` (the steps, ``fromImage``, ``startCmd`` …) → 202;
* ``GET /templates/{templateID}/builds/{buildID}/status?logsOffset=`` → 200 ``{templateID, buildID,
  status, logEntries, logs, reason?}``: ``building`` once, then ``ready``, or ``error`` when a COPY
  step names files that were never uploaded.

Every call needs ``X-API-KEY`` equal to the stand-in's key (else 401 ``{code, message}``). What it
received is kept in :class:`BuildState` for tests to inspect.
"""

from __future__ import annotations

import io
import tarfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web


@dataclass
class Build:
    template_id: str
    build_id: str
    name: str
    tags: list[str]
    cpu_count: int | None
    memory_mb: int | None
    started: dict[str, Any] | None = None
    status: str = "waiting"
    reason: str | None = None
    log: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class BuildState:
    api_key: str
    builds: dict[str, Build] = field(default_factory=dict)  # by build id
    uploads: dict[str, bytes] = field(default_factory=dict)  # files hash → tar archive

    def uploaded_names(self, files_hash: str) -> list[str]:
        with tarfile.open(fileobj=io.BytesIO(self.uploads[files_hash])) as archive:
            return sorted(archive.getnames())


STATE = web.AppKey("e2b_build.state", BuildState)


def e2b_build_app(api_key: str) -> web.Application:
    app = web.Application(middlewares=[_authenticate], client_max_size=256 * 2**20)
    app[STATE] = BuildState(api_key)
    app.router.add_post("/v3/templates", _request_build)
    app.router.add_get("/templates/{template_id}/files/{hash}", _file_link)
    app.router.add_put("/uploads/{template_id}/{hash}", _upload)
    app.router.add_post("/v2/templates/{template_id}/builds/{build_id}", _start)
    app.router.add_get("/templates/{template_id}/builds/{build_id}/status", _status)
    return app


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"code": status, "message": message}, status=status)


@web.middleware
async def _authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path.startswith("/uploads/"):  # a presigned upload URL carries no API key
        return await handler(request)
    if request.headers.get("X-API-KEY") != request.app[STATE].api_key:
        return _error(401, "Invalid API key")
    response: web.StreamResponse = await handler(request)
    return response


def _build(request: web.Request) -> Build:
    build = request.app[STATE].builds.get(request.match_info["build_id"])
    if build is None or build.template_id != request.match_info["template_id"]:
        raise web.HTTPNotFound(
            text='{"code":404,"message":"build not found"}', content_type="application/json"
        )
    return build


async def _request_build(request: web.Request) -> web.Response:
    body = await request.json()
    if not body.get("name"):
        return _error(400, "name is required")
    name, _, tag = str(body["name"]).partition(":")
    tags = list(body.get("tags") or ([tag] if tag else ["default"]))
    build = Build(
        template_id=f"tpl{uuid.uuid4().hex[:12]}",
        build_id=str(uuid.uuid4()),
        name=name,
        tags=tags,
        cpu_count=body.get("cpuCount"),
        memory_mb=body.get("memoryMB"),
    )
    request.app[STATE].builds[build.build_id] = build
    return web.json_response(
        {
            "templateID": build.template_id,
            "buildID": build.build_id,
            "names": [name],
            "tags": tags,
            "aliases": [name],
            "public": False,
        },
        status=202,
    )


async def _file_link(request: web.Request) -> web.Response:
    files_hash = request.match_info["hash"]
    present = files_hash in request.app[STATE].uploads
    url = str(
        request.url.with_path(f"/uploads/{request.match_info['template_id']}/{files_hash}").with_query(None)
    )
    return web.json_response({"present": present, **({} if present else {"url": url})}, status=201)


async def _upload(request: web.Request) -> web.Response:
    request.app[STATE].uploads[request.match_info["hash"]] = await request.read()
    return web.Response()


async def _start(request: web.Request) -> web.Response:
    build = _build(request)
    build.started = await request.json()
    return web.Response(status=202)


def _missing_uploads(state: BuildState, build: Build) -> list[str]:
    steps = (build.started or {}).get("steps") or []
    return [
        str(step["args"][0])
        for step in steps
        if step.get("type") == "COPY" and step.get("filesHash") not in state.uploads
    ]


async def _status(request: web.Request) -> web.Response:
    state = request.app[STATE]
    build = _build(request)
    offset = int(request.query.get("logsOffset", "0"))
    _advance(state, build)
    body: dict[str, Any] = {
        "templateID": build.template_id,
        "buildID": build.build_id,
        "status": build.status,
        "logEntries": build.log[offset : offset + 100],
        "logs": [],
    }
    if build.reason is not None:
        body["reason"] = {"message": build.reason}
    return web.json_response(body)


def _advance(state: BuildState, build: Build) -> None:
    """waiting (not started) → building (its steps logged) → ready, or error for missing uploads."""
    if build.started is None or build.status in ("ready", "error"):
        return
    now = datetime.now(UTC).isoformat()
    if build.status == "waiting":
        build.status = "building"
        for number, step in enumerate(build.started.get("steps") or [], start=1):
            line = f"step {number}: {step['type']} {' '.join(map(str, step.get('args') or []))}"
            build.log.append({"timestamp": now, "level": "info", "message": line})
        return
    missing = _missing_uploads(state, build)
    if missing:
        build.status = "error"
        build.reason = f"files were not uploaded: {', '.join(missing)}"
        build.log.append({"timestamp": now, "level": "error", "message": build.reason})
    else:
        build.status = "ready"
        build.log.append({"timestamp": now, "level": "info", "message": "build finished"})
