"""No request of user A reaches user B's sandbox, whatever its path or headers say; a disabled user is
cut off, open streams included; bubblewrap keeps a sandbox inside its own workspace."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import aiohttp
import pytest

from plugins.vkey import KeyService
from tests.plugins.sandbox_router.conftest import JSON, Cloud, CloudFactory


async def _two_users(cloud: Cloud) -> tuple[aiohttp.ClientSession, aiohttp.ClientSession]:
    ada = await cloud.sign_in("ada@example.com")
    await cloud.until_running(ada)
    bob = await cloud.sign_in("bob@example.com")
    await cloud.until_running(bob)
    return ada, bob


async def test_no_path_or_header_trick_reaches_another_sandbox(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud()
    ada, _bob = await _two_users(cloud)
    rows = {str(r.user_id): r for r in await cloud.router.lifecycle.store.all()}
    assert len(rows) == 2
    ada_id = str(await _owner(cloud, ada))
    bob_row = next(r for uid, r in rows.items() if uid != ada_id)
    bob_port = bob_row.handle_data["port"]
    tricks = [
        ("/api/mastra/x", {}),
        ("/api/mastra/x", {"Host": f"127.0.0.1:{bob_port}"}),
        ("/api/mastra/x", {"X-Forwarded-Host": f"127.0.0.1:{bob_port}", "X-Forwarded-For": "10.0.0.1"}),
        ("/api/mastra/x", {"Forwarded": f"host=127.0.0.1:{bob_port}", "X-Forwarded-Proto": "https"}),
        (f"/..%2F..%2F{bob_row.sandbox_id}/api", {}),
        (f"/api/../../{bob_row.user_id}/x", {}),
        (f"/%2e%2e/{bob_row.user_id}", {}),
        ("//127.0.0.1:" + bob_port + "/x", {}),
    ]
    for path, headers in tricks:
        async with ada.get(cloud.at(path), headers={**JSON, **headers}) as answer:
            assert answer.status == 200, (path, headers, answer.status)
            seen = await answer.json()
            assert seen["user_id"] == ada_id, (path, headers)
    # An absolute-form request target naming Bob's sandbox: refused before any stage (the core's rule).
    assert cloud.url.port is not None
    cookie = "; ".join(f"{m.key}={m.value}" for m in ada.cookie_jar)
    raw = await _raw_get(cloud.url.port, f"http://127.0.0.1:{bob_port}/api/mastra/x", cookie)
    assert raw.startswith("HTTP/1.1 400") and str(bob_row.user_id) not in raw


async def test_disabled_user_is_cut_off_with_open_streams(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud()
    ada = await cloud.sign_in("ada@example.com")
    await cloud.until_running(ada)
    stream = await ada.get(cloud.at("/api/mastra/stream"), headers={"Accept": "text/event-stream"})
    assert stream.status == 200
    assert (await stream.content.readline()).startswith(b"data: 0")
    ws = await ada.ws_connect(cloud.at("/api/mastra/ws"))
    await ws.send_str("before")
    assert (await ws.receive()).data == "echo:before"

    await KeyService(cloud.db).set_disabled("ada@example.com", True)

    async def cut() -> bool:
        try:
            while await stream.content.readany():
                pass
        except aiohttp.ClientPayloadError:
            return True  # the connection was closed mid-stream: never a complete-looking end
        return False

    assert await asyncio.wait_for(cut(), 10)
    closed = await asyncio.wait_for(ws.receive(), 10)
    assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    async with ada.get(cloud.at("/api/mastra/x"), headers=JSON) as answer:
        assert answer.status == 401  # disabling ended the session
    stream.close()
    await ws.close()


async def test_sandbox_under_bwrap_sees_only_its_workspace(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud()
    assert cloud.router.provider.bwrap is not None, "bubblewrap is installed in CI (.ci/run)"  # type: ignore[attr-defined]
    ada, _bob = await _two_users(cloud)
    row = await cloud.sandbox(await _owner(cloud, ada))
    assert row.handle is not None
    provider = cloud.router.provider
    assert len(list(cloud.root.iterdir())) == 2
    outside = Path(__file__).parent / "escape"
    script = f"ls -A {cloud.root}; ls -A {cloud.root}/{row.sandbox_id}; touch {outside}; echo ok > mine"
    result = await provider.run(row.handle, script, limit=10)
    assert result.stdout.split() == [row.sandbox_id, "home"], "other workspaces and its own record are hidden"
    assert "Read-only file system" in result.stderr and not outside.exists()
    assert (await provider.read_file(row.handle, "mine")) == b"ok\n"
    with pytest.raises(Exception, match="outside the sandbox"):
        await provider.read_file(row.handle, "../sandbox.json")


async def _owner(cloud: Cloud, session: aiohttp.ClientSession) -> uuid.UUID:
    """The user whose sandbox answers this session (the stand-in reports its USER_ID)."""
    async with session.get(cloud.at("/api/mastra/whoami"), headers=JSON) as answer:
        seen = await answer.json()
    return uuid.UUID(seen["user_id"])


async def _raw_get(port: int, target: str, cookie: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n"
        f"Cookie: {cookie}\r\nConnection: close\r\n\r\n".encode()
    )
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data.decode(errors="replace")
