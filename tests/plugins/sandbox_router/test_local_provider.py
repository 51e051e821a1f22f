"""The ``local`` provider on its own: the contract's edge cases, with real process groups."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import orjson
import pytest

from plugins.sandbox_router.providers.base import (
    Handle,
    Progress,
    ProviderError,
    ProviderTimeout,
    SandboxGone,
    SandboxProvider,
    SandboxSpec,
)
from plugins.sandbox_router.providers.local import LocalProvider
from tests.plugins.sandbox_router.conftest import JSON, CloudFactory


def _provider(tmp_path: Path, template: Path, bwrap: bool | None = None) -> LocalProvider:
    return LocalProvider(tmp_path / "root", template, tmp_path / "cache", bwrap=bwrap, stop_grace=0.5)


def _spec() -> SandboxSpec:
    return SandboxSpec(
        "u1",
        {"MASTRA_AUTH_TOKEN": "t", "MASTRA_STUDIO_BASE_PATH": "/studio", "MASTRA_API_PREFIX": "/api/mastra"},
    )


async def _healthy(provider: LocalProvider, handle: Handle) -> bool:
    url = provider.endpoint(handle).base_url / "health"
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(url) as answer:
                    if answer.status == 200:
                        return True
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    return False


@pytest.mark.parametrize("bwrap", [False, None], ids=["plain", "bwrap"])
async def test_lifecycle_and_listing(tmp_path: Path, template: Path, bwrap: bool | None) -> None:
    provider = _provider(tmp_path, template, bwrap)
    steps: list[Progress] = []
    handle = await provider.create(_spec(), steps.append)
    try:
        assert [s.step for s in steps][-2:] == ["workspace", "start"]  # after the template's own steps
        assert [s.percent for s in steps] == sorted(s.percent for s in steps)
        assert await _healthy(provider, handle)
        assert [(s.sandbox_id, s.state, s.metadata) for s in await provider.list()] == [
            (handle.sandbox_id, "running", {"user_id": "u1"})
        ]
        again = await provider.resume(handle, steps.append)
        assert again == handle  # resuming a running sandbox keeps it as it is

        await provider.pause(handle)
        await provider.pause(handle)  # pausing a paused sandbox is not an error
        assert [s.state for s in await provider.list()] == ["paused"]
        resumed = await provider.resume(handle, steps.append)
        assert await _healthy(provider, resumed)
        assert (await provider.read_file(resumed, ".template-version")) == b"standin-1\n"
        record = tmp_path / "root" / handle.sandbox_id / "sandbox.json"
        assert oct(record.stat().st_mode & 0o777) == "0o600"
    finally:
        await provider.kill(handle)
    await provider.kill(handle)  # killing a missing sandbox is not an error
    assert await provider.list() == []
    with pytest.raises(SandboxGone):
        await provider.resume(handle, steps.append)
    await provider.close()


async def test_commands_are_bounded(tmp_path: Path, template: Path) -> None:
    provider = _provider(tmp_path, template)
    handle = await provider.create(_spec(), lambda _: None)
    try:
        done = await provider.run(handle, "echo $SANDBOX_HOME; echo oops >&2; exit 3", limit=10)
        assert (done.exit_code, done.stdout.strip(), done.stderr.strip()) == (
            3,
            str(tmp_path / "root" / handle.sandbox_id / "home"),
            "oops",
        )
        marker = tmp_path / "root" / handle.sandbox_id / "home" / "late"
        with pytest.raises(ProviderTimeout):
            await provider.run(handle, "sleep 5; touch late", limit=0.3)
        await asyncio.sleep(0.2)
        assert not marker.exists()
    finally:
        await provider.kill(handle)


class _ProviderBeforeChunks(LocalProvider):
    """A provider written before ``read_chunks`` existed: it has only ``read_file``."""

    read_chunks = SandboxProvider.read_chunks


@pytest.mark.parametrize("kind", [LocalProvider, _ProviderBeforeChunks])
async def test_files_are_read_in_bounded_chunks(
    tmp_path: Path, template: Path, kind: type[LocalProvider]
) -> None:
    provider = kind(tmp_path / "root", template, tmp_path / "cache", stop_grace=0.5)
    handle = await provider.create(_spec(), lambda _: None)
    try:
        data = os.urandom(100_000)
        await provider.write_file(handle, "dir/blob", data)
        chunks = [chunk async for chunk in provider.read_chunks(handle, "dir/blob", chunk_size=30_000)]
        assert [len(c) for c in chunks] == [30_000, 30_000, 30_000, 10_000] and b"".join(chunks) == data
        with pytest.raises(ProviderError):
            [chunk async for chunk in provider.read_chunks(handle, "missing")]
    finally:
        await provider.kill(handle)


async def test_a_template_without_version_is_a_clear_error(tmp_path: Path, template: Path) -> None:
    (template / "VERSION").unlink()
    provider = _provider(tmp_path, template)
    with pytest.raises(ProviderError, match="cannot read the template version"):
        await provider.create(_spec(), lambda _: None)


async def test_a_crashed_sandbox_is_started_again(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud(local={"bwrap": "never"})
    ada = await cloud.sign_in("ada@example.com")
    await cloud.until_running(ada)
    user_id = await cloud.user_id(ada)
    row = await cloud.sandbox(user_id)
    state = orjson.loads((cloud.root / (row.sandbox_id or "") / "state.json").read_bytes())
    os.killpg(state["pid"], signal.SIGKILL)  # the store still says running
    await asyncio.sleep(0.2)

    async with ada.get(cloud.at("/api/mastra/x"), headers=JSON) as answer:
        assert answer.status == 503  # noticed at once, and a start is on its way
    assert (await cloud.until_running(ada))["event"] == "ready"
    async with ada.get(cloud.at("/api/mastra/x"), headers=JSON) as answer:
        assert answer.status == 200


async def test_two_workers_resuming_at_once_start_one_group(tmp_path: Path, template: Path) -> None:
    """Worker processes each have a provider over the same folders (on SQLite the store's user lock is
    per process): the folder's lock makes one of them start the sandbox and the other find it running."""
    first, second = _provider(tmp_path, template), _provider(tmp_path, template)
    handle = await first.create(_spec(), lambda _: None)
    try:
        await first.pause(handle)
        a, b = await asyncio.gather(
            first.resume(handle, lambda _: None), second.resume(handle, lambda _: None)
        )
        assert a == b
        assert await _healthy(first, a)
        app = str(tmp_path / "root" / handle.sandbox_id / "home" / "app.py").encode()
        running = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, app)]
        assert len(running) == 1, "one app process for the workspace"
    finally:
        await first.kill(handle)


def _cmdline_has(proc: Path, text: bytes) -> bool:
    try:
        return text in (proc / "cmdline").read_bytes()
    except OSError:
        return False


async def test_files_are_carried_from_one_sandbox_to_another(tmp_path: Path, template: Path) -> None:
    """Packing works on a stopped local sandbox (no start needed) and unpacks into a running one."""
    provider = _provider(tmp_path, template)
    old = await provider.create(_spec(), lambda _: None)
    new = await provider.create(_spec(), lambda _: None)
    try:
        await provider.write_file(old, "shmastra/src/agent.ts", b"agent")
        await provider.write_file(old, "shmastra/node_modules/dep/index.js", b"dependency")
        await provider.write_file(old, "shmastra/.mastra/output/index.mjs", b"build")
        await provider.pause(old)
        archive = await provider.pack_files(old, ["node_modules", ".mastra"], limit=30)
        await provider.unpack_files(new, archive, "carried", limit=30)
        assert await provider.read_file(new, "carried/shmastra/src/agent.ts") == b"agent"
        for left in (
            "carried/shmastra/node_modules/dep/index.js",
            "carried/shmastra/.mastra/output/index.mjs",
        ):
            with pytest.raises(ProviderError):
                await provider.read_file(new, left)
    finally:
        await provider.kill(old)
        await provider.kill(new)


def _states(pgid: int) -> set[str]:
    """The states (``S``, ``T``, ...) of the live processes of group ``pgid``."""
    found: set[str] = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                found.add(fields[0].decode())
    return found


async def test_stop_ends_the_processes_where_pause_freezes(tmp_path: Path, template: Path) -> None:
    """``stop`` is a restart's first half even with ``freeze``: running or frozen, the group ends, the
    files stay, and the next resume starts the app anew."""
    provider = LocalProvider(tmp_path / "root", template, tmp_path / "cache", stop_grace=0.5, freeze=True)
    handle = await provider.create(_spec(), lambda _: None)
    folder = tmp_path / "root" / handle.sandbox_id
    try:
        assert await _healthy(provider, handle)
        first = orjson.loads((folder / "state.json").read_bytes())["pid"]
        await provider.stop(handle)
        assert _states(first) == set() and not (folder / "state.json").exists()
        await provider.stop(handle)  # stopping a stopped sandbox is not an error
        assert (folder / "home" / "start.sh").exists()
        restarted = await provider.resume(handle, lambda _: None)
        assert await _healthy(provider, restarted)
        second = orjson.loads((folder / "state.json").read_bytes())["pid"]
        assert second != first

        await provider.pause(handle)
        for _ in range(100):  # a process busy at the SIGSTOP stops once it is scheduled
            if _states(second) == {"T"}:
                break
            await asyncio.sleep(0.02)
        assert _states(second) == {"T"}
        await provider.stop(handle)  # a frozen sandbox too
        assert _states(second) == set() and not (folder / "state.json").exists()
    finally:
        await provider.kill(handle)
        await provider.close()


async def test_a_frozen_sandbox_resumes_where_it_was(tmp_path: Path, template: Path) -> None:
    start = template / "start.sh"  # plus a process in a session of its own, as pm2 starts its apps
    start.write_text(
        start.read_text().replace(
            "exec ", 'setsid sleep 300 & echo $! > "$SANDBOX_HOME/.other.pid"\nexec ', 1
        )
    )
    provider = LocalProvider(tmp_path / "root", template, tmp_path / "cache", stop_grace=0.5, freeze=True)
    handle = await provider.create(_spec(), lambda _: None)
    folder = tmp_path / "root" / handle.sandbox_id
    try:
        assert await _healthy(provider, handle)
        pid = orjson.loads((folder / "state.json").read_bytes())["pid"]
        other = int((folder / "home" / ".other.pid").read_text())
        assert _states(other) == {"S"}
        await provider.pause(handle)
        await provider.pause(handle)  # pausing a frozen sandbox is not an error
        assert _states(pid) == {"T"} and _states(other) == {"T"}  # all stopped where they were
        assert [s.state for s in await provider.list()] == ["paused"]
        url = provider.endpoint(handle).base_url / "health"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5)) as http:
            with pytest.raises(TimeoutError):  # nothing answers while frozen
                await http.get(url)
            resumed = await provider.resume(handle, lambda _: None)
            async with http.get(url) as answer:  # at once: the same processes, thawed
                assert answer.status == 200
        assert resumed == handle and orjson.loads((folder / "state.json").read_bytes()) == {
            "pid": pid,
            "port": int(handle.data["port"]),
        }
        assert "T" not in _states(pid) | _states(other)
        assert [s.state for s in await provider.list()] == ["running"]

        await provider.pause(handle)
        provider.frozen_limit = 0.0  # frozen too long: the next listing ends the processes
        assert [s.state for s in await provider.list()] == ["paused"]
        assert _states(pid) == _states(other) == set() and not (folder / "state.json").exists()
        restarted = await provider.resume(handle, lambda _: None)  # from nothing, as after a stop
        assert await _healthy(provider, restarted)
        assert orjson.loads((folder / "state.json").read_bytes())["pid"] != pid

        await provider.pause(handle)
        again = orjson.loads((folder / "state.json").read_bytes())["pid"]
        await provider.kill(handle)  # a frozen sandbox is ended too
        assert _states(again) == set() and not folder.exists()
    finally:
        await provider.kill(handle)
        await provider.close()
