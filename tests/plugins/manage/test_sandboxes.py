"""Sandboxes through Manage against the local provider: the joined list, every action, the live
stream, recovery. Each action's effect is checked in the sandbox or the router's store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from plugins.manage import AuditLog

from .fleet import JSON, Fleet, fleet, no_leftover_sandboxes
from .test_rollouts import new_template_version, run

__all__ = ["no_leftover_sandboxes"]


async def until(fleet: Fleet, headers: dict[str, str], email: str, **want: Any) -> dict[str, Any]:
    """The sandbox row of ``email`` from the API once it has every field in ``want``."""
    for _ in range(400):
        status, body = await fleet.call(headers, "GET", "/sandboxes")
        assert status == 200
        rows = [s for s in body["sandboxes"] if s["email"] == email]
        if rows and all(rows[0][k] == v for k, v in want.items()):
            return rows[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{email} never reached {want}: {rows}")


async def test_list_joins_the_store_with_the_provider(tmp_path: Path, sqlite_url: str) -> None:
    async with fleet(tmp_path, sqlite_url) as f:
        admin = await f.token("ada@example.com")
        user_id, _ = await f.sandbox_of("mia@example.com")
        status, body = await f.call(admin, "GET", "/sandboxes")
        assert status == 200 and body["target_version"] == "standin-1"
        (row,) = body["sandboxes"]
        assert row["user_id"] == str(user_id)
        assert (row["state"], row["provider_state"], row["template_version"], row["outdated"]) == (
            "running",
            "running",
            "standin-1",
            False,
        )
        assert "app_token" not in str(body) and (await f.row(user_id)).app_token not in str(body)

        (Path(f.router.config.template_dir) / "VERSION").write_text("standin-2\n")
        row = await until(f, admin, "mia@example.com", outdated=True)
        status, body = await f.call(admin, "GET", "/sandboxes?state=outdated")
        assert [s["email"] for s in body["sandboxes"]] == ["mia@example.com"]
        status, body = await f.call(admin, "GET", "/sandboxes?state=paused")
        assert body["sandboxes"] == []
        status, body = await f.call(admin, "GET", "/sandboxes?q=nobody")
        assert body["sandboxes"] == []


async def test_pause_resume_restart_logs_and_commands(tmp_path: Path, sqlite_url: str) -> None:
    async with fleet(tmp_path, sqlite_url) as f:
        admin = await f.token("ada@example.com")
        user_id, _ = await f.sandbox_of("mia@example.com")

        assert (await f.call(admin, "POST", f"/sandboxes/{user_id}/pause"))[0] == 200
        await until(f, admin, "mia@example.com", state="paused", provider_state="paused")
        status, body = await f.call(admin, "POST", f"/sandboxes/{user_id}/restart-app")
        assert status == 409 and "resume it first" in body["error"]["message"]

        assert (await f.call(admin, "POST", f"/sandboxes/{user_id}/resume"))[0] == 200
        await until(f, admin, "mia@example.com", state="running", provider_state="running")

        assert (await f.call(admin, "POST", f"/sandboxes/{user_id}/restart-app"))[0] == 200
        assert (await f.call(admin, "POST", f"/sandboxes/{user_id}/rerun-healer"))[0] == 200
        status, body = await f.call(admin, "GET", f"/sandboxes/{user_id}/logs")
        assert status == 200
        assert body["logs"].splitlines() == [f"log line of {user_id}", "app", "healer"]

        status, body = await f.call(
            admin, "POST", f"/sandboxes/{user_id}/run", {"command": "cat .template-version; exit 3"}
        )
        assert status == 200 and body["exit_code"] == 3 and body["output"].strip() == "standin-1"
        assert (await f.call(admin, "POST", f"/sandboxes/{user_id}/run", {"command": " "}))[0] == 400
        assert (await f.call(admin, "POST", f"/sandboxes/{user_id}/explode"))[0] == 404

        actions = [e.action for e in reversed(await AuditLog(f.db).entries())]
        assert actions == [
            "sandbox.pause",
            "sandbox.restart-app",
            "sandbox.resume",
            "sandbox.restart-app",
            "sandbox.rerun-healer",
            "sandbox.logs",
            "sandbox.run",
            "sandbox.run",
        ]
        failed = [e for e in await AuditLog(f.db).entries() if e.result != "ok"]
        assert len(failed) == 2


async def test_reprovision_and_delete(tmp_path: Path, sqlite_url: str) -> None:
    async with fleet(tmp_path, sqlite_url) as f:
        admin = await f.token("ada@example.com")
        user_id, member = await f.sandbox_of("mia@example.com")
        async with member.post(f.at("/api/mastra/files?name=keep.txt"), data=b"mine") as answer:
            assert answer.status == 204
        before = (await f.row(user_id)).sandbox_id

        assert (await f.call(admin, "POST", f"/sandboxes/{user_id}/reprovision"))[0] == 200
        row = await until(f, admin, "mia@example.com", state="running")
        assert row["sandbox_id"] not in (None, before)

        assert (await f.call(admin, "POST", f"/sandboxes/{user_id}/delete"))[0] == 200
        row = await until(f, admin, "mia@example.com", state="paused")
        assert row["sandbox_id"] is None
        assert (await f.row(user_id)).handle is None
        status, body = await f.call(admin, "GET", f"/sandboxes/{user_id}/logs")
        assert status == 409 and "removed" in body["error"]["message"]


async def test_reprovision_keeps_the_users_files_and_remakes_the_rest(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with fleet(tmp_path, sqlite_url) as f:
        admin = await f.token("ada@example.com")
        user_id, member = await f.sandbox_of("mia@example.com")
        async with member.post(f.at("/api/mastra/files?name=keep.txt"), data=b"mine") as answer:
            assert answer.status == 204
        await run(
            f, admin, user_id,
            'cd "$SANDBOX_HOME" && mkdir -p shmastra/node_modules/dep shmastra/.mastra/output && '
            "echo dep > shmastra/node_modules/dep/index.js && echo out > shmastra/.mastra/output/index.mjs && "
            """echo '{"name": "mine"}' > shmastra/package.json && echo notes > notes.md && """
            "echo '# edited' >> app.py",
        )  # fmt: skip
        assert (await f.call(admin, "POST", f"/sandboxes/{user_id}/pause"))[0] == 200
        await new_template_version(f, "standin-2")
        template_app = (Path(f.router.config.template_dir) / "app.py").read_text()
        before = (await f.row(user_id)).sandbox_id
        assert (tmp_path / "sandboxes" / str(before) / "home" / "notes.md").exists()

        # the page says what a reprovision does here before it is confirmed
        page = await f.sign_in("ada@example.com")
        async with page.get(f.at("/manage/sandboxes")) as answer:
            html = await answer.text()
        assert "replaced by a new one from the current template, keeping the user&#39;s files" in html

        status, body = await f.call(admin, "POST", f"/sandboxes/{user_id}/reprovision", {"keep_files": "yes"})
        assert status == 400 and "keep_files" in body["error"]["message"]
        status, body = await f.call(admin, "POST", f"/sandboxes/{user_id}/reprovision")
        assert status == 200, body
        assert body["kept_files"] is True and "with the user's files" in body["message"]
        row = await f.row(user_id)
        assert row.state == "running" and row.sandbox_id not in (None, before)
        assert row.template_version == "standin-2"  # made from the current template
        assert not (tmp_path / "sandboxes" / str(before)).exists()

        # the user's files, seen by the restarted app through the proxy
        async with member.get(f.at("/api/mastra/files?name=keep.txt")) as answer:
            assert answer.status == 200 and await answer.read() == b"mine"
        assert await run(f, admin, user_id, "cat shmastra/package.json") == '{"name": "mine"}'
        assert await run(f, admin, user_id, "cat notes.md") == "notes"
        assert await run(f, admin, user_id, "cat restarts") == "app"
        # what the template owns or rebuilds comes from the current template
        assert await run(f, admin, user_id, "cat .template-version") == "standin-2"
        assert await run(f, admin, user_id, "cat app.py") == template_app.strip()
        listed = await run(f, admin, user_id, "ls -a shmastra; ls -a")
        assert "node_modules" not in listed and ".mastra" not in listed and ".reprovision" not in listed

        # asked to start fresh: the files are gone
        status, body = await f.call(admin, "POST", f"/sandboxes/{user_id}/reprovision", {"keep_files": False})
        assert status == 200 and body["kept_files"] is False and "fresh" in body["message"]
        async with member.get(f.at("/api/mastra/files?name=keep.txt")) as answer:
            assert answer.status == 404
        entries = [
            (e.action, e.result, e.detail.get("keep_files"))
            for e in reversed(await AuditLog(f.db).entries())
            if e.action == "sandbox.reprovision"
        ]
        assert entries == [("sandbox.reprovision", "ok", True), ("sandbox.reprovision", "ok", False)]


async def test_live_stream_follows_a_pause_and_ends_for_a_demoted_admin(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with fleet(tmp_path, sqlite_url) as f:
        admin = await f.token("ada@example.com")
        user_id, member = await f.sandbox_of("mia@example.com")
        async with member.get(f.at("/manage/api/sandboxes/stream"), headers=JSON) as refused:
            assert refused.status == 403

        async with aiohttp.ClientSession() as watcher:
            async with watcher.get(f.at("/manage/api/sandboxes/stream"), headers=admin) as stream:
                assert stream.status == 200
                assert stream.headers["Content-Type"] == "text/event-stream"
                states: list[str] = []
                paused = False
                async for raw in stream.content:
                    if raw.startswith(b"data: "):
                        (row,) = orjson.loads(raw[6:])
                        states.append(row["state"])
                        if row["state"] == "running" and not paused:
                            paused = True
                            assert (await f.call(admin, "POST", f"/sandboxes/{user_id}/pause"))[0] == 200
                        if row["state"] == "paused":
                            break
                assert states[0] == "running" and states[-1] == "paused"

                ada = await f.db.fetchrow("SELECT id FROM users WHERE email = 'ada@example.com'")
                assert ada is not None
                await f.db.execute("UPDATE users SET role = 'member' WHERE id = $1", ada["id"])
                rest = await asyncio.wait_for(stream.content.read(), timeout=30)
                assert b"event: sandboxes" not in rest or rest.count(b"event:") <= 1
                assert stream.content.at_eof()


async def test_recovery_lists_broken_and_failed_and_restarts_them(tmp_path: Path, sqlite_url: str) -> None:
    async with fleet(tmp_path, sqlite_url) as f:
        admin = await f.token("ada@example.com")
        user_id, member = await f.sandbox_of("mia@example.com")
        async with member.get(f.at("/api/mastra/env"), headers=JSON) as answer:
            key = (await answer.json())["SHMASTRA_VIRTUAL_KEY"]
        async with aiohttp.ClientSession() as healer:
            report = {"status": "broken", "message": "build keeps failing: missing module foo"}
            async with healer.post(
                f.at("/api/sandbox/heal"), json=report, headers={"Authorization": f"Bearer {key}"}
            ) as answer:
                assert answer.status == 204

        row = await until(f, admin, "mia@example.com", state="broken")
        assert row["needs_attention"] and row["healer_message"] == "build keeps failing: missing module foo"
        status, body = await f.call(admin, "GET", "/sandboxes?state=attention")
        assert [s["email"] for s in body["sandboxes"]] == ["mia@example.com"]

        status, body = await f.call(admin, "POST", "/sandboxes/restart-failed")
        assert status == 200 and body["results"] == {str(user_id): "ok"}
        status, body = await f.call(admin, "GET", f"/sandboxes/{user_id}/logs")
        assert body["logs"].splitlines()[1:] == ["app"]
        entries = [e.action for e in await AuditLog(f.db).entries()]
        assert "sandbox.restart_failed" in entries


async def test_running_hours_come_from_recorded_state_changes(tmp_path: Path, sqlite_url: str) -> None:
    async with fleet(tmp_path, sqlite_url) as f:
        admin = await f.token("ada@example.com")
        user_id, _ = await f.sandbox_of("mia@example.com")
        await asyncio.sleep(0.5)
        assert (await f.call(admin, "POST", f"/sandboxes/{user_id}/pause"))[0] == 200
        await until(f, admin, "mia@example.com", state="paused")
        events = await f.router.lifecycle.store.events(user_id)
        running = [e["at"] for e in events if e["state"] == "running"]
        paused = [e["at"] for e in events if e["state"] == "paused"]
        expected = (paused[-1] - running[0]).total_seconds() / 3600
        await asyncio.sleep(0.3)  # paused time does not count
        status, body = await f.call(admin, "GET", "/usage?period=7d")
        assert status == 200
        hours = {u["email"]: u["sandbox_hours"] for u in body["users"]}
        assert hours["mia@example.com"] == round(expected, 6) > 0
        assert hours["ada@example.com"] == 0
