"""The ``local`` provider: each sandbox is a workspace folder plus the template's ``start.sh`` running as
its own process group on its own free port.

Layout: ``<root>/<id>/sandbox.json`` (owner, metadata, environment; mode 0600), ``state.json`` (the
group's pid and port while it runs), and ``home/`` (the workspace, ``$SANDBOX_HOME``; the processes'
output goes to its ``.sandbox.log``).
Everything lives in files, so any worker or replica on the machine can pause or resume any sandbox.

Spares (``spares=N``): after each create, N sandboxes of the current template version are started
with nobody's environment (their folder holds ``spare.json`` instead of ``sandbox.json``, so nothing
lists them). Their app's server waits for ``home/.sandbox-env.json`` (``SHMASTRA_ENV_FILE``, see the
template's ``sandbox-env.mjs``) once ``mastra dev`` has loaded and bundled, which is most of a cold
start. A create takes a spare when there is one: it becomes the user's sandbox by getting its record
and that file, and the server starts with the user's environment. Each spare holds a whole app's memory.

Pausing freezes the group (SIGSTOP; ``freeze=True``, the default of ``[pipeline.local] pause``): no
CPU, the memory kept, and a resume is a SIGCONT, as fast as E2B's resume from a memory snapshot. A
group frozen longer than ``frozen_limit`` is stopped by the next :meth:`LocalProvider.list` (the
reconciler's sweep). Stopping: SIGTERM (and SIGCONT, for a frozen group) to the whole group, a grace
period, then SIGKILL to the group (``mastra dev``'s server child ignores SIGTERM and outlives its
parent); a stopped sandbox's resume starts the app from nothing. Under bubblewrap (when installed) a sandbox
sees the machine read-only, its workspace writable, and neither the other workspaces nor the cloud's
data folder. That is weaker isolation than E2B's microVMs: same kernel, same network.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
from yarl import URL

from .. import template
from .base import (
    CHUNK_SIZE,
    CommandResult,
    Endpoint,
    Handle,
    Listed,
    Progress,
    ProgressCallback,
    ProviderError,
    ProviderTimeout,
    SandboxGone,
    SandboxProvider,
    SandboxSpec,
)

log = logging.getLogger(__name__)

_PASSED_THROUGH = ("LANG", "LC_ALL", "TZ")
SPARE = "spare.json"
ENV_FILE = ".sandbox-env.json"


class LocalProvider(SandboxProvider):
    name = "local"

    def __init__(
        self,
        root: Path,
        template_dir: Path,
        cache_dir: Path,
        *,
        bwrap: bool | None = None,
        hidden_paths: Sequence[Path] = (),
        stop_grace: float = 5.0,
        host: str = "127.0.0.1",
        freeze: bool = False,
        frozen_limit: float = 3600.0,
        spares: int = 0,
        spare_delay: float = 10.0,
    ) -> None:
        self.root = root.resolve()
        self.template_dir = template_dir.resolve()
        self.cache_dir = cache_dir.resolve()
        found = shutil.which("bwrap")
        if bwrap and found is None:
            raise ValueError("local.bwrap = 'always' but bubblewrap (bwrap) is not installed")
        self.bwrap = found if bwrap is not False else None
        self.hidden = [p.resolve() for p in hidden_paths]
        self.stop_grace = stop_grace
        self.host = host
        self.freeze = freeze
        self.paused_accepts_connections = freeze  # a frozen app's port takes connections, never answers
        self.frozen_limit = frozen_limit
        self.spares = spares
        self.spare_delay = spare_delay  # the sandbox just made gets the CPU first
        self._replenishing: asyncio.Task[None] | None = None
        self._children: dict[str, asyncio.subprocess.Process] = {}
        self._node: Path | bool | None = None

    # lifecycle -------------------------------------------------------------------------------------

    async def create(self, spec: SandboxSpec, on_progress: ProgressCallback) -> Handle:
        sandbox_id = uuid.uuid4().hex
        folder = self.root / sandbox_id
        try:
            prepared = await template.prepare(self.template_dir, self.cache_dir, _scaled(on_progress, 5, 35))
        except (template.TemplateError, OSError) as exc:
            raise ProviderError(f"The sandbox template could not be prepared: {exc}") from exc
        if self.spares:
            claimed = await self._claim_spare(prepared, spec)
            self._replenish_soon(prepared)
            if claimed is not None:
                on_progress(Progress("start", 60, "Starting your sandbox (prepared in advance)"))
                return claimed
        on_progress(Progress("workspace", 40, "Creating your workspace"))
        home = folder / "home"
        home.mkdir(parents=True)
        await asyncio.to_thread(template.populate_workspace, prepared, home)
        _write_private(folder / "sandbox.json", _record(spec))
        on_progress(Progress("start", 60, "Starting your sandbox"))
        return await self._start(sandbox_id)

    # spares ----------------------------------------------------------------------------------------

    async def _claim_spare(self, prepared: template.PreparedTemplate, spec: SandboxSpec) -> Handle | None:
        """A running spare of ``prepared``'s version, made the sandbox of ``spec`` (None: no spare)."""
        for folder in await asyncio.to_thread(self._spare_folders):
            try:
                async with _folder_lock(folder):
                    spare, state = _read_json(folder / SPARE), _read_json(folder / "state.json")
                    if spare is None or spare.get("key") != prepared.key or state is None:
                        continue
                    if not self._running(int(state["pid"])):
                        continue
                    _write_private(folder / "sandbox.json", _record(spec))
                    _write_private(folder / "home" / ENV_FILE, orjson.dumps(dict(spec.env)))
                    (folder / SPARE).unlink()
                    log.info("local sandboxes: spare %s taken for user %s", folder.name, spec.user_id)
                    return Handle(folder.name, {"port": str(state["port"])})
            except FileNotFoundError:  # discarded meanwhile
                continue
        return None

    def _replenish_soon(self, prepared: template.PreparedTemplate) -> None:
        if self._replenishing is None or self._replenishing.done():
            self._replenishing = asyncio.get_running_loop().create_task(self._replenish(prepared))

    async def _replenish(self, prepared: template.PreparedTemplate) -> None:
        """Discard spares of another version or whose processes ended; start new ones up to ``spares``."""
        try:
            await asyncio.sleep(self.spare_delay)
            live = 0
            for folder in await asyncio.to_thread(self._spare_folders):
                spare, state = _read_json(folder / SPARE), _read_json(folder / "state.json")
                current = spare is not None and spare.get("key") == prepared.key
                if current and state is not None and self._running(int(state["pid"])):
                    live += 1
                else:
                    await self._stop(folder.name)
                    await asyncio.to_thread(shutil.rmtree, folder, True)
            for _ in range(self.spares - live):
                sandbox_id = uuid.uuid4().hex
                home = self.root / sandbox_id / "home"
                home.mkdir(parents=True)
                await asyncio.to_thread(template.populate_workspace, prepared, home)
                _write_private(self.root / sandbox_id / SPARE, orjson.dumps({"key": prepared.key}))
                await self._start(sandbox_id)
        except (OSError, ProviderError) as exc:
            log.warning("local sandboxes: could not prepare a spare: %s", exc)

    def _spare_folders(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(folder for folder in self.root.iterdir() if (folder / SPARE).is_file())

    async def resume(self, handle: Handle, on_progress: ProgressCallback) -> Handle:
        folder = self._folder(handle)
        async with _folder_lock(folder):  # one start per sandbox, whichever process asks
            state = _read_json(folder / "state.json")
            if state is not None and self._running(int(state["pid"])):
                if state.get("frozen_at") is not None:
                    _signal_tree(_tree(int(state["pid"])), signal.SIGCONT)
                    _write_private(folder / "state.json", orjson.dumps(_thawed(state)))
                return Handle(handle.sandbox_id, {"port": str(state["port"])})
            on_progress(Progress("start", 60, "Starting your sandbox"))
            return await self._start(handle.sandbox_id)

    async def pause(self, handle: Handle) -> None:
        folder = self.root / handle.sandbox_id
        if not folder.is_dir():
            return
        async with _folder_lock(folder):
            state = _read_json(folder / "state.json")
            if self.freeze and state is not None and self._running(int(state["pid"])):
                if state.get("frozen_at") is None:
                    _freeze(int(state["pid"]))
                    _write_private(folder / "state.json", orjson.dumps({**state, "frozen_at": time.time()}))
                return
            await self._stop_locked(folder, state)

    async def stop(self, handle: Handle) -> None:
        """End the group even where a pause only freezes it: the next resume starts the app anew."""
        await self._stop(handle.sandbox_id)

    async def _stop(self, sandbox_id: str) -> None:
        """End the sandbox's processes (frozen or not); its files stay."""
        folder = self.root / sandbox_id
        if not folder.is_dir():
            return
        async with _folder_lock(folder):
            await self._stop_locked(folder, _read_json(folder / "state.json"))

    async def _stop_locked(self, folder: Path, state: Any) -> None:
        if state is not None:
            await self._stop_group(int(state["pid"]))
        with contextlib.suppress(FileNotFoundError):
            (folder / "state.json").unlink()

    async def kill(self, handle: Handle) -> None:
        await self._stop(handle.sandbox_id)
        await asyncio.to_thread(shutil.rmtree, self.root / handle.sandbox_id, True)

    async def extend(self, handle: Handle, seconds: float) -> None:
        return None  # nothing expires on its own here: the router's idle sweep pauses

    async def list(self) -> list[Listed]:
        listed: list[Listed] = []
        if not self.root.is_dir():
            return listed
        for folder in sorted(self.root.iterdir()):
            record = _read_json(folder / "sandbox.json")
            if record is None:
                continue
            state = _read_json(folder / "state.json")
            running = state is not None and self._running(int(state["pid"]))
            frozen_at = state.get("frozen_at") if running else None
            if frozen_at is not None and time.time() - float(frozen_at) > self.frozen_limit:
                await self._stop(folder.name)  # frozen too long: give its memory back
            running = running and frozen_at is None
            listed.append(Listed(folder.name, "running" if running else "paused", dict(record["metadata"])))
        return listed

    def endpoint(self, handle: Handle) -> Endpoint:
        return Endpoint(URL.build(scheme="http", host=self.host, port=int(handle.data["port"])))

    async def run(self, handle: Handle, command: str, *, limit: float) -> CommandResult:
        folder = self._folder(handle)
        env = self._env(folder, port=None)
        process = await asyncio.create_subprocess_exec(
            *self._wrap(folder, ["bash", "-c", command]),
            cwd=folder / "home",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(limit):
                out, err = await process.communicate()
        except TimeoutError:
            _signal_group(process.pid, signal.SIGKILL)
            await process.wait()
            raise ProviderTimeout(f"The command did not finish within {limit:g} s.") from None
        return CommandResult(
            process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")
        )

    async def read_file(self, handle: Handle, path: str) -> bytes:
        target = self._inside(handle, path)
        try:
            return await asyncio.to_thread(target.read_bytes)
        except FileNotFoundError:
            raise ProviderError(f"No such file in the sandbox: {path}") from None

    async def read_chunks(
        self, handle: Handle, path: str, chunk_size: int = CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        target = self._inside(handle, path)
        try:
            file = await asyncio.to_thread(target.open, "rb")
        except FileNotFoundError:
            raise ProviderError(f"No such file in the sandbox: {path}") from None
        try:
            while chunk := await asyncio.to_thread(file.read, chunk_size):
                yield chunk
        finally:
            await asyncio.to_thread(file.close)

    async def write_file(self, handle: Handle, path: str, data: bytes) -> None:
        target = self._inside(handle, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(target.write_bytes, data)

    async def close(self) -> None:
        """Stop the sandboxes this process started (their files stay; the reconciler sees them paused)."""
        if self._replenishing is not None:
            self._replenishing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replenishing
        children, self._children = self._children, {}
        await asyncio.gather(*(self._stop_group(p.pid) for p in children.values()), return_exceptions=True)

    # helpers ---------------------------------------------------------------------------------------

    async def _start(self, sandbox_id: str) -> Handle:
        folder = self.root / sandbox_id
        port = _free_port(self.host)
        log_file = (folder / "home" / ".sandbox.log").open("ab")
        try:
            process = await asyncio.create_subprocess_exec(
                *self._wrap(folder, ["bash", str(folder / "home" / "start.sh")]),
                cwd=folder / "home",
                env=self._env(folder, port),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,  # its own process group: stop and kill reach every child
            )
        except OSError as exc:
            raise ProviderError(f"The sandbox could not be started: {exc}") from exc
        finally:
            log_file.close()
        self._children[sandbox_id] = process
        asyncio.get_running_loop().create_task(self._reap(sandbox_id, process))
        _write_private(folder / "state.json", orjson.dumps({"pid": process.pid, "port": port}))
        return Handle(sandbox_id, {"port": str(port)})

    async def _reap(self, sandbox_id: str, process: asyncio.subprocess.Process) -> None:
        await process.wait()
        if self._children.get(sandbox_id) is process:
            del self._children[sandbox_id]

    def _env(self, folder: Path, port: int | None) -> dict[str, str]:
        record = _read_json(folder / "sandbox.json") or {}
        home = folder / "home"
        path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
        node = self._node_bin()
        env = {name: os.environ[name] for name in _PASSED_THROUGH if name in os.environ}
        env.update(
            {
                "PATH": f"{node}:{path}" if node is not None else path,
                "HOME": str(home),
                "TMPDIR": str(home / ".tmp"),
                "SANDBOX_HOME": str(home),
                **record.get("env", {}),
            }
        )
        (home / ".tmp").mkdir(exist_ok=True)
        if (folder / SPARE).is_file():  # nobody's yet: the app's server waits for its environment
            env["SHMASTRA_ENV_FILE"] = str(home / ENV_FILE)
        if port is not None:
            env["PORT"] = str(port)
        return env

    def _node_bin(self) -> Path | None:
        """The Node.js bin folder sandboxes get first on ``PATH`` (found once); none: the template's
        own start script says what is missing."""
        if self._node is None:
            try:
                self._node = template.node_runtime().bin_dir
            except template.NodeUnavailable as exc:
                log.warning("local sandboxes: %s", exc)
                self._node = False
        return self._node if isinstance(self._node, Path) else None

    def _wrap(self, folder: Path, argv: Sequence[str]) -> Sequence[str]:
        if self.bwrap is None:
            return argv
        home = str(folder / "home")
        wrapped = [self.bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
        for hidden in [self.root, *self.hidden]:
            if hidden.is_dir():
                wrapped += ["--tmpfs", str(hidden)]
        wrapped += ["--bind", home, home, "--chdir", home, "--"]
        return [*wrapped, *argv]

    def _folder(self, handle: Handle) -> Path:
        folder = self.root / handle.sandbox_id
        if not (folder / "sandbox.json").is_file():
            raise SandboxGone("The sandbox no longer exists.")
        return folder

    def _inside(self, handle: Handle, path: str) -> Path:
        home = (self._folder(handle) / "home").resolve()
        target = (home / path).resolve()
        if not target.is_relative_to(home):
            raise ProviderError(f"The path is outside the sandbox: {path}")
        return target

    @staticmethod
    def _running(pid: int) -> bool:
        return _group_members(pid) > 0

    async def _stop_group(self, pgid: int) -> None:
        """SIGTERM to the group and every descendant (pm2's apps run in groups of their own), a grace
        period, then SIGKILL to whatever of them is left. The tree is read again while waiting: a child
        forked after the first reading (a start still under way) is ended too, never orphaned."""
        tree = _tree(pgid)  # taken first: once a parent dies, its children lose the link to it
        if not tree:
            return
        _signal_all(pgid, tree, signal.SIGTERM)
        _signal_all(pgid, tree, signal.SIGCONT)  # a frozen process only sees the SIGTERM once thawed
        deadline = time.monotonic() + self.stop_grace
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            late = [pid for pid in _tree(pgid) if pid not in tree]
            if late:
                tree += late
                _signal_all(pgid, late, signal.SIGTERM)
            if not any(map(_alive, tree)):
                return
        for _ in range(100):  # SIGKILL cannot be ignored; give the kernel a moment to finish them
            tree += [pid for pid in _tree(pgid) if pid not in tree]
            _signal_all(pgid, tree, signal.SIGKILL)
            if not any(map(_alive, tree)):
                return
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def _folder_lock(folder: Path) -> AsyncIterator[None]:
    """An exclusive ``flock`` on the sandbox's folder, across processes: the store's per-user lock is
    per process on SQLite, and worker processes share the sandboxes."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _scaled(on_progress: ProgressCallback, low: int, high: int) -> ProgressCallback:
    """Report a sub-task's 0..100 % as ``low``..``high`` % of the whole start."""
    return lambda p: on_progress(Progress(p.step, low + p.percent * (high - low) // 100, p.message))


def _live_processes() -> Iterator[tuple[int, int, int]]:
    """``(pid, parent pid, process group)`` of every live (not zombie) process, from ``/proc``."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if fields[0] not in (b"Z", b"X"):
            yield int(entry.name), int(fields[1]), int(fields[2])


def _group_members(pgid: int) -> int:
    """Live processes in the group ``pgid``."""
    return sum(1 for _, _, group in _live_processes() if group == pgid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


def _tree(pgid: int) -> list[int]:
    """The live processes of group ``pgid`` and all their descendants, parents first (pm2 starts its
    apps in process groups of their own, so a signal to the group alone misses them)."""
    parents: dict[int, list[int]] = {}
    members: list[int] = []
    for pid, parent, group in _live_processes():
        parents.setdefault(parent, []).append(pid)
        if group == pgid:
            members.append(pid)
    tree: list[int] = []
    seen: set[int] = set()
    queue = sorted(members, key=lambda pid: pid != pgid)
    while queue:
        pid = queue.pop(0)
        if pid not in seen:
            seen.add(pid)
            tree.append(pid)
            queue.extend(parents.get(pid, []))
    return tree


def _signal_all(pgid: int, pids: list[int], sig: signal.Signals) -> None:
    """``sig`` to the whole group at once (a member forked a moment ago included) and to ``pids``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    _signal_tree(pids, sig)


def _freeze(pgid: int) -> None:
    """SIGSTOP to the group and its whole tree until no new process shows up (a process forked while
    the tree was read is stopped on the next reading; a stopped process forks no more)."""
    stopped: list[int] = []
    for _ in range(10):
        tree = _tree(pgid)
        new = [pid for pid in tree if pid not in stopped]
        if not new:
            return
        _signal_all(pgid, new, signal.SIGSTOP)
        stopped += new


def _signal_tree(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _record(spec: SandboxSpec) -> bytes:
    metadata = {**spec.metadata, "user_id": spec.user_id}
    return orjson.dumps({"user_id": spec.user_id, "metadata": metadata, "env": dict(spec.env)})


def _thawed(state: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in state.items() if key != "frozen_at"}


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None


def _write_private(path: Path, data: bytes) -> None:
    staging = path.with_suffix(".tmp")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    staging.replace(path)
