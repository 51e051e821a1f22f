"""Serving: one process, or N worker processes sharing the port (SO_REUSEPORT), with graceful shutdown.

On SIGTERM/SIGINT a worker stops accepting, lets in-flight requests finish for up to
``[server] shutdown_timeout`` seconds in total, cuts whatever still runs at that deadline (long
streams included), then runs every stage's tear-down, which writes what is still queued (usage rows).
So an orchestrator's grace period of ``shutdown_timeout`` plus a few seconds loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import tempfile
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from .app import METRICS, STAGES, create_app
from .config import ProxyConfig, load_config
from .errors import error_response

log = logging.getLogger("proxy_core.server")
_SNAPSHOT_EVERY = 1.0
_CUT = 0.001  # aiohttp reads a grace of 0 as "no limit"; this is "none"
_UNWIND = 5.0  # at most this long for cancelled handlers to run their ``finally`` (usage rows)


class ListenError(Exception):
    """The configured address cannot be bound (in use, not ours, no permission)."""


class _ProxyRequestHandler(RequestHandler):
    """aiohttp answers every parse error with a bare 400; give oversized heads their own status
    (414 for the request line, 431 for header fields) and the same HTML/JSON shape as other errors."""

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        text = "The request could not be understood."
        if isinstance(exc, LineTooLong):
            # aiohttp's parser reports the start of the offending text: a request target starts with
            # "/" or a scheme, a header field with its name or value
            line = exc.args[0] if exc.args else b""
            line = bytes(line) if isinstance(line, bytes | bytearray) else str(line).encode()
            if line.startswith(b"/") or b"://" in line[:16]:
                status, text = 414, "The request line is too long."
            else:
                status, text = 431, "The request's header fields are too large."
        elif status >= 500:
            self.log_exception("Error handling request", exc_info=exc)
            text = "The proxy failed to handle the request."
        response = error_response(request, status, text)
        response.force_close()
        return response

    @property
    def busy(self) -> asyncio.Task[None] | None:
        """The task serving this connection's requests, while it runs."""
        task = self._task_handler
        return task if task is not None and not task.done() else None


class _ProxyServer(web.Server):
    """Our request handler, and a drain bounded by one deadline: aiohttp waits ``shutdown_timeout``
    for running handlers and then again as long for the cancelled ones, and does not cancel a
    handler that is streaming."""

    _drain_started: float | None = None

    def __call__(self) -> RequestHandler:
        return _ProxyRequestHandler(self, loop=self._loop, **self._kwargs)

    def pre_shutdown(self) -> None:
        self._drain_started = asyncio.get_running_loop().time()
        super().pre_shutdown()

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (aiohttp's signature)
        loop = asyncio.get_running_loop()
        connections = list(self.connections)
        handlers = [conn for conn in connections if isinstance(conn, _ProxyRequestHandler)]
        busy = [task for conn in handlers if (task := conn.busy) is not None]
        if busy and timeout is not None:
            remaining = timeout - (loop.time() - (self._drain_started or loop.time()))
            if remaining > 0:
                await asyncio.wait(busy, timeout=remaining)
        elif busy:
            await asyncio.wait(busy)
        # the deadline: every handler still running (a stream, say) is cancelled now
        await asyncio.gather(*(conn.shutdown(_CUT) for conn in connections))
        self._connections.clear()
        if unwinding := [task for task in busy if not task.done()]:
            await asyncio.wait(unwinding, timeout=_UNWIND)  # their ``finally`` blocks queue usage rows


class ProxyRunner(web.AppRunner):
    """An AppRunner whose connections use :class:`_ProxyRequestHandler`."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _ProxyServer  # same state, one overridden factory method
        _drop_current_app_middleware(self.app)
        return server


def _drop_current_app_middleware(app: web.Application) -> None:
    """aiohttp runs every request through one more middleware of its own, which points
    ``request.match_info.current_app`` at each sub-application on the way; an application without
    sub-applications is already the current one, so the proxy drops it (a coroutine frame fewer
    per request). Left as it is if aiohttp's internals ever differ."""
    handlers = getattr(app, "_middlewares_handlers", None)
    if getattr(app, "_subapps", True) or not isinstance(handlers, tuple):
        return
    app._middlewares_handlers = tuple(
        entry for entry in handlers if getattr(entry[0], "__qualname__", "") != _CURRENT_APP_MIDDLEWARE
    )


_CURRENT_APP_MIDDLEWARE = "_fix_request_current_app.<locals>.impl"


def runner_for(app: web.Application, config: ProxyConfig) -> ProxyRunner:
    server = config.server
    return ProxyRunner(
        app,
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=server.shutdown_timeout,
        keepalive_timeout=server.keepalive_timeout,
        max_line_size=int(server.max_header_size),
        max_field_size=int(server.max_header_size),
        read_bufsize=256 * 1024,  # a request body is read in pieces this large (uploads stream faster)
    )


async def serve_app(
    app: web.Application,
    config: ProxyConfig,
    *,
    reuse_port: bool = False,
    stop: asyncio.Event | None = None,
    banner: bool = True,
) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT arrives), then drain and tear down. ``banner``:
    log the start-up line (where to go, and what each stage wants an operator to know)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(signum, stop.set)
    runner = runner_for(app, config)
    await runner.setup()
    # Everything allocated so far lives as long as the process: keep it out of the collector's
    # generations, and collect young objects less often; per-request garbage is freed by refcount.
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    try:
        site = web.TCPSite(
            runner, config.server.host, config.server.port, reuse_port=reuse_port, backlog=2048
        )
        try:
            await site.start()
        except OSError as exc:
            address = f"{config.server.host}:{config.server.port}"
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise ListenError(f"cannot listen on {address}: {reason}") from None
        address = f"http://{_display_host(config.server.host)}:{runner.addresses[0][1]}"
        log.info("listening", extra={"fields": {"address": address}})
        if banner:
            url = str(config.server.public_url).rstrip("/") if config.server.public_url else address
            notes = [note for stage in app[STAGES] if (note := stage.banner())]
            log.info(
                "; ".join([f"ready: open {url}", *notes]),
                extra={"fields": {"highlight": True, "event": "ready", "url": url}},
            )
        await stop.wait()
        log.info("shutting down: draining in-flight requests")
    finally:
        await runner.cleanup()


def _display_host(host: str) -> str:
    """Where a browser on this machine reaches ``host``: a wildcard address is reached as localhost."""
    if host in ("", "0.0.0.0", "::"):
        return "localhost"
    return f"[{host}]" if ":" in host else host


def run(main: Callable[[], Coroutine[Any, Any, None]], use_uvloop: bool) -> None:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed; using asyncio's own event loop")
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(main())
            return
    asyncio.run(main())


def serve(config_path: str, config: ProxyConfig | None = None) -> None:
    """The ``serve`` command: one worker in this process, or a supervisor of N workers (each of which
    reads ``config_path`` itself). ``config``: already loaded from ``config_path``, not read again."""
    config = config or load_config(config_path)
    workers = config.server.workers
    if workers == 1:
        run(lambda: serve_app(create_app(config), config), config.server.uvloop)
        return
    _supervise(config_path, workers, dict(config.defaults))


def _worker_main(
    config_path: str, worker: int, snapshot_dir: str, defaults: Mapping[str, Mapping[str, Any]]
) -> None:
    from .logs import setup_logging

    config = load_config(config_path, defaults=defaults)
    setup_logging(config.server.log_level, config.server.log_format)
    directory = Path(snapshot_dir)

    async def main() -> None:
        app = create_app(config, worker=worker, snapshot_dir=directory)
        metrics = app[METRICS]

        async def publish() -> None:
            while True:
                await asyncio.sleep(_SNAPSHOT_EVERY)
                metrics.write_snapshot(directory, worker)

        task = asyncio.get_running_loop().create_task(publish())
        try:
            await serve_app(app, config, reuse_port=True, banner=worker == 0)
        finally:
            task.cancel()
            metrics.write_snapshot(directory, worker)

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; workers stop on SIGTERM
    run(main, config.server.uvloop)


def _supervise(config_path: str, workers: int, defaults: Mapping[str, Mapping[str, Any]]) -> None:
    ctx = multiprocessing.get_context("spawn")
    stopping = False
    with tempfile.TemporaryDirectory(prefix="proxy-metrics-") as snapshot_dir:

        def start(index: int) -> multiprocessing.process.BaseProcess:
            process = ctx.Process(
                target=_worker_main, args=(config_path, index, snapshot_dir, defaults), daemon=False
            )
            process.start()
            return process

        procs = {i: start(i) for i in range(workers)}

        def on_signal(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True
            for p in procs.values():
                if p.is_alive() and p.pid is not None:
                    p.terminate()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        log.info("supervising workers", extra={"fields": {"workers": workers}})
        while True:
            for index, process in list(procs.items()):
                process.join(timeout=0.5 / workers)
                if process.is_alive() or stopping:
                    continue
                log.error(
                    "worker exited; restarting it",
                    extra={"fields": {"worker": index, "code": process.exitcode}},
                )
                procs[index] = start(index)
            if stopping and not any(p.is_alive() for p in procs.values()):
                return
