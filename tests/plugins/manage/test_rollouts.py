"""Template rollouts against the local provider: every outdated sandbox updated with a concurrency
limit, a failing one rolled back and reported, pause/resume/cancel, a rollout carried on after its
leader went away, and Recovery's one-click roll back."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from plugins.manage import AuditLog
from plugins.manage.rollouts import Rollouts

from .fleet import Fleet, fleet, no_leftover_sandboxes

__all__ = ["no_leftover_sandboxes"]


async def new_template_version(f: Fleet, version: str) -> None:
    """Ship ``version`` of the template: a new VERSION and a changed project file."""
    template = Path(f.router.config.template_dir)
    (template / "VERSION").write_text(f"{version}\n")
    (template / "shmastra" / "package.json").write_text(f'{{"name": "app", "version": "{version}"}}\n')


async def run(f: Fleet, admin: dict[str, str], user_id: uuid.UUID, command: str) -> str:
    status, body = await f.call(admin, "POST", f"/sandboxes/{user_id}/run", {"command": command})
    assert status == 200, body
    return str(body["output"]).strip()


async def until_rollout(f: Fleet, admin: dict[str, str], rollout_id: str, *states: str) -> dict[str, Any]:
    for _ in range(600):
        status, body = await f.call(admin, "GET", f"/rollouts/{rollout_id}")
        assert status == 200
        if body["state"] in states:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"the rollout never reached {states}: {body}")


async def test_update_all_outdated_rolls_back_the_one_that_fails(tmp_path: Path, db_url: str) -> None:
    async with fleet(tmp_path, db_url) as f:
        admin = await f.token("ada@example.com")
        mia, _ = await f.sandbox_of("mia@example.com")
        bob, _ = await f.sandbox_of("bob@example.com")
        before = await run(f, admin, bob, "cat shmastra/package.json")
        await run(f, admin, bob, 'touch "$SANDBOX_HOME/FAIL_UPDATE"')

        status, body = await f.call(admin, "POST", "/rollouts", {})
        assert status == 409 and "No sandbox is outdated" in body["error"]["message"]
        await new_template_version(f, "standin-2")
        status, body = await f.call(admin, "GET", "/updates")
        assert (body["available_version"], body["target_version"], body["outdated"]) == (
            "standin-2",
            "standin-2",
            2,
        )

        status, body = await f.call(admin, "POST", "/rollouts", {"concurrency": 1})
        assert status == 201 and body["sandboxes"] == 2
        done = await until_rollout(f, admin, body["id"], "done")
        items = {s["email"]: s for s in done["sandboxes"]}
        assert items["mia@example.com"]["state"] == "updated"
        assert items["mia@example.com"]["previous_version"] == "standin-1"
        assert items["bob@example.com"]["state"] == "rolled_back"
        assert items["bob@example.com"]["message"] == "Failed at install (exit 1); rolled back to standin-1."

        assert (await f.row(mia)).template_version == "standin-2"
        assert '"version": "standin-2"' in await run(f, admin, mia, "cat shmastra/package.json")
        assert await run(f, admin, mia, "cat .template-version") == "standin-2"
        assert (await f.row(bob)).template_version == "standin-1"
        assert await run(f, admin, bob, "cat shmastra/package.json") == before
        assert await run(f, admin, bob, "cat .template-version") == "standin-1"
        assert (await f.row(bob)).state == "running"  # healthy again after the rollback

        status, body = await f.call(admin, "GET", "/sandboxes?state=outdated")
        assert [s["email"] for s in body["sandboxes"]] == ["bob@example.com"]
        entries = [(e.action, e.result) for e in reversed(await AuditLog(f.db).entries())]
        assert ("rollout.start", "ok") in entries and ("rollout.done", "ok") in entries
        assert ("rollout.sandbox", "ok") in entries
        assert (
            "rollout.sandbox",
            "rolled_back: Failed at install (exit 1); rolled back to standin-1.",
        ) in entries


async def test_target_must_be_the_template_on_this_cloud(tmp_path: Path, sqlite_url: str) -> None:
    async with fleet(tmp_path, sqlite_url) as f:
        admin = await f.token("ada@example.com")
        await f.sandbox_of("mia@example.com")
        assert (await f.call(admin, "POST", "/updates/target", {"version": "standin-9"}))[0] == 200
        status, body = await f.call(admin, "POST", "/rollouts", {})
        assert status == 409 and "only it can be rolled out" in body["error"]["message"]
        assert (await f.call(admin, "POST", "/updates/target", {"version": "two words"}))[0] == 400
        assert (await f.call(admin, "POST", "/rollouts", {"concurrency": "many"}))[0] == 400


async def test_pause_resume_and_cancel(tmp_path: Path, sqlite_url: str) -> None:
    async with fleet(tmp_path, sqlite_url) as f:
        admin = await f.token("ada@example.com")
        users = [(await f.sandbox_of(f"u{i}@example.com"))[0] for i in range(3)]
        for user_id in users:
            await run(f, admin, user_id, 'echo 1 > "$SANDBOX_HOME/SLOW_UPDATE"')
        await new_template_version(f, "standin-2")
        status, body = await f.call(admin, "POST", "/rollouts", {"concurrency": 1})
        rollout_id = body["id"]
        assert (await f.call(admin, "POST", f"/rollouts/{rollout_id}/pause"))[0] == 200
        assert (await f.call(admin, "POST", f"/rollouts/{rollout_id}/pause"))[0] == 409
        await asyncio.sleep(2.5)  # the one in flight (if any) finishes; no other starts
        status, body = await f.call(admin, "GET", f"/rollouts/{rollout_id}")
        states = sorted(s["state"] for s in body["sandboxes"])
        assert states.count("pending") >= 2 and "updating" not in states

        assert (await f.call(admin, "POST", f"/rollouts/{rollout_id}/resume"))[0] == 200
        for _ in range(200):
            status, body = await f.call(admin, "GET", f"/rollouts/{rollout_id}")
            if any(s["state"] == "updating" for s in body["sandboxes"]):
                break
            await asyncio.sleep(0.05)
        updating = [s for s in body["sandboxes"] if s["state"] == "updating"]
        assert len(updating) == 1  # concurrency 1
        assert (await f.call(admin, "POST", f"/rollouts/{rollout_id}/cancel"))[0] == 200
        status, body = await f.call(admin, "GET", f"/rollouts/{rollout_id}")
        assert status == 200 and body["state"] == "cancelled"
        for _ in range(200):
            _, body = await f.call(admin, "GET", f"/rollouts/{rollout_id}")
            if not any(s["state"] == "updating" for s in body["sandboxes"]):
                break
            await asyncio.sleep(0.05)
        states = sorted(s["state"] for s in body["sandboxes"])
        assert "skipped" in states and "pending" not in states and "updating" not in states


async def test_a_rollout_left_by_a_leader_that_went_away_is_carried_on(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with fleet(tmp_path, sqlite_url) as f:
        admin = await f.token("ada@example.com")
        mia, _ = await f.sandbox_of("mia@example.com")
        await new_template_version(f, "standin-2")
        ada = uuid.UUID((await f.call(admin, "GET", "/me"))[1]["id"])
        # what a leader that died mid-update leaves in the store: the item claimed, no one working on it
        rollouts = Rollouts(f.db)
        orphan = await rollouts.create("standin-2", 5, False, ada, [mia])
        assert await rollouts.claim(orphan.id, mia, ("pending",))
        await rollouts.progress(orphan.id, mia, "install", 50)
        # this cloud's driver leads: it finds the item no one works on and starts it again
        done = await until_rollout(f, admin, str(orphan.id), "done")
        assert done["sandboxes"][0]["state"] == "updated"
        assert (await f.row(mia)).template_version == "standin-2"


async def test_recovery_rolls_back_from_the_last_backup(tmp_path: Path, sqlite_url: str) -> None:
    async with fleet(tmp_path, sqlite_url) as f:
        admin = await f.token("ada@example.com")
        mia, _ = await f.sandbox_of("mia@example.com")
        status, body = await f.call(admin, "POST", f"/sandboxes/{mia}/rollback")
        assert status == 502 and "restore" in body["error"]["message"]  # no backup yet

        await new_template_version(f, "standin-2")
        status, body = await f.call(admin, "POST", "/rollouts", {})
        await until_rollout(f, admin, body["id"], "done")
        assert (await f.row(mia)).template_version == "standin-2"
        status, body = await f.call(admin, "POST", f"/sandboxes/{mia}/rollback")
        assert status == 200 and "rolled back to standin-1" in body["message"]
        assert (await f.row(mia)).template_version == "standin-1"
        assert await run(f, admin, mia, "cat .template-version") == "standin-1"


async def states_of(f: Fleet, user_id: uuid.UUID) -> list[str]:
    return [e["state"] for e in await f.router.lifecycle.store.events(user_id)]


async def test_paused_sandboxes_update_on_their_next_resume(tmp_path: Path, sqlite_url: str) -> None:
    async with fleet(tmp_path, sqlite_url) as f:
        admin = await f.token("ada@example.com")
        mia, mia_browser = await f.sandbox_of("mia@example.com")
        bob, bob_browser = await f.sandbox_of("bob@example.com")
        await run(f, admin, bob, 'touch "$SANDBOX_HOME/FAIL_UPDATE"')
        for user_id in (mia, bob):
            assert (await f.call(admin, "POST", f"/sandboxes/{user_id}/pause"))[0] == 200
        await new_template_version(f, "standin-2")

        status, body = await f.call(admin, "POST", "/rollouts", {"concurrency": 1, "wake_paused": False})
        assert status == 201
        rollout_id = body["id"]
        for _ in range(100):
            _, body = await f.call(admin, "GET", f"/rollouts/{rollout_id}")
            if all(s["state"] == "deferred" for s in body["sandboxes"]):
                break
            await asyncio.sleep(0.05)
        assert [s["message"] for s in body["sandboxes"]] == ["Paused: updates on its next resume."] * 2
        await asyncio.sleep(1)  # ten ticks of the driver: nothing wakes them
        _, body = await f.call(admin, "GET", f"/rollouts/{rollout_id}")
        assert body["state"] == "running" and {s["state"] for s in body["sandboxes"]} == {"deferred"}
        for user_id in (mia, bob):
            assert (await f.row(user_id)).state == "paused"
            assert await states_of(f, user_id) == ["provisioning", "running", "paused"]

        # mia comes back: her sandbox resumes and is updated (and left running: she is using it)
        await f.visit(mia_browser)
        for _ in range(400):
            _, body = await f.call(admin, "GET", f"/rollouts/{rollout_id}")
            items = {s["email"]: s for s in body["sandboxes"]}
            if items["mia@example.com"]["state"] == "updated":
                break
            await asyncio.sleep(0.05)
        assert items["mia@example.com"]["message"] == "Updated to standin-2."
        assert items["bob@example.com"]["state"] == "deferred" and body["state"] == "running"
        assert (await f.row(mia)).template_version == "standin-2"
        assert await run(f, admin, mia, "cat .template-version") == "standin-2"
        assert (await f.row(mia)).state == "running"
        assert (await f.row(bob)).state == "paused"

        # bob comes back: his update fails, is rolled back, and the rollout is done
        await f.visit(bob_browser)
        done = await until_rollout(f, admin, rollout_id, "done")
        items = {s["email"]: s for s in done["sandboxes"]}
        assert items["bob@example.com"]["state"] == "rolled_back"
        assert items["bob@example.com"]["message"] == "Failed at install (exit 1); rolled back to standin-1."
        assert (await f.row(bob)).template_version == "standin-1"
        assert await run(f, admin, bob, "cat .template-version") == "standin-1"
        assert (await f.row(bob)).state == "running"


async def test_paused_sandboxes_are_woken_updated_and_paused_again(tmp_path: Path, sqlite_url: str) -> None:
    async with fleet(tmp_path, sqlite_url) as f:
        admin = await f.token("ada@example.com")
        mia, _ = await f.sandbox_of("mia@example.com")
        bob, _ = await f.sandbox_of("bob@example.com")
        cy, _ = await f.sandbox_of("cy@example.com")  # running: updated and left running
        await run(f, admin, bob, 'touch "$SANDBOX_HOME/FAIL_UPDATE"')
        for user_id in (mia, bob):
            assert (await f.call(admin, "POST", f"/sandboxes/{user_id}/pause"))[0] == 200
        await new_template_version(f, "standin-2")

        # chosen on the Updates page (a form with the CSRF token), as an admin would
        page = await f.sign_in("ada@example.com")
        async with page.get(f.at("/manage/updates")) as answer:
            html = await answer.text()
        assert 'name="wake_paused" value="0" checked> update on their next resume' in html
        assert 'name="wake_paused" value="1"> wake, update and pause again' in html
        csrf = html.split('name="csrf_token" value="')[1].split('"')[0]
        async with page.post(
            f.at("/manage/rollouts"),
            data={"csrf_token": csrf, "concurrency": "1", "wake_paused": "1"},
            allow_redirects=False,
        ) as answer:
            assert answer.status == 303, await answer.text()
            rollout_id = answer.headers["Location"].rsplit("/", 1)[1]
        _, body = await f.call(admin, "GET", f"/rollouts/{rollout_id}")
        assert body["wake_paused"] is True and body["concurrency"] == 1

        updating_at_once = 0
        for _ in range(1200):
            _, body = await f.call(admin, "GET", f"/rollouts/{rollout_id}")
            awake = [
                u for u in (mia, bob) if (await f.row(u)).state in ("resuming", "running")
            ]  # woken ones hold the rollout's one slot too
            busy = [s for s in body["sandboxes"] if s["state"] == "updating"]
            updating_at_once = max(updating_at_once, len(busy), len(awake))
            if body["state"] == "done":
                break
            await asyncio.sleep(0.05)
        assert body["state"] == "done", body
        assert updating_at_once == 1
        items = {s["email"]: s for s in body["sandboxes"]}
        assert items["mia@example.com"]["state"] == "updated"
        assert items["mia@example.com"]["message"] == "Updated to standin-2. Paused again."
        assert items["bob@example.com"]["state"] == "rolled_back"
        assert items["bob@example.com"]["message"] == (
            "Failed at install (exit 1); rolled back to standin-1. Paused again."
        )
        assert items["cy@example.com"]["message"] == "Updated to standin-2."
        assert (await f.row(mia)).template_version == "standin-2"
        assert (await f.row(bob)).template_version == "standin-1"
        woken = ["provisioning", "running", "paused", "resuming", "running", "paused"]
        assert await states_of(f, mia) == woken
        assert await states_of(f, bob) == woken
        last = (await f.router.lifecycle.store.events(mia))[-1]
        assert last["reason"] == "paused again after its update"
        assert (await f.row(cy)).state == "running"
        assert await states_of(f, cy) == ["provisioning", "running"]
