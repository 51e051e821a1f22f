"""The sandbox provider contract: what the router needs from E2B, the local process runner, or any
provider a team adds.

A provider knows how to make, wake, stop and reach one sandbox; it knows nothing about users, the store,
locks or pages (the router's lifecycle owns those). Every failure a caller must treat differently is a
:class:`ProviderError` subclass, so the lifecycle never inspects a vendor's exception types.
"""

from __future__ import annotations

import abc
import shlex
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from yarl import URL

SandboxState = Literal["running", "paused"]

CHUNK_SIZE = 64 * 1024
"""The largest piece :meth:`SandboxProvider.read_chunks` hands out by default."""


@dataclass(frozen=True, slots=True)
class Progress:
    """One step of a slow start, for the progress page: ``percent`` in 0..100."""

    step: str
    percent: int
    message: str = ""


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    """What a new sandbox is made of: whose it is, its environment and the metadata the provider keeps
    (``user_id`` is always in it, so :meth:`SandboxProvider.list` can find sandboxes with no owner)."""

    user_id: str
    env: Mapping[str, str]
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Handle:
    """A provider's reference to one sandbox, as stored by the router (``sandbox_id`` plus whatever the
    provider needs to reach it again, such as E2B's traffic token, in ``data``)."""

    sandbox_id: str
    data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Listed:
    """A sandbox as the provider sees it (for reconciliation and the Manage UI)."""

    sandbox_id: str
    state: SandboxState
    metadata: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the app port of a sandbox answers, and the headers every forwarded request must carry."""

    base_url: URL
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str


class ProviderError(Exception):
    """A provider call failed; ``message`` is safe to show to the user and the operator."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ProviderRateLimited(ProviderError):
    """The provider refused for now; try again after ``retry_after`` seconds (queue, do not fail)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SandboxGone(ProviderError):
    """The sandbox no longer exists at the provider (killed, expired): provision a new one."""


class ProviderAuthError(ProviderError):
    """The provider refused our credentials: an operator must fix the configuration."""


class ProviderUnavailable(ProviderError):
    """The provider cannot be reached or answered with a server error."""


class ProviderTimeout(ProviderError):
    """The provider did not answer within its bounded time."""


class SandboxProvider(abc.ABC):
    """One provider of sandboxes. Implementations must be safe to call concurrently for different
    sandboxes; the router guarantees one lifecycle call at a time per user."""

    name: str
    keeps_files: ClassVar[bool] = True
    """Whether :meth:`pack_files` and :meth:`unpack_files` work here, so a reprovision can carry the
    user's files into the new sandbox. A provider that sets it False only makes fresh sandboxes (and
    Manage says so before an administrator reprovisions)."""
    paused_accepts_connections: bool = False
    """Whether a paused sandbox's address still accepts connections without ever answering them (a
    frozen process: the kernel queues the connection). Workers cache a running sandbox's address
    (``route_cache_seconds``), so for such a provider the lifecycle marks the sandbox paused first
    and calls :meth:`pause` only once every worker's cached address has expired; otherwise a request
    through a stale address would wait for the read timeout instead of waking the sandbox. False
    (refused connections, or an edge that answers for a paused sandbox) pauses at once."""

    @abc.abstractmethod
    async def create(self, spec: SandboxSpec, on_progress: ProgressCallback) -> Handle:
        """Make a new sandbox with its app started (not necessarily healthy yet)."""

    @abc.abstractmethod
    async def resume(self, handle: Handle, on_progress: ProgressCallback) -> Handle:
        """Wake a paused sandbox (a running one stays running). Raises :class:`SandboxGone`."""

    @abc.abstractmethod
    async def pause(self, handle: Handle) -> None:
        """Stop the sandbox keeping its files; pausing a paused sandbox is not an error."""

    async def stop(self, handle: Handle) -> None:
        """End the sandbox's processes, keeping its files: the next :meth:`resume` starts them afresh
        (the lifecycle restarts a sandbox whose app did not become healthy, or whose healer could
        not be restarted, this way). Stopping a stopped sandbox is not an error. This default
        pauses, for providers whose pause already ends the processes or that cannot stop them
        otherwise (E2B: a resume restores the paused memory, the same processes)."""
        await self.pause(handle)

    @abc.abstractmethod
    async def kill(self, handle: Handle) -> None:
        """Remove the sandbox and its files; killing a missing sandbox is not an error."""

    @abc.abstractmethod
    async def extend(self, handle: Handle, seconds: float) -> None:
        """Keep a running sandbox alive ``seconds`` from now (a no-op where nothing expires)."""

    @abc.abstractmethod
    async def list(self) -> list[Listed]:
        """Every sandbox this provider holds for this cloud, running or paused."""

    @abc.abstractmethod
    def endpoint(self, handle: Handle) -> Endpoint:
        """Where to forward requests for the sandbox's app port."""

    @abc.abstractmethod
    async def run(self, handle: Handle, command: str, *, limit: float) -> CommandResult:
        """Run a shell command in the sandbox and wait for it, for at most ``limit`` seconds (then
        :class:`ProviderTimeout`)."""

    @abc.abstractmethod
    async def read_file(self, handle: Handle, path: str) -> bytes:
        """A file's bytes; ``path`` is inside the sandbox (relative to its home)."""

    async def read_chunks(
        self, handle: Handle, path: str, chunk_size: int = CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        """A file's bytes in pieces of at most ``chunk_size``, for files too big to hold at once (an
        export). Both shipped providers stream; this default, for providers written before it existed,
        reads the file whole with :meth:`read_file` and only cuts it up."""
        data = await self.read_file(handle, path)
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]

    @abc.abstractmethod
    async def write_file(self, handle: Handle, path: str, data: bytes) -> None:
        """Write a file inside the sandbox (relative to its home), creating folders as needed."""

    async def pack_files(self, handle: Handle, skip: Sequence[str], *, limit: float) -> bytes:
        """The sandbox's home as a ``.tar.gz``, without any file or folder whose name is in ``skip``
        (at any depth) or whose path from the home (``./name``) is; the sandbox must be running where
        commands need it. This default, which every provider has, packs with ``tar`` inside the
        sandbox (each command bounded by ``limit``) and reads the archive back with
        :meth:`read_chunks`; the archive is removed from the sandbox either way."""
        archive = f".pack-{uuid.uuid4().hex}.tar.gz"
        pruned = " -o ".join(
            f"-path {shlex.quote(name)}" if name.startswith("./") else f"-name {shlex.quote(name)}"
            for name in [*skip, f"./{archive}"]
        )
        command = (
            f'set -e; cd "${{SANDBOX_HOME:-/home/user}}"; '
            f"find . \\( {pruned} \\) -prune -o ! -type d -print0 "
            f"| tar --null --no-recursion -czf {archive} -T -"
        )
        try:
            done = await self.run(handle, command, limit=limit)
            if done.exit_code != 0:
                raise ProviderError(
                    f"Packing the files failed: {(done.stderr or done.stdout).strip()[-300:]}"
                )
            return b"".join([chunk async for chunk in self.read_chunks(handle, archive)])
        finally:
            await self.run(handle, f'rm -f "${{SANDBOX_HOME:-/home/user}}/{archive}"', limit=limit)

    async def unpack_files(self, handle: Handle, archive: bytes, into: str, *, limit: float) -> None:
        """Unpack :meth:`pack_files`' ``archive`` into the folder ``into`` (relative to the home,
        made fresh) of a running sandbox. This default writes the archive with :meth:`write_file`
        and unpacks it with ``tar`` inside the sandbox."""
        name = f".unpack-{uuid.uuid4().hex}.tar.gz"
        await self.write_file(handle, name, archive)
        folder = shlex.quote(into)
        done = await self.run(
            handle,
            f'set -e; cd "${{SANDBOX_HOME:-/home/user}}"; rm -rf {folder}; mkdir -p {folder}; '
            f"tar -xzf {name} -C {folder}; rm -f {name}",
            limit=limit,
        )
        if done.exit_code != 0:
            raise ProviderError(f"Unpacking the files failed: {(done.stderr or done.stdout).strip()[-300:]}")

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the provider's own resources (clients, child processes) on shutdown."""
