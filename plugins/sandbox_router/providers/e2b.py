"""The ``e2b`` provider: each user's sandbox is an E2B sandbox, driven by the official async SDK.

Sandboxes are created from the configured template with pause-on-timeout and auto-resume, public
traffic off (every request to the app port carries the sandbox's traffic access token), and metadata
naming the user and this cloud, so :meth:`E2BProvider.list` finds every sandbox the cloud owns,
orphans included. Every SDK call is bounded in time and every SDK failure becomes one of the
contract's errors (see :mod:`.e2b_errors`).

Settings (``[pipeline.e2b]``)::

    [pipeline.e2b]
    template = "shmastra"
    template_tag = "v3"               # optional: sandboxes start from "shmastra:v3"
    api_key = "${E2B_API_KEY}"        # default: the E2B_API_KEY environment variable
    # api_url / sandbox_url / domain: for self-hosted E2B and tests (default: E2B's cloud)

The SDK is configured through an ``e2b.E2B`` client with these values bound, never through
``os.environ``; unset values fall back to the SDK's own environment variables (``E2B_API_URL``,
``E2B_SANDBOX_URL``, ``E2B_DOMAIN``). The SDK's ``debug`` mode (which skips the API entirely) is
not used.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import posixpath
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from e2b import (
    E2B,
    AsyncSandbox,
    CommandExitException,
    GuestUnresponsiveException,
    SandboxQuery,
    SandboxState,
)
from e2b.sandbox.filesystem.filesystem import AsyncFileStreamReader
from pydantic import AnyHttpUrl, Field, SecretStr
from yarl import URL

from proxy_core import StageConfig

from .base import (
    CHUNK_SIZE,
    CommandResult,
    Endpoint,
    Handle,
    Listed,
    Progress,
    ProgressCallback,
    ProviderError,
    SandboxGone,
    SandboxProvider,
    SandboxSpec,
)
from .base import SandboxState as SandboxStateName
from .e2b_errors import translate

log = logging.getLogger("plugins.sandbox_router.e2b")

T = TypeVar("T")

TRAFFIC_TOKEN_HEADER = "e2b-traffic-access-token"
"""The header E2B requires on requests to a sandbox port when public traffic is off."""

USER_KEY = "user_id"
CLOUD_KEY = "shmastra_cloud"
"""Metadata key naming the cloud that owns a sandbox (one E2B team may serve several clouds)."""

TOKEN = "traffic_access_token"
HOST = "host"
"""Keys of :attr:`Handle.data` (the router stores them with the sandbox id)."""


class E2BConfig(StageConfig):
    """``[pipeline.e2b]``: the E2B account, template and limits."""

    template: str = Field("shmastra", min_length=1)
    """The template name (or id) sandboxes are created from."""
    template_tag: str | None = Field(None, min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    """A tag of that template (``<template>:<tag>``), e.g. the template's ``VERSION``."""
    api_key: SecretStr | None = None
    """Default: the ``E2B_API_KEY`` environment variable. Never logged."""
    api_url: AnyHttpUrl | None = None
    """The control-plane API (default ``E2B_API_URL``, else ``https://api.<domain>``)."""
    sandbox_url: AnyHttpUrl | None = None
    """One address for every sandbox's daemon and app port, the sandbox chosen by the
    ``E2b-Sandbox-Id``/``E2b-Sandbox-Port`` headers (default ``E2B_SANDBOX_URL``, else per-sandbox
    hosts ``<port>-<id>.<domain>``). For self-hosted E2B and tests."""
    domain: str | None = Field(None, min_length=1, pattern=r"^[A-Za-z0-9.-]+$")
    """The sandbox domain (default ``E2B_DOMAIN``, else ``e2b.app``)."""
    cloud_id: str = Field("shmastra-cloud", min_length=1, max_length=64)
    """Stored in every sandbox's metadata; :meth:`E2BProvider.list` returns only sandboxes with it."""
    app_port: int = Field(4111, ge=1, le=65535)
    home: str = Field("/home/user", pattern=r"^/")
    """The sandbox user's home: relative file paths and commands start here."""
    sandbox_timeout: int = Field(600, ge=60, le=86_400)
    """Seconds a created or resumed sandbox lives before E2B pauses it (``extend`` renews it)."""
    request_timeout: float = Field(30.0, gt=0)
    """Upper bound, in seconds, of every API call (create, resume, pause, kill, extend, a list page,
    a file transfer), SDK retries included."""
    retries: int = Field(3, ge=0, le=10)
    """How often the SDK retries a 429/502/503/504 (waiting the server's ``Retry-After``) within
    ``request_timeout`` before the provider reports it."""
    rate_limit_backoff: float = Field(2.0, gt=0)
    """Seconds the router waits after E2B still refuses with 429 (the SDK hides ``Retry-After``)."""
    page_size: int = Field(100, ge=1, le=100)
    app_check_command: str = "pgrep -f pm2-runtime >/dev/null"
    """Exits 0 when the app's process manager already runs (a template start command started it)."""
    start_command: str = "/home/user/start.sh"
    """Started in the background when ``app_check_command`` fails; empty to never start anything."""
    env_file: str = Field("/home/user/.sandbox-env.json", pattern=r"^(/.*)?$")
    """Where a new sandbox's own environment is written (one JSON object) right after create, before
    the app is checked or started: a template snapshotted with the app already running cannot have
    it (its app's server waits for this file; see ``e2b-template/sandbox-env.mjs``). Empty: not
    written (templates without a start command get the environment from the create call alone)."""


class E2BProvider(SandboxProvider):
    """Sandboxes at E2B. ``E2BProvider(E2BConfig.model_validate(settings))``."""

    name = "e2b"

    def __init__(self, config: E2BConfig) -> None:
        api_key = config.api_key.get_secret_value() if config.api_key else os.environ.get("E2B_API_KEY")
        if not api_key:
            raise ValueError("the e2b provider needs an API key: set E2B_API_KEY (or [pipeline.e2b] api_key)")
        self.config = config
        # Resolved like the SDK resolves them, so app traffic goes where the SDK's own traffic goes.
        sandbox_url = str(config.sandbox_url).rstrip("/") if config.sandbox_url else None
        self._sandbox_url = sandbox_url or os.environ.get("E2B_SANDBOX_URL")
        self._domain = config.domain or os.environ.get("E2B_DOMAIN") or "e2b.app"
        self._client = E2B(
            api_key=api_key,
            api_url=str(config.api_url).rstrip("/") if config.api_url else None,
            sandbox_url=sandbox_url,
            domain=config.domain,
            request_timeout=config.request_timeout,
            retries=config.retries,
        )
        self._sdk: type[AsyncSandbox] = self._client.AsyncSandbox
        self._connected: dict[str, AsyncSandbox] = {}
        self.template = f"{config.template}:{config.template_tag}" if config.template_tag else config.template

    # -- lifecycle -------------------------------------------------------------------------------

    async def create(self, spec: SandboxSpec, on_progress: ProgressCallback) -> Handle:
        on_progress(Progress("create", 5, "Asking E2B for a sandbox"))
        metadata = {**spec.metadata, USER_KEY: spec.user_id, CLOUD_KEY: self.config.cloud_id}
        sandbox = await self._bounded(
            "create",
            self.config.request_timeout,
            self._sdk.create(
                template=self.template,
                timeout=self.config.sandbox_timeout,
                metadata=metadata,
                envs=dict(spec.env),
                lifecycle={"on_timeout": "pause", "auto_resume": True},
                network={"allow_public_traffic": False},
                # The SDK's own retries reuse it, so a retried create never makes two sandboxes.
                idempotency_key=str(uuid.uuid4()),
            ),
        )
        log.info("e2b sandbox %s created for user %s", sandbox.sandbox_id, spec.user_id)
        self._connected[sandbox.sandbox_id] = sandbox
        on_progress(Progress("created", 50, "Sandbox created"))
        try:
            if self.config.env_file:
                await self._bounded(
                    "give the environment to",
                    self.config.request_timeout,
                    sandbox.files.write(self.config.env_file, json.dumps(dict(spec.env))),
                )
            await self._ensure_app(sandbox, on_progress)
        except BaseException:
            # Not handed to the router, so nobody would ever pause or kill it.
            await asyncio.shield(self._discard(sandbox.sandbox_id))
            raise
        return self._handle(sandbox)

    async def resume(self, handle: Handle, on_progress: ProgressCallback) -> Handle:
        on_progress(Progress("resume", 10, "Waking your sandbox"))
        sandbox = await self._connect(handle.sandbox_id)
        on_progress(Progress("resumed", 60, "Sandbox awake"))
        await self._ensure_app(sandbox, on_progress)
        return self._handle(sandbox)

    async def pause(self, handle: Handle) -> None:
        self._connected.pop(handle.sandbox_id, None)
        paused = await self._bounded("pause", self.config.request_timeout, self._sdk.pause(handle.sandbox_id))
        log.info("e2b sandbox %s %s", handle.sandbox_id, "paused" if paused else "was already paused")

    async def kill(self, handle: Handle) -> None:
        self._connected.pop(handle.sandbox_id, None)
        killed = await self._bounded("kill", self.config.request_timeout, self._sdk.kill(handle.sandbox_id))
        log.info("e2b sandbox %s %s", handle.sandbox_id, "killed" if killed else "was already gone")

    async def extend(self, handle: Handle, seconds: float) -> None:
        await self._bounded(
            "extend",
            self.config.request_timeout,
            self._sdk.set_timeout(handle.sandbox_id, max(1, round(seconds))),
        )

    async def list(self) -> list[Listed]:
        pages = self._sdk.list(
            query=SandboxQuery(
                metadata={CLOUD_KEY: self.config.cloud_id},
                state=[SandboxState.RUNNING, SandboxState.PAUSED],
            ),
            limit=self.config.page_size,
        )
        found: list[Listed] = []
        while pages.has_next:
            for info in await self._bounded("list", self.config.request_timeout, pages.next_items()):
                state: SandboxStateName = "paused" if info.state == SandboxState.PAUSED else "running"
                found.append(Listed(info.sandbox_id, state, dict(info.metadata or {})))
        return found

    # -- reaching a sandbox ----------------------------------------------------------------------

    def endpoint(self, handle: Handle) -> Endpoint:
        headers = {TRAFFIC_TOKEN_HEADER: handle.data.get(TOKEN, "")}
        if self._sandbox_url:
            # One edge for every sandbox, which picks the sandbox by these headers.
            headers["E2b-Sandbox-Id"] = handle.sandbox_id
            headers["E2b-Sandbox-Port"] = str(self.config.app_port)
            return Endpoint(URL(self._sandbox_url), headers)
        host = handle.data.get(HOST) or f"{self.config.app_port}-{handle.sandbox_id}.{self._domain}"
        return Endpoint(URL(f"https://{host}/"), headers)

    async def run(self, handle: Handle, command: str, *, limit: float) -> CommandResult:
        async def run_in(sandbox: AsyncSandbox) -> CommandResult:
            try:
                done = await sandbox.commands.run(command, cwd=self.config.home, timeout=limit)
            except CommandExitException as failed:
                return CommandResult(failed.exit_code, failed.stdout or "", failed.stderr or "")
            return CommandResult(done.exit_code, done.stdout or "", done.stderr or "")

        return await self._in_sandbox(handle, "run a command in", limit, run_in)

    async def read_file(self, handle: Handle, path: str) -> bytes:
        async def read_in(sandbox: AsyncSandbox) -> bytes:
            return bytes(await sandbox.files.read(self._path(path), format="bytes"))

        return await self._in_sandbox(handle, "read a file in", self.config.request_timeout, read_in)

    async def read_chunks(
        self, handle: Handle, path: str, chunk_size: int = CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        """The file as the daemon streams it (each wait for the next piece bounded by
        ``request_timeout``), re-cut to at most ``chunk_size``."""

        async def open_in(sandbox: AsyncSandbox) -> AsyncFileStreamReader:
            return await sandbox.files.read(
                self._path(path), format="stream", stream_idle_timeout=self.config.request_timeout
            )

        stream = await self._in_sandbox(handle, "read a file in", self.config.request_timeout, open_in)
        async with stream:
            try:
                async for piece in stream:
                    for start in range(0, len(piece), chunk_size):
                        yield piece[start : start + chunk_size]
            except Exception as exc:
                raise translate(exc, "read a file in", retry_after=self.config.rate_limit_backoff) from exc

    async def write_file(self, handle: Handle, path: str, data: bytes) -> None:
        async def write_in(sandbox: AsyncSandbox) -> None:
            await sandbox.files.write(self._path(path), data)

        await self._in_sandbox(handle, "write a file in", self.config.request_timeout, write_in)

    async def close(self) -> None:
        self._connected.clear()

    # -- helpers ---------------------------------------------------------------------------------

    async def _bounded(self, action: str, seconds: float, call: Awaitable[T]) -> T:
        """Await an SDK call for at most ``seconds``, translating its failures."""
        try:
            async with asyncio.timeout(seconds):
                return await call
        except TimeoutError as exc:
            raise translate(exc, action, retry_after=self.config.rate_limit_backoff) from None
        except Exception as exc:
            raise translate(exc, action, retry_after=self.config.rate_limit_backoff) from exc

    async def _in_sandbox(
        self, handle: Handle, action: str, seconds: float, use: Callable[[AsyncSandbox], Awaitable[T]]
    ) -> T:
        """Use the sandbox's daemon (commands, files), forgetting a sandbox found gone."""
        sandbox = await self._sandbox(handle)
        try:
            return await self._bounded(action, seconds, use(sandbox))
        except SandboxGone:
            self._connected.pop(handle.sandbox_id, None)
            raise

    async def _connect(self, sandbox_id: str) -> AsyncSandbox:
        """Connect to a sandbox, resuming it when paused (a running one just gets its TTL renewed).

        A sandbox paused while its guest agent hung cannot have its memory restored; E2B then asks
        for a cold boot from its disk, which keeps the files (the app is started again after it).
        """
        sandbox: AsyncSandbox
        try:
            sandbox = await self._bounded(
                "resume",
                self.config.request_timeout,
                self._sdk.connect(sandbox_id, timeout=self.config.sandbox_timeout),
            )
        except ProviderError as failed:
            if not isinstance(failed.__cause__, GuestUnresponsiveException):
                raise
            log.warning("e2b sandbox %s cannot restore its memory; booting it from its disk", sandbox_id)
            sandbox = await self._bounded(
                "resume",
                self.config.request_timeout,
                self._sdk.connect(sandbox_id, timeout=self.config.sandbox_timeout, on_resume="reboot"),
            )
        self._connected[sandbox_id] = sandbox
        return sandbox

    async def _sandbox(self, handle: Handle) -> AsyncSandbox:
        """The connected SDK object for commands and files (connecting wakes a paused sandbox)."""
        sandbox = self._connected.get(handle.sandbox_id)
        return sandbox if sandbox is not None else await self._connect(handle.sandbox_id)

    async def _ensure_app(self, sandbox: AsyncSandbox, on_progress: ProgressCallback) -> None:
        """Start the app unless the template's start command already did."""
        if not self.config.start_command:
            return
        check = await self._bounded(
            "check the app of",
            self.config.request_timeout,
            self._exit_code(sandbox, self.config.app_check_command),
        )
        if check == 0:
            on_progress(Progress("app", 90, "App running"))
            return
        on_progress(Progress("app", 70, "Starting the app"))
        started = await self._bounded(
            "start the app in",
            self.config.request_timeout,
            # timeout=0: the SDK's default of 60 s would kill the server when it ends.
            sandbox.commands.run(self.config.start_command, background=True, cwd=self.config.home, timeout=0),
        )
        await started.disconnect()  # the app keeps running; we just stop listening to its output
        on_progress(Progress("app", 90, "App started"))

    @staticmethod
    async def _exit_code(sandbox: AsyncSandbox, command: str) -> int:
        try:
            result = await sandbox.commands.run(command)
        except CommandExitException as failed:
            return int(failed.exit_code)
        return int(result.exit_code)

    async def _discard(self, sandbox_id: str) -> None:
        self._connected.pop(sandbox_id, None)
        try:
            await self._bounded("kill", self.config.request_timeout, self._sdk.kill(sandbox_id))
        except ProviderError as exc:
            log.warning("e2b sandbox %s could not be removed after a failed start: %s", sandbox_id, exc)

    def _handle(self, sandbox: AsyncSandbox) -> Handle:
        data = {HOST: sandbox.get_host(self.config.app_port)}
        if sandbox.traffic_access_token:
            data[TOKEN] = sandbox.traffic_access_token
        return Handle(sandbox.sandbox_id, data)

    def _path(self, path: str) -> str:
        return posixpath.join(self.config.home, path)
