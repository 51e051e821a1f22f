"""Users and keys through Manage's API (and the pages' forms): every action done through the owning
plugin, with its effect checked where it matters (sessions, the gateway) and recorded in the audit log."""

from __future__ import annotations

import csv
import io
import uuid
from email import message_from_bytes
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller

from plugins.auth import UserDirectory
from plugins.manage import AdminTokens, AuditLog
from plugins.vkey import KeyService
from tests.plugins.auth.kit import Inbox

from .kit import JSON, Cloud, cloud


async def token_for(c: Cloud, email: str) -> dict[str, str]:
    user = await UserDirectory(c.db).get(email)
    created = await AdminTokens(c.db).create(user.id, "tests")
    return {"Authorization": f"Bearer {created.token}", **JSON}


async def call(
    c: Cloud, headers: dict[str, str], method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as script:
        async with script.request(method, c.at(f"/manage/api{path}"), json=body, headers=headers) as response:
            return response.status, await response.json()


async def test_users_list_shows_role_state_key_prefix_and_never_a_key(
    upstream: TestServer, db_url: str, tmp_path: Path
) -> None:
    async with cloud(upstream, db_url, tmp_path) as c:
        await c.user("ada@example.com", "admin")
        mia = await c.user("mia@example.com")
        issued = await KeyService(c.db).issue(mia.id)
        status, body = await call(c, await token_for(c, "ada@example.com"), "GET", "/users")
        assert status == 200
        (row,) = [u for u in body["users"] if u["email"] == "mia@example.com"]
        assert row["role"] == "member" and row["disabled"] is False
        assert row["key_prefix"] == issued.record.prefix and row["key_state"] == "active"
        assert row["last_sign_in"] is None and row["last_seen"] is None  # never signed in
        assert issued.key not in str(body)
        async with await c.browser("ada@example.com") as admin, admin.get(c.at("/manage/users")) as page:
            text = await page.text()
        assert issued.record.prefix in text and issued.key not in text
        ada = await UserDirectory(c.db).get("ada@example.com")
        assert ada.last_sign_in_at is not None
        assert f"<td>{ada.last_sign_in_at:%Y-%m-%d %H:%M}</td>" in text
        status, body = await call(c, await token_for(c, "ada@example.com"), "GET", "/users")
        (row,) = [u for u in body["users"] if u["email"] == "ada@example.com"]
        assert row["last_sign_in"] == ada.last_sign_in_at.isoformat() and row["last_seen"] is not None


async def test_disable_cuts_sessions_and_keys_at_once_and_enable_restores_keys(
    upstream: TestServer, db_url: str, tmp_path: Path
) -> None:
    async with cloud(upstream, db_url, tmp_path) as c:
        await c.user("ada@example.com", "admin")
        mia = await c.user("mia@example.com")
        key = (await KeyService(c.db).issue(mia.id)).key
        admin = await token_for(c, "ada@example.com")
        async with await c.browser("mia@example.com") as member:
            async with member.get(c.at("/work"), headers=JSON) as response:
                assert response.status == 200
            assert await c.gateway_status(key) == 200

            status, body = await call(c, admin, "POST", f"/users/{mia.id}/disable")
            assert status == 200 and body["disabled"] is True
            async with member.get(c.at("/work"), headers=JSON) as response:
                assert response.status in (401, 403)
            assert await c.gateway_status(key) == 401

            status, _ = await call(c, admin, "POST", f"/users/{mia.id}/enable")
            assert status == 200
            assert await c.gateway_status(key) == 200
        ada = await UserDirectory(c.db).get("ada@example.com")
        status, body = await call(c, admin, "POST", f"/users/{ada.id}/disable")
        assert status == 400 and "yourself" in body["error"]["message"]
        assert not (await UserDirectory(c.db).get(ada.id)).disabled


async def test_sign_out_everywhere(upstream: TestServer, db_url: str, tmp_path: Path) -> None:
    async with cloud(upstream, db_url, tmp_path) as c:
        await c.user("ada@example.com", "admin")
        mia = await c.user("mia@example.com")
        async with await c.browser("mia@example.com") as one, await c.browser("mia@example.com") as two:
            status, body = await call(
                c, await token_for(c, "ada@example.com"), "POST", f"/users/{mia.id}/sign-out"
            )
            assert status == 200 and body["sessions_ended"] == 2
            for browser in (one, two):
                async with browser.get(c.at("/work"), headers=JSON) as response:
                    assert response.status == 401


async def test_rotate_shows_the_new_key_once_and_revoke_stops_every_key(
    upstream: TestServer, db_url: str, tmp_path: Path
) -> None:
    async with cloud(upstream, db_url, tmp_path) as c:
        await c.user("ada@example.com", "admin")
        mia = await c.user("mia@example.com")
        old = (await KeyService(c.db).issue(mia.id)).key
        admin = await token_for(c, "ada@example.com")
        status, body = await call(c, admin, "POST", f"/users/{mia.id}/key/rotate")
        assert status == 200 and body["key"].startswith("vk_")
        new = body["key"]
        assert await c.gateway_status(new) == 200
        assert await c.gateway_status(old) == 200  # grace period
        (entry,) = await AuditLog(c.db).entries()
        assert entry.action == "key.rotate" and entry.target_user_id == mia.id
        assert new not in str(entry.detail)

        status, body = await call(c, admin, "POST", f"/users/{mia.id}/key/revoke")
        assert status == 200 and body["revoked"] == 2
        assert await c.gateway_status(new) == 401
        assert await c.gateway_status(old) == 401

        # from the page: the key is on the answer, not on any later page
        async with await c.browser("ada@example.com") as browser:
            csrf = await c.csrf(browser)
            async with browser.post(
                c.at(f"/manage/users/{mia.id}/key/rotate"), data={"csrf_token": csrf}
            ) as r:
                assert r.status == 200
                assert r.headers["Cache-Control"] == "no-store"
                page = await r.text()
            shown = page.split('id="new-secret" readonly value="')[1].split('"')[0]
            assert await c.gateway_status(shown) == 200
            async with browser.get(c.at("/manage/users")) as r:
                assert shown not in await r.text()


async def test_role_changes_and_bad_input(upstream: TestServer, db_url: str, tmp_path: Path) -> None:
    async with cloud(upstream, db_url, tmp_path) as c:
        await c.user("ada@example.com", "admin")
        mia = await c.user("mia@example.com")
        admin = await token_for(c, "ada@example.com")
        assert (await call(c, admin, "POST", f"/users/{mia.id}/role", {"role": "admin"}))[0] == 200
        assert (await UserDirectory(c.db).get(mia.id)).role == "admin"
        status, body = await call(c, admin, "POST", f"/users/{mia.id}/role", {"role": "owner"})
        assert status == 400 and "member" in body["error"]["message"]
        assert (await call(c, admin, "POST", f"/users/{mia.id}/role", {}))[0] == 400
        assert (await call(c, admin, "POST", f"/users/{uuid.uuid4()}/role", {"role": "member"}))[0] == 404
        assert (await call(c, admin, "POST", "/users/not-a-uuid/role", {"role": "member"}))[0] == 404
        async with aiohttp.ClientSession() as script:
            async with script.post(
                c.at(f"/manage/api/users/{mia.id}/role"), data="{not json", headers=admin
            ) as response:
                assert response.status == 400
        assert (await UserDirectory(c.db).get(mia.id)).role == "admin"


async def test_invite_mails_the_sign_in_page_and_adds_a_member(
    upstream: TestServer, db_url: str, tmp_path: Path
) -> None:
    async with cloud(upstream, db_url, tmp_path, allowed_domains=[]) as c:
        await c.user("ada@example.com", "admin")
        admin = await token_for(c, "ada@example.com")
        status, body = await call(c, admin, "POST", "/users", {"email": "new@example.com"})
        assert status == 201, body
        mail = (c.mailbox / "new@example.com").read_text()
        assert f"ada@example.com invited you to sign in at {c.url}/auth/sign-in" in mail
        async with await c.browser("new@example.com") as invited:  # may now sign in
            async with invited.get(c.at("/work"), headers=JSON) as response:
                assert response.status == 200
        new = await UserDirectory(c.db).get("new@example.com")
        assert new.role == "member"

        (c.mailbox / "new@example.com").unlink()
        status, body = await call(c, admin, "POST", "/users", {"email": "NEW@example.com"})
        assert status == 409 and body["error"]["message"] == "NEW@example.com is already a user here."
        assert not (c.mailbox / "new@example.com").exists()  # nobody is mailed twice
        status, body = await call(c, admin, "POST", "/users", {"email": "not an email"})
        assert status == 400 and body["error"]["message"] == "Not an email address: 'not an email'."
        assert (await call(c, admin, "POST", "/users", {}))[0] == 400
        assert [u.email for u in await UserDirectory(c.db).list()] == ["ada@example.com", "new@example.com"]
        entries = await AuditLog(c.db).entries()
        assert [(e.action, e.result) for e in entries if e.action == "user.invite"] == [
            ("user.invite", "failed: Not an email address: 'not an email'."),
            ("user.invite", "failed: NEW@example.com is already a user here."),
            ("user.invite", "ok"),
        ]

        # the page's form: the same action, the same answer
        async with await c.browser("ada@example.com") as browser:
            form = {"csrf_token": await c.csrf(browser), "email": "page@example.com"}
            async with browser.post(c.at("/manage/users"), data=form) as response:
                assert response.status == 200
                assert "page@example.com was sent an invitation" in await response.text()
        assert "invited you to sign in" in (c.mailbox / "page@example.com").read_text()


async def test_invitations_go_by_smtp_and_a_failed_one_adds_nobody(
    upstream: TestServer, db_url: str, tmp_path: Path, unused_tcp_port_factory: Any
) -> None:
    inbox = Inbox()
    port = unused_tcp_port_factory()
    smtp = {"host": "127.0.0.1", "port": port, "starttls": False, "sender": "cloud@example.com", "timeout": 2}
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        async with cloud(upstream, db_url, tmp_path, email_code={"delivery": "smtp", "smtp": smtp}) as c:
            await c.user("ada@example.com", "admin")
            admin = await token_for(c, "ada@example.com")
            status, body = await call(c, admin, "POST", "/users", {"email": "sam@example.com"})
            assert status == 201, body
            (envelope,) = inbox.messages  # sent before the answer
            assert envelope.rcpt_tos == ["sam@example.com"] and envelope.mail_from == "cloud@example.com"
            message = message_from_bytes(envelope.original_content or b"")
            assert message["Subject"] == "You are invited to sign in"
            assert f"{c.url}/auth/sign-in" in message.get_payload()

            controller.stop()  # the mail server goes away
            status, body = await call(c, admin, "POST", "/users", {"email": "tom@example.com"})
            assert status == 503
            assert body["error"]["message"] == (
                "The invitation to tom@example.com could not be sent, so nobody was added. Try again later."
            )
            assert await UserDirectory(c.db).find_by_email("tom@example.com") is None
            (entry, *_) = await AuditLog(c.db).entries()
            assert entry.action == "user.invite" and entry.result.startswith("failed: The invitation")
    finally:
        if controller.loop.is_running():
            controller.stop()


async def test_audit_log_filters_and_exports_csv(upstream: TestServer, db_url: str, tmp_path: Path) -> None:
    async with cloud(upstream, db_url, tmp_path) as c:
        await c.user("ada@example.com", "admin")
        mia = await c.user("mia@example.com")
        admin = await token_for(c, "ada@example.com")
        await call(c, admin, "POST", f"/users/{mia.id}/role", {"role": "admin"})
        await call(c, admin, "POST", f"/users/{mia.id}/role", {"role": "owner"})
        await call(c, admin, "POST", f"/users/{mia.id}/sign-out")

        status, body = await call(c, admin, "GET", "/audit?action=user.set_role")
        assert status == 200
        assert [(e["action"], e["result"]) for e in body["entries"]] == [
            ("user.set_role", "failed: role must be one of member, admin"),
            ("user.set_role", "ok"),
        ]
        assert all(
            e["actor"] == "ada@example.com" and e["target"] == "mia@example.com" for e in body["entries"]
        )
        status, body = await call(c, admin, "GET", "/audit?failed=1")
        assert [e["detail"]["role"] for e in body["entries"]] == ["owner"]
        status, body = await call(c, admin, "GET", "/audit?until=2000-01-01")
        assert body["entries"] == []

        async with await c.browser("ada@example.com") as browser:
            async with browser.get(c.at("/manage/audit.csv?action=user.sign_out")) as response:
                assert response.status == 200 and response.content_type == "text/csv"
                rows = list(csv.reader(io.StringIO(await response.text())))
            assert rows[0] == ["at", "actor", "action", "target", "result", "detail"]
            assert [r[1:5] for r in rows[1:]] == [
                ["ada@example.com", "user.sign_out", "mia@example.com", "ok"]
            ]
            async with browser.get(c.at("/manage/audit?failed=1")) as response:
                page = await response.text()
            assert "failed: role must be one of member, admin" in page and "user.sign_out</code>" not in page


async def test_audit_views_show_at_most_audit_limit_entries(
    upstream: TestServer, db_url: str, tmp_path: Path
) -> None:
    async with cloud(upstream, db_url, tmp_path, manage={"audit_limit": 2}) as c:
        await c.user("ada@example.com", "admin")
        mia = await c.user("mia@example.com")
        admin = await token_for(c, "ada@example.com")
        for role in ("admin", "member", "admin"):
            assert (await call(c, admin, "POST", f"/users/{mia.id}/role", {"role": role}))[0] == 200
        status, body = await call(c, admin, "GET", "/audit")
        assert status == 200
        assert [e["detail"]["role"] for e in body["entries"]] == ["admin", "member"]  # newest first
