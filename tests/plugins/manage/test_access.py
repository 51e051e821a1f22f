"""Who reaches Manage: admins only (by session or admin token), checked again on every request;
CSRF on every cookie-authenticated change; tokens stored hashed and shown once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from plugins.auth import UserDirectory
from plugins.manage import AdminTokens
from proxy_core.cli import main

from .kit import JSON, cloud


async def cli(args: list[str]) -> int:
    """The real entry point, in a thread (it runs its own event loop)."""
    return await asyncio.to_thread(main, args)


async def test_a_member_is_refused_everywhere(upstream: TestServer, db_url: str, tmp_path: Path) -> None:
    async with cloud(upstream, db_url, tmp_path) as c:
        await c.user("mia@example.com")
        member = await c.browser("mia@example.com")
        async with member:
            async with member.get(c.at("/manage/users")) as response:
                assert response.status == 403
                assert "Not allowed" in await response.text()
            async with member.get(c.at("/manage/api/users"), headers=JSON) as response:
                assert response.status == 403
                assert (await response.json())["error"]["status"] == 403
            for trick in (
                "/manage/users/",
                "/manage//users",
                "/manage/./users",
                "/x/../manage/users",
                "/manage",
            ):
                async with member.get(c.at(trick), allow_redirects=True) as response:
                    assert response.status in (403, 404), trick
                    assert "Users and keys" not in await response.text(), trick
            async with member.post(c.at("/manage/api/users"), json={"email": "x@example.com"}) as response:
                assert response.status == 403
        assert await UserDirectory(c.db).find_by_email("x@example.com") is None


async def test_no_session_means_sign_in_for_pages_and_401_for_the_api(
    upstream: TestServer, db_url: str, tmp_path: Path
) -> None:
    async with cloud(upstream, db_url, tmp_path) as c, aiohttp.ClientSession() as anonymous:
        async with anonymous.get(
            c.at("/manage/users"), headers={"Accept": "text/html"}, allow_redirects=False
        ) as r:
            assert r.status == 302
            assert r.headers["Location"].startswith("/auth/sign-in")
        async with anonymous.get(c.at("/manage/api/users"), headers=JSON) as response:
            assert response.status == 401


async def test_an_admin_demoted_mid_session_loses_access_on_the_next_request(
    upstream: TestServer, db_url: str, tmp_path: Path
) -> None:
    # The auth stage caches sessions for 30 s here: Manage must not trust the cached role.
    async with cloud(upstream, db_url, tmp_path) as c:
        ada = await c.user("ada@example.com", "admin")
        admin = await c.browser("ada@example.com")
        async with admin:
            async with admin.get(c.at("/manage/users")) as response:
                assert response.status == 200
                assert "Users and keys" in await response.text()
            await UserDirectory(c.db).set_role(ada.id, "member")
            async with admin.get(c.at("/manage/users")) as response:
                assert response.status == 403
            async with admin.get(c.at("/manage/api/users"), headers=JSON) as response:
                assert response.status == 403


async def test_manage_after_auth_in_the_pipeline_works_the_same(
    upstream: TestServer, db_url: str, tmp_path: Path
) -> None:
    async with cloud(upstream, db_url, tmp_path, manage_first=False) as c:
        await c.user("ada@example.com", "admin")
        await c.user("mia@example.com")
        async with await c.browser("ada@example.com") as admin, await c.browser("mia@example.com") as member:
            async with admin.get(c.at("/manage/api/users"), headers=JSON) as response:
                assert response.status == 200
            async with member.get(c.at("/manage/api/users"), headers=JSON) as response:
                assert response.status == 403


async def test_cookie_changes_need_the_csrf_token(upstream: TestServer, db_url: str, tmp_path: Path) -> None:
    async with cloud(upstream, db_url, tmp_path) as c:
        await c.user("ada@example.com", "admin")
        mia = await c.user("mia@example.com")
        async with await c.browser("ada@example.com") as admin:
            form = {"role": "admin"}
            async with admin.post(c.at(f"/manage/users/{mia.id}/role"), data=form) as response:
                assert response.status == 403
            async with admin.post(c.at(f"/manage/api/users/{mia.id}/role"), json=form) as response:
                assert response.status == 403
            forged = {"role": "admin", "csrf_token": "0" * 64}
            async with admin.post(c.at(f"/manage/users/{mia.id}/role"), data=forged) as response:
                assert response.status == 403
            assert (await UserDirectory(c.db).get(mia.id)).role == "member"

            token = await c.csrf(admin)
            async with admin.post(
                c.at(f"/manage/users/{mia.id}/role"),
                data={**form, "csrf_token": token},
                allow_redirects=False,
            ) as response:
                assert response.status == 303
            assert (await UserDirectory(c.db).get(mia.id)).role == "admin"
            async with admin.post(
                c.at(f"/manage/api/users/{mia.id}/role"),
                json={"role": "member"},
                headers={"X-CSRF-Token": token},
            ) as response:
                assert response.status == 200
            assert (await UserDirectory(c.db).get(mia.id)).role == "member"


async def test_admin_token_from_the_cli_works_hashed_and_stops_with_the_admin(
    upstream: TestServer, db_url: str, tmp_path: Path, capsys: object
) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n')
    async with cloud(upstream, db_url, tmp_path) as c:
        ada = await c.user("ada@example.com", "admin")
        await c.user("mia@example.com")
        assert await cli(["admin-token", "create", "mia@example.com", "-c", str(config)]) == 1
        assert (
            await cli(["admin-token", "create", "ada@example.com", "--name", "deploy", "-c", str(config)])
            == 0
        )
        token = capsys.readouterr().out.strip()  # type: ignore[attr-defined]
        assert token.startswith("smc_admin_")
        stored = await c.db.fetch("SELECT * FROM admin_tokens")
        assert len(stored) == 1 and token not in str(stored)

        bearer = {"Authorization": f"Bearer {token}", **JSON}
        async with aiohttp.ClientSession() as script:
            async with script.get(c.at("/manage/api/me"), headers=bearer) as response:
                assert response.status == 200
                assert await response.json() == {
                    "id": str(ada.id),
                    "email": "ada@example.com",
                    "via": "token",
                }
            # no CSRF for a token: there is no cookie to ride on
            async with script.post(
                c.at("/manage/api/users"), json={"email": "new@example.com"}, headers=bearer
            ) as r:
                assert r.status == 201
            async with script.get(
                c.at("/manage/api/me"), headers={"Authorization": "Bearer smc_admin_nope"}
            ) as r:
                assert r.status == 401
            await UserDirectory(c.db).set_role(ada.id, "member")
            async with script.get(c.at("/manage/api/me"), headers=bearer) as response:
                assert response.status == 403
            await UserDirectory(c.db).set_role(ada.id, "admin")
            (record,) = await AdminTokens(c.db).list()
            assert await cli(["admin-token", "revoke", str(record.id), "-c", str(config)]) == 0
            async with script.get(c.at("/manage/api/me"), headers=bearer) as response:
                assert response.status == 401


async def test_admin_token_from_the_ui_is_shown_once(
    upstream: TestServer, db_url: str, tmp_path: Path
) -> None:
    async with cloud(upstream, db_url, tmp_path) as c:
        await c.user("ada@example.com", "admin")
        async with await c.browser("ada@example.com") as admin:
            csrf = await c.csrf(admin, "/manage/tokens")
            async with admin.post(
                c.at("/manage/tokens"), data={"name": "ci", "csrf_token": csrf}
            ) as response:
                assert response.status == 200
                page = await response.text()
            (token,) = [part.split('"')[0] for part in page.split('value="smc_admin_')[1:]]
            token = "smc_admin_" + token
            async with admin.get(c.at("/manage/tokens")) as response:
                listing = await response.text()
            assert token not in listing and token[:16] in listing
            async with aiohttp.ClientSession() as script:
                headers = {"Authorization": f"Bearer {token}"}
                async with script.get(c.at("/manage/api/tokens"), headers=headers) as response:
                    assert response.status == 200
                    (listed,) = (await response.json())["tokens"]
                    assert listed["name"] == "ci" and "token" not in listed


async def test_the_cloud_menu_offers_manage_to_admins_only(
    upstream: TestServer, db_url: str, tmp_path: Path
) -> None:
    async with cloud(upstream, db_url, tmp_path) as c:
        await c.user("ada@example.com", "admin")
        await c.user("mia@example.com")
        async with await c.browser("ada@example.com") as admin, await c.browser("mia@example.com") as member:
            async with admin.get(c.at("/auth/menu.js")) as response:
                script = await response.text()
            assert '{"label": "Manage", "href": "/manage"}' in script
            async with member.get(c.at("/auth/menu.js")) as response:
                script = await response.text()
            assert "entries = []" in script and "Manage" not in script
