"""What operators get: ``/healthz``, ``/readyz``, ``/metrics``, request metrics and the access log.

The ops middleware is the first in the chain. It answers its three paths itself, before any stage
(so health checks never need a session), and times every other request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from .errors import error_response
from .forward import OUTCOME, Outcome
from .headers import valid_host
from .logs import AccessLog
from .metrics import read_snapshots
from .redact import redact
from .stage import Next, Stage, StageContext

HEALTH_PATH, READY_PATH, METRICS_PATH = "/healthz", "/readyz", "/metrics"
OPS_PATHS = frozenset({HEALTH_PATH, READY_PATH, METRICS_PATH})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STATUS_TEXT = {code: str(code) for code in range(100, 600)}


class Ops:
    def __init__(
        self,
        stages: Sequence[Stage[Any]],
        context: StageContext,
        access_log: AccessLog | None,
        *,
        worker: int = 0,
        snapshot_dir: Path | None = None,
    ) -> None:
        self.stages = stages
        self.context = context
        self.metrics = context.metrics
        self.forwarder = context.forwarder
        self.access_log = access_log
        self.worker = worker
        self.snapshot_dir = snapshot_dir
        self._handlers = {HEALTH_PATH: self.healthz, READY_PATH: self.readyz, METRICS_PATH: self.metrics_page}

    async def __call__(self, request: web.Request, handler: Next) -> web.StreamResponse:
        path = request.path
        if path in OPS_PATHS:
            return await self._handlers[path](request)
        start = time.perf_counter()  # not loop.time(): uvloop's is in whole milliseconds, per loop turn
        outcome = request[OUTCOME] = Outcome()
        status = 500
        response: web.StreamResponse | None = None
        try:
            if not _target_and_host_valid(request):
                response = error_response(request, 400, "The Host header or the request target is not valid.")
                status = 400
                return response
            response = await handler(request)
            status = 499 if outcome.client_gone else response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            if status < 400 or exc.text != f"{status}: {exc.reason}":
                raise
            response = error_response(request, status, exc.reason, headers=dict(exc.headers))
            return response
        except asyncio.CancelledError:
            # the client went away before the answer was complete (a WebSocket session that ran is a 101)
            status = 101 if outcome.websocket is not None else 499
            raise
        finally:
            elapsed = time.perf_counter() - start
            method = request.method if request.method in _METHODS else "OTHER"
            self.metrics.requests.inc((method, _STATUS_TEXT.get(status, "other")))
            self.metrics.latency.observe(elapsed)
            if self.access_log is not None:
                size = 0 if response is None else response.body_length or response.content_length or 0
                websocket = None if outcome.websocket is None else outcome.websocket.log_fields()
                client = self.forwarder.client(request).ip
                self.access_log.record(request, status, elapsed, size, client, websocket)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"}, headers={"Cache-Control": "no-store"}, dumps=_dumps)

    async def readyz(self, request: web.Request) -> web.Response:
        checks: list[tuple[str, Any]] = [(r.name, r) for r in self.context.resources.values()]
        checks += [(stage.name or type(stage).__name__, stage) for stage in self.stages]
        results = await asyncio.gather(*(c.readiness() for _, c in checks), return_exceptions=True)
        report: dict[str, Any] = {}
        ready = True
        for (name, _), result in zip(checks, results, strict=True):
            if isinstance(result, BaseException):
                entry = {"ready": False, "detail": f"readiness check failed: {type(result).__name__}"}
            else:
                entry = {"ready": result.ready, "detail": redact(result.detail)}
            ready = ready and bool(entry["ready"])
            report[name] = entry
        return web.json_response(
            {"ready": ready, "checks": report},
            status=200 if ready else 503,
            headers={"Cache-Control": "no-store"},
            dumps=_dumps,
        )

    async def metrics_page(self, request: web.Request) -> web.Response:
        others = read_snapshots(self.snapshot_dir, self.worker) if self.snapshot_dir is not None else []
        return web.Response(
            body=self.metrics.render(others).encode(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8", "Cache-Control": "no-store"},
        )


def _target_and_host_valid(request: web.Request) -> bool:
    """A ``Host`` that is a host name or IP literal (as nginx demands), and an absolute-form target
    only when it names that same host."""
    host = request.headers.get("Host", "")
    if host and not valid_host(host):
        return False
    if request.raw_path.startswith("/"):
        return True
    return bool(host) and request.host.lower() == host.lower()  # aiohttp takes ``host`` from the target


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
