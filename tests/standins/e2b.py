"""A local E2B, so the real ``e2b`` SDK runs unchanged in tests.

One aiohttp server speaks both sides of E2B's wire contract:

* the control-plane REST API (``X-API-KEY``; JSON, camelCase; errors ``{code, message}``):
  ``POST /v2/sandboxes`` (honours ``Idempotency-Key``), ``POST /v2/sandboxes/{id}/connect``
  (200 running / 201 resumed), ``POST /sandboxes/{id}/pause`` (204 / 409), ``DELETE
  /sandboxes/{id}`` (204 / 404), ``POST /sandboxes/{id}/timeout``, ``GET /v2/sandboxes`` (metadata
  and state filters, ``limit``, ``nextToken`` and the ``x-next-token`` header), ``GET
  /sandboxes/{id}``. A sandbox past its TTL is paused (``autoPause``) or killed, as E2B does;
* the sandbox side, chosen like E2B's edge by the ``E2b-Sandbox-Id``/``E2b-Sandbox-Port`` headers
  (what the SDK sends to ``E2B_SANDBOX_URL``) or a ``<port>-<id>.<domain>`` host: envd on port
  49983 (``X-Access-Token``; Connect RPC ``POST /process.Process/Start`` with
  ``application/connect+json`` server streaming, ``GET``/``POST /files``, ``GET /health``) and any
  other port proxied (HTTP, streamed bodies, WebSockets) to a real local app, with
  ``e2b-traffic-access-token`` required when the sandbox was created without public traffic.
  Traffic to a paused sandbox created with auto-resume resumes it, as on E2B.

Each sandbox is a folder (``templates`` maps a template name to a folder copied into the home of
every sandbox made from it; its ``/`` lives at ``<root>/<id>``, so ``/home/user`` is
``<root>/<id>/home/user``) and commands are real local processes in their own process group, paused
with SIGSTOP and resumed with SIGCONT along with the sandbox. Every sandbox gets a free local port
for its app port; processes see it as ``$PORT`` (with ``SANDBOX_HOME`` = its home), so a start
script that serves on ``$PORT`` is reachable through the edge. :meth:`E2BStandin.wire` points a
sandbox port at any URL instead (e.g. an ``aiohttp_server``).

A template may have a start command (``start_commands``: what ``set_start_cmd`` bakes in): E2B runs it
at build time and snapshots the sandbox with it running, so every sandbox made from that template
starts with the command already running, with the TEMPLATE's environment and not the ``envVars`` of
the create call (those reach only processes started later through envd). The stand-in starts it at
create, before answering, with the template's environment, and waits for its ready command.

Faults for tests: :meth:`E2BStandin.fail` (an HTTP status, with ``Retry-After``), :meth:`hang`
(slow answers), and ``latency`` on every API call. Every API request is recorded in ``requests``.

Use :func:`running_e2b_standin`; it yields the stand-in with ``url``, ``env`` (the ``E2B_*``
variables) and ``settings`` (a ``[pipeline.e2b]`` table for the provider).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

ENVD_PORT = 49983
ENVD_VERSION = "0.6.4"
HOME = "/home/user"
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "e2b-sandbox-id",
        "e2b-sandbox-port",
        "e2b-traffic-access-token",
    }
)


@dataclass
class Recorded:
    """One control-plane request as received (``headers`` lower-case, the API key left out)."""

    operation: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Fault:
    status: int = 0
    retry_after: str | None = None
    delay: float = 0.0
    message: str = "injected failure"


@dataclass
class StandinProcess:
    pid: int
    process: asyncio.subprocess.Process
    output: asyncio.Queue[tuple[str, bytes] | None]
    pumps: list[asyncio.Task[None]]


@dataclass(frozen=True)
class StartCommand:
    """A template's start command, its ready check (a shell command that exits 0 once ready) and the
    template's own environment (``set_envs``)."""

    command: str
    ready: str = "true"
    envs: dict[str, str] = field(default_factory=dict)


@dataclass
class StandinSandbox:
    sandbox_id: str
    template_id: str
    timeout: int
    metadata: dict[str, str]
    envs: dict[str, str]
    auto_pause: bool
    auto_resume: bool
    allow_public_traffic: bool
    envd_token: str
    traffic_token: str
    root: Path
    started_at: float
    end_at: float
    state: str = "running"
    ports: dict[int, URL] = field(default_factory=dict)
    app_port: int = 0
    processes: list[StandinProcess] = field(default_factory=list)
    resumes: int = 0
    reboots: int = 0
    guest_unresponsive: bool = False
    """Paused while its guest agent hung: its memory cannot be restored, only a reboot resumes it."""

    @property
    def home(self) -> Path:
        return self.root / HOME.lstrip("/")

    def path(self, sandbox_path: str) -> Path:
        """The local file for a path inside the sandbox (relative paths start at the home)."""
        full = sandbox_path if sandbox_path.startswith("/") else f"{HOME}/{sandbox_path}"
        local = (self.root / full.lstrip("/")).resolve()
        if not local.is_relative_to(self.root.resolve()):
            raise web.HTTPBadRequest(text='{"code":400,"message":"path outside the sandbox"}')
        return local

    def signal_all(self, signum: int) -> None:
        for proc in self.processes:
            if proc.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signum)


class E2BStandin:
    """State and behaviour of the stand-in; serve :meth:`app` (or use :func:`running_e2b_standin`)."""

    def __init__(
        self,
        root: Path,
        *,
        api_key: str = "e2b_standin_key",
        domain: str = "e2b.local",
        latency: float = 0.0,
        app_port: int = 4111,
        templates: dict[str, Path] | None = None,
        start_commands: dict[str, StartCommand] | None = None,
    ) -> None:
        self.root = root
        self.templates = templates or {}
        self.start_commands = start_commands or {}
        self.api_key = api_key
        self.domain = domain
        self.latency = latency
        self.app_port = app_port
        self.url = ""
        self.sandboxes: dict[str, StandinSandbox] = {}
        self.requests: list[Recorded] = []
        self.faults: dict[str, list[Fault]] = {}
        self.idempotent: dict[str, str] = {}
        self.auto_resumed: list[str] = []
        self._closing = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None

    # -- what tests drive ------------------------------------------------------------------------

    def fail(
        self,
        operation: str,
        status: int,
        *,
        times: int = 1,
        retry_after: str | None = None,
        message: str = "injected failure",
    ) -> None:
        """The next ``times`` calls of ``operation`` (create, connect, pause, kill, timeout, list,
        info) answer ``status``."""
        self.faults.setdefault(operation, []).extend(
            Fault(status, retry_after, message=message) for _ in range(times)
        )

    def hang(self, operation: str, seconds: float, *, times: int = 1) -> None:
        """The next ``times`` calls of ``operation`` answer only after ``seconds``."""
        self.faults.setdefault(operation, []).extend(Fault(delay=seconds) for _ in range(times))

    def wire(self, sandbox_id: str, port: int, url: str | URL) -> None:
        """Requests to ``port`` of the sandbox go to ``url`` (an app the test runs)."""
        self.sandboxes[sandbox_id].ports[port] = URL(str(url))

    def recorded(self, operation: str) -> list[Recorded]:
        return [r for r in self.requests if r.operation == operation]

    @property
    def env(self) -> dict[str, str]:
        """The SDK's environment variables pointing at this stand-in."""
        return {
            "E2B_API_KEY": self.api_key,
            "E2B_API_URL": self.url,
            "E2B_SANDBOX_URL": self.url,
            "E2B_DOMAIN": self.domain,
        }

    @property
    def settings(self) -> dict[str, Any]:
        """A ``[pipeline.e2b]`` table for the ``e2b`` provider pointing at this stand-in."""
        return {"api_key": self.api_key, "api_url": self.url, "sandbox_url": self.url, "domain": self.domain}

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._edge])
        app.router.add_post("/v2/sandboxes", self._create)
        app.router.add_get("/v2/sandboxes", self._list)
        app.router.add_post("/v2/sandboxes/{id}/connect", self._connect)
        app.router.add_post("/sandboxes/{id}/pause", self._pause)
        app.router.add_post("/sandboxes/{id}/timeout", self._set_timeout)
        app.router.add_delete("/sandboxes/{id}", self._kill)
        app.router.add_get("/sandboxes/{id}", self._info)
        return app

    async def close(self) -> None:
        self._closing.set()
        for sandbox in list(self.sandboxes.values()):
            await self._destroy(sandbox)
        if self._session is not None:
            await self._session.close()

    # -- control plane ---------------------------------------------------------------------------

    async def _api(self, request: web.Request, operation: str) -> web.Response | None:
        """Record, authenticate, delay and inject faults; an answer here ends the request."""
        body = await request.json() if request.can_read_body else None
        headers = {k.lower(): v for k, v in request.headers.items() if k.lower() != "x-api-key"}
        self.requests.append(
            Recorded(operation, request.method, request.path, dict(request.query), headers, body)
        )
        if self.latency:
            await asyncio.sleep(self.latency)
        if request.headers.get("X-API-KEY") != self.api_key:
            return _error(401, "Invalid API key, please visit https://e2b.dev/docs/api-key")
        queue = self.faults.get(operation)
        if queue:
            fault = queue.pop(0)
            if fault.delay:
                with contextlib.suppress(TimeoutError):  # cut short when the stand-in stops
                    await asyncio.wait_for(self._closing.wait(), fault.delay)
            if fault.status:
                response = _error(fault.status, fault.message)
                if fault.retry_after is not None:
                    response.headers["Retry-After"] = fault.retry_after
                return response
        return None

    def _find(self, sandbox_id: str) -> StandinSandbox | None:
        sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is not None and sandbox.state == "running" and time.time() >= sandbox.end_at:
            if sandbox.auto_pause:
                self._freeze(sandbox)
            else:
                self._forget(sandbox)
                return None
        return self.sandboxes.get(sandbox_id)

    async def _create(self, request: web.Request) -> web.Response:
        if (answer := await self._api(request, "create")) is not None:
            return answer
        body = await request.json()
        key = request.headers.get("Idempotency-Key")
        if key and key in self.idempotent and (known := self._find(self.idempotent[key])):
            return web.json_response(self._sandbox_json(known), status=201)
        sandbox_id = "sbx" + secrets.token_hex(8)
        network = body.get("network") or {}
        now = time.time()
        sandbox = StandinSandbox(
            sandbox_id=sandbox_id,
            template_id=body["templateID"],
            timeout=int(body.get("timeout", 15)),
            metadata=dict(body.get("metadata") or {}),
            envs=dict(body.get("envVars") or {}),
            auto_pause=bool(body.get("autoPause", False)),
            auto_resume=bool((body.get("autoResume") or {}).get("enabled", False)),
            allow_public_traffic=bool(network.get("allowPublicTraffic", True)),
            envd_token=secrets.token_urlsafe(16),
            traffic_token=secrets.token_urlsafe(16),
            root=self.root / sandbox_id,
            started_at=now,
            end_at=now + int(body.get("timeout", 15)),
        )
        template = self.templates.get(sandbox.template_id) or self.templates.get(
            sandbox.template_id.split(":")[0]
        )
        if template is not None:
            shutil.copytree(template, sandbox.home, symlinks=True)
        sandbox.home.mkdir(parents=True, exist_ok=True)
        sandbox.app_port = _free_port()
        sandbox.ports[self.app_port] = URL(f"http://127.0.0.1:{sandbox.app_port}")
        self.sandboxes[sandbox_id] = sandbox
        if key:
            self.idempotent[key] = sandbox_id
        start = self.start_commands.get(sandbox.template_id.split(":")[0])
        if start is not None:  # as restored from the template's snapshot: already running
            await self._spawn(sandbox, "/bin/bash", ["-c", start.command], None, start.envs, snapshot=True)
            while True:
                check = await self._spawn(
                    sandbox, "/bin/bash", ["-c", start.ready], None, start.envs, snapshot=True
                )
                if await check.process.wait() == 0:
                    break
                await asyncio.sleep(0.02)
        return web.json_response(self._sandbox_json(sandbox), status=201)

    async def _connect(self, request: web.Request) -> web.Response:
        if (answer := await self._api(request, "connect")) is not None:
            return answer
        sandbox = self._find(request.match_info["id"])
        if sandbox is None:
            return _not_found(request.match_info["id"])
        body = await request.json()
        timeout = int(body.get("timeout", sandbox.timeout))
        if sandbox.state == "running":
            sandbox.end_at = max(sandbox.end_at, time.time() + timeout)
            return web.json_response(self._sandbox_json(sandbox), status=200)
        if body.get("memory") is False:  # on_resume="reboot": a cold boot from the disk
            sandbox.signal_all(signal.SIGKILL)
            sandbox.processes.clear()
            sandbox.reboots += 1
            sandbox.guest_unresponsive = False
        elif sandbox.guest_unresponsive:
            return web.json_response(
                {
                    "code": 409,
                    "message": f"Sandbox {sandbox.sandbox_id} was paused with an unresponsive guest agent",
                    "error_code": "sandbox_snapshot_guest_agent_unresponsive",
                },
                status=409,
            )
        self._thaw(sandbox, timeout)
        return web.json_response(self._sandbox_json(sandbox), status=201)

    async def _pause(self, request: web.Request) -> web.Response:
        if (answer := await self._api(request, "pause")) is not None:
            return answer
        sandbox = self._find(request.match_info["id"])
        if sandbox is None:
            return _not_found(request.match_info["id"])
        if sandbox.state == "paused":
            return _error(409, f"Sandbox {sandbox.sandbox_id} is already paused")
        self._freeze(sandbox)
        return web.Response(status=204)

    async def _kill(self, request: web.Request) -> web.Response:
        if (answer := await self._api(request, "kill")) is not None:
            return answer
        sandbox = self._find(request.match_info["id"])
        if sandbox is None:
            return _not_found(request.match_info["id"])
        await self._destroy(sandbox)
        return web.Response(status=204)

    async def _set_timeout(self, request: web.Request) -> web.Response:
        if (answer := await self._api(request, "timeout")) is not None:
            return answer
        sandbox = self._find(request.match_info["id"])
        if sandbox is None:
            return _not_found(request.match_info["id"])
        sandbox.end_at = time.time() + int((await request.json())["timeout"])
        return web.Response(status=204)

    async def _info(self, request: web.Request) -> web.Response:
        if (answer := await self._api(request, "info")) is not None:
            return answer
        sandbox = self._find(request.match_info["id"])
        if sandbox is None:
            return _not_found(request.match_info["id"])
        return web.json_response(self._listed_json(sandbox) | {"domain": self.domain})

    async def _list(self, request: web.Request) -> web.Response:
        if (answer := await self._api(request, "list")) is not None:
            return answer
        wanted_meta = {
            unquote(k): unquote(v)
            for k, v in parse_qsl(request.query.get("metadata", ""), keep_blank_values=True)
        }
        states = set(filter(None, request.query.get("state", "running,paused").split(",")))
        limit = min(int(request.query.get("limit", "100")), 100)
        start = int(request.query.get("nextToken", "0") or 0)
        matching = [
            s
            for s in sorted(self.sandboxes.values(), key=lambda s: (s.started_at, s.sandbox_id))
            if self._find(s.sandbox_id) is not None
            and s.state in states
            and all(s.metadata.get(k) == v for k, v in wanted_meta.items())
        ]
        page = matching[start : start + limit]
        response = web.json_response([self._listed_json(s) for s in page])
        if start + limit < len(matching):
            response.headers["x-next-token"] = str(start + limit)
        return response

    def _sandbox_json(self, sandbox: StandinSandbox) -> dict[str, Any]:
        return {
            "templateID": sandbox.template_id,
            "sandboxID": sandbox.sandbox_id,
            "clientID": "standin",
            "envdVersion": ENVD_VERSION,
            "envdAccessToken": sandbox.envd_token,
            "trafficAccessToken": None if sandbox.allow_public_traffic else sandbox.traffic_token,
            "domain": self.domain,
        }

    def _listed_json(self, sandbox: StandinSandbox) -> dict[str, Any]:
        return {
            "templateID": sandbox.template_id,
            "sandboxID": sandbox.sandbox_id,
            "clientID": "standin",
            "startedAt": _iso(sandbox.started_at),
            "endAt": _iso(sandbox.end_at),
            "cpuCount": 2,
            "memoryMB": 4096,
            "diskSizeMB": 10240,
            "state": sandbox.state,
            "metadata": sandbox.metadata,
            "envdVersion": ENVD_VERSION,
        }

    def _freeze(self, sandbox: StandinSandbox) -> None:
        sandbox.state = "paused"
        sandbox.signal_all(signal.SIGSTOP)

    def _thaw(self, sandbox: StandinSandbox, timeout: int) -> None:
        sandbox.state = "running"
        sandbox.resumes += 1
        sandbox.end_at = time.time() + timeout
        sandbox.signal_all(signal.SIGCONT)

    def _forget(self, sandbox: StandinSandbox) -> None:
        sandbox.signal_all(signal.SIGKILL)
        self.sandboxes.pop(sandbox.sandbox_id, None)
        shutil.rmtree(sandbox.root, ignore_errors=True)

    async def _destroy(self, sandbox: StandinSandbox) -> None:
        self._forget(sandbox)
        for proc in sandbox.processes:
            with contextlib.suppress(ProcessLookupError):
                await proc.process.wait()
            for pump in proc.pumps:
                pump.cancel()

    # -- the edge: sandbox ports -----------------------------------------------------------------

    @web.middleware
    async def _edge(self, request: web.Request, handler: Any) -> web.StreamResponse:
        target = self._target(request)
        if target is None:
            response: web.StreamResponse = await handler(request)
            return response
        sandbox_id, port = target
        sandbox = self._find(sandbox_id)
        if sandbox is not None and sandbox.state == "paused" and sandbox.auto_resume:
            self._thaw(sandbox, sandbox.timeout)
            self.auto_resumed.append(sandbox_id)
        if sandbox is None or sandbox.state != "running":
            return _error(502, f"The sandbox {sandbox_id} was not found")
        if port == ENVD_PORT:
            return await self._envd(request, sandbox)
        if not sandbox.allow_public_traffic and not secrets.compare_digest(
            request.headers.get("e2b-traffic-access-token", ""), sandbox.traffic_token
        ):
            return _error(403, "Missing or invalid traffic access token")
        upstream = sandbox.ports.get(port)
        if upstream is None:
            return _error(502, f"The sandbox {sandbox_id} is running but port {port} is not open")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                auto_decompress=False, connector=aiohttp.TCPConnector(limit=0)
            )
        return await _relay(self._session, request, upstream, sandbox_id, port)

    def _target(self, request: web.Request) -> tuple[str, int] | None:
        sandbox_id = request.headers.get("E2b-Sandbox-Id")
        if sandbox_id:
            return sandbox_id, int(request.headers.get("E2b-Sandbox-Port", ENVD_PORT))
        match = re.fullmatch(rf"(\d+)-([A-Za-z0-9]+)\.{re.escape(self.domain)}(:\d+)?", request.host)
        return (match[2], int(match[1])) if match else None

    async def _envd(self, request: web.Request, sandbox: StandinSandbox) -> web.StreamResponse:
        if request.path == "/health":
            return web.Response(status=204)
        if not secrets.compare_digest(request.headers.get("X-Access-Token", ""), sandbox.envd_token):
            return _error(401, "invalid access token")
        if request.method == "POST" and request.path == "/process.Process/Start":
            return await self._start_process(request, sandbox)
        if request.path == "/files" and request.method == "GET":
            local = sandbox.path(request.query.get("path", ""))
            if not local.is_file():
                return _error(404, f"path '{request.query.get('path')}' does not exist")
            return web.Response(body=local.read_bytes(), content_type="application/octet-stream")
        if request.path == "/files" and request.method == "POST":
            return await self._upload(request, sandbox)
        return _error(404, f"no envd route {request.method} {request.path}")

    async def _upload(self, request: web.Request, sandbox: StandinSandbox) -> web.Response:
        written: list[tuple[str, bytes]] = []
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if isinstance(part, aiohttp.BodyPartReader):
                    name = request.query.get("path") or part.filename or ""
                    written.append((name, bytes(await part.read())))
        else:
            written.append((request.query.get("path", ""), await request.read()))
        infos = []
        for name, data in written:
            local = sandbox.path(name)
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(data)
            infos.append({"name": local.name, "type": "file", "path": name})
        return web.json_response(infos)

    async def _start_process(self, request: web.Request, sandbox: StandinSandbox) -> web.StreamResponse:
        start = json.loads(_unframe(await request.read()))
        config = start.get("process", {})
        proc = await self._spawn(
            sandbox, config["cmd"], config.get("args", []), config.get("cwd"), config.get("envs") or {}
        )
        process = proc.process
        deadline_ms = request.headers.get("Connect-Timeout-Ms")
        if deadline_ms:
            asyncio.get_running_loop().call_later(int(deadline_ms) / 1000, _kill_group, process)

        response = web.StreamResponse(headers={"Content-Type": "application/connect+json"})
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):  # the caller stopped listening
            await response.write(_frame({"event": {"start": {"pid": process.pid}}}))
            open_pipes = 2
            while open_pipes:
                item = await proc.output.get()
                if item is None:
                    open_pipes -= 1
                    continue
                stream, chunk = item
                event = {"data": {stream: base64.b64encode(chunk).decode()}}
                await response.write(_frame({"event": event}))
            code = await process.wait()
            end = {"exitCode": code, "exited": code >= 0, "status": f"exit status {code}"}
            await response.write(_frame({"event": {"end": end}}))
            await response.write(_frame({}, end_stream=True))
            await response.write_eof()
        return response

    async def _spawn(
        self,
        sandbox: StandinSandbox,
        cmd: str,
        args: list[str],
        cwd: str | None,
        envs: dict[str, str],
        *,
        snapshot: bool = False,
    ) -> StandinProcess:
        """A process in the sandbox (its own group); ``snapshot``: one the template's snapshot runs,
        which never saw the create call's ``envVars``."""
        home = str(sandbox.home)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": home,
            "USER": "user",
            "SANDBOX_HOME": home,
            "PORT": str(sandbox.app_port),
            **({} if snapshot else sandbox.envs),
            **envs,
        }
        process = await asyncio.create_subprocess_exec(
            cmd,
            *args,
            cwd=sandbox.path(cwd) if cwd else sandbox.home,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        # The output is drained whether or not anyone still listens (a background command whose
        # caller disconnected keeps running, as in envd).
        output: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        assert process.stdout is not None and process.stderr is not None
        pumps = [
            asyncio.create_task(_pump(process.stdout, "stdout", output)),
            asyncio.create_task(_pump(process.stderr, "stderr", output)),
        ]
        proc = StandinProcess(process.pid, process, output, pumps)
        sandbox.processes.append(proc)
        return proc


async def _relay(
    session: aiohttp.ClientSession, request: web.Request, upstream: URL, sandbox_id: str, port: int
) -> web.StreamResponse:
    """Forward one request to a sandbox port's app, streaming both ways (WebSockets too)."""
    url = URL(str(upstream).rstrip("/") + request.raw_path, encoded=True)  # the path exactly as sent
    headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP)
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await _relay_websocket(request, session, url, headers)
    try:
        async with session.request(
            request.method,
            url,
            headers=headers,
            data=request.content if request.can_read_body else None,
            allow_redirects=False,
        ) as answer:
            response = web.StreamResponse(status=answer.status, reason=answer.reason)
            for name, value in answer.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    response.headers.add(name, value)
            await response.prepare(request)
            async for chunk in answer.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
    except aiohttp.ClientConnectorError:
        return _error(502, f"The sandbox {sandbox_id} is running but port {port} is not open")


async def _relay_websocket(
    request: web.Request, session: aiohttp.ClientSession, url: URL, headers: CIMultiDict[str]
) -> web.StreamResponse:
    protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    forwarded = CIMultiDict((k, v) for k, v in headers.items() if not k.lower().startswith("sec-websocket"))
    async with session.ws_connect(url, headers=forwarded, protocols=protocols) as upstream:
        client = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else [])
        await client.prepare(request)

        async def pipe(source: Any, sink: Any) -> None:
            async for message in source:
                if message.type == aiohttp.WSMsgType.TEXT:
                    await sink.send_str(message.data)
                elif message.type == aiohttp.WSMsgType.BINARY:
                    await sink.send_bytes(message.data)
            await sink.close(code=source.close_code or 1000)

        await asyncio.gather(pipe(client, upstream), pipe(upstream, client), return_exceptions=True)
        return client


async def _pump(
    stream: asyncio.StreamReader, name: str, output: asyncio.Queue[tuple[str, bytes] | None]
) -> None:
    try:
        while chunk := await stream.read(65536):
            output.put_nowait((name, chunk))
    finally:
        output.put_nowait(None)


def _kill_group(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _frame(message: dict[str, Any], *, end_stream: bool = False) -> bytes:
    """A Connect streaming envelope: flags, big-endian length, JSON."""
    data = json.dumps(message).encode()
    return struct.pack(">BI", 0x02 if end_stream else 0x00, len(data)) + data


def _unframe(body: bytes) -> bytes:
    _flags, length = struct.unpack(">BI", body[:5])
    return body[5 : 5 + length]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"code": status, "message": message}, status=status)


def _not_found(sandbox_id: str) -> web.Response:
    return _error(404, f"sandbox \"{sandbox_id}\" doesn't exist or you don't have access to it")


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def running_e2b_standin(root: Path, **options: Any) -> AsyncIterator[E2BStandin]:
    """Serve a stand-in on a free loopback port (``root``: where sandboxes keep their files)."""
    standin = E2BStandin(root, **options)
    runner = web.AppRunner(standin.app(), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = runner.addresses[0]
    standin.url = f"http://{server[0]}:{server[1]}"
    try:
        yield standin
    finally:
        await standin.close()
        await runner.cleanup()
